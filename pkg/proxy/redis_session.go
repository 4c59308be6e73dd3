package proxy

// redisSession is what a Redis client has set on its connection: the RESP
// version it speaks (HELLO), whether it authenticated (AUTH, HELLO AUTH),
// its name and library (CLIENT SETNAME/SETINFO) and its reply mode (CLIENT
// REPLY). It belongs to the Redis protocol; clientConn keeps only I/O
// state. A session is made on a client's first request.
type redisSession struct {
	proto  int // RESP version, 2 or 3
	authed bool
	name   []byte
	lib    [2][]byte // CLIENT SETINFO lib-name, lib-ver

	// CLIENT REPLY: replyOff mutes every reply until CLIENT REPLY ON;
	// skipNext mutes the reply of the command after CLIENT REPLY SKIP;
	// replyOn marks the ON that ends a skip, which is answered.
	replyOff bool
	skipNext bool
	replyOn  bool

	noEvict bool
	noTouch bool
	lastCmd string // for CLIENT LIST's cmd=
	// db is the database the client SELECTed (redis_db.go); -1 until it
	// does: the pool's redis_db.
	db int

	// st holds the pinned links of transactions, blocking calls and
	// subscriptions (redis_txn.go); nil until one is used.
	st *statefulSession
}

func newRedisSession() *redisSession { return &redisSession{proto: 2, db: -1} }

// reset is RESET: the state of a new connection, except that a pool
// without redis_auth leaves the client authenticated, as redis leaves a
// client of a default user without a password.
func (s *redisSession) reset(authRequired bool) {
	*s = redisSession{proto: 2, authed: !authRequired, db: -1}
}

// session returns c's Redis session, making it on first use.
func (c *clientConn) session() *redisSession {
	if c.rs == nil {
		c.rs = newRedisSession()
	}
	return c.rs
}

// setProto switches c to RESP version v; its requests then travel on the
// links of that version, so that replies come back as the server would
// send them to a client of that version.
func (c *clientConn) setProto(v int) {
	c.session().proto = v
	c.linkClass = c.linkClass &^ linkRESP3
	if v == 3 {
		c.linkClass |= linkRESP3
	}
}

// resp3 reports whether c speaks RESP3.
func (c *clientConn) resp3() bool { return c.rs != nil && c.rs.proto == 3 }
