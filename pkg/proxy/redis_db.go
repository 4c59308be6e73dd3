package proxy

import (
	"strconv"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// Databases (issue #21). A pool with databases = N lets each client
// SELECT one of the servers' databases 0..N-1; a new client is in the
// pool's redis_db. A client's requests travel on links of its database,
// opened on first use with SELECT n in their handshake (after AUTH and
// HELLO 3), as RESP3 clients have links of their own: a link class is the
// protocol bit (linkRESP3) and the database slot above it, 0 for the
// pool's redis_db and n for database n-1, so a client of redis_db costs
// nothing more. Pinned links carry the class too: a transaction, a
// blocking call or a subscription runs in the client's database.
//
// The class is a byte: databases is at most maxDatabases.

// maxDatabases is the largest databases a pool may set (config.MaxDatabases).
const maxDatabases = config.MaxDatabases

// linkDB is the database a link SELECTs in its handshake.
func linkDB(cfg *config.Pool, sc *serverConn) int {
	if sc.dbSel != 0 {
		return int(sc.dbSel) - 1
	}
	return cfg.RedisDB
}

// dbConn picks a link of a database other than the pool's: class has a
// database slot. Each such class has server_connections links, opened on
// first use.
func (s *server) dbConn(class uint8) *serverConn {
	conns := s.dbconns[class]
	if conns == nil {
		if s.dbconns == nil {
			s.dbconns = map[uint8][]*serverConn{}
		}
		conns = make([]*serverConn, max(len(s.conns), 1))
		for j := range conns {
			conns[j] = &serverConn{srv: s, resp3: class&linkRESP3 != 0, dbSel: class >> 1}
		}
		s.dbconns[class] = conns
	}
	sc := conns[0]
	if len(conns) > 1 {
		sc = conns[int(s.rr.Add(1))%len(conns)]
		if sc.l.busy() {
			for _, o := range conns {
				if !o.l.busy() {
					return o
				}
			}
		}
	}
	return sc
}

// db is the database the client is in.
func (c *clientConn) db() int {
	if c.rs != nil && c.rs.db >= 0 {
		return c.rs.db
	}
	return c.pool.cfg.RedisDB
}

// setDB moves c to database db: its requests then travel on that
// database's links.
func (c *clientConn) setDB(db int) {
	rs := c.session()
	rs.db = db
	sel := uint8(0)
	if db != c.pool.cfg.RedisDB {
		sel = uint8(db + 1)
	}
	c.linkClass = c.linkClass&linkRESP3 | sel<<1
}

// selectDB serves SELECT.
func (r *redisProto) selectDB(c *clientConn, arg []byte) {
	cfg := r.pool.cfg
	db, err := strconv.Atoi(string(arg))
	switch {
	case err != nil:
		c.localError("ERR value is not an integer or out of range")
	case cfg.Databases == 0 && db == cfg.RedisDB:
		c.localOK()
	case cfg.Databases == 0:
		c.localError("ERR SELECT " + strconv.Itoa(db) + " refused: pool '" + cfg.Name + "' serves database " +
			strconv.Itoa(cfg.RedisDB) + " only (set databases in the pool to let clients select others)")
	case db < 0 || db >= cfg.Databases:
		c.localError("ERR DB index is out of range")
	case c.rs.st != nil && c.rs.st.txn.link != nil && db != c.db():
		// The watched keys are in the old database, on its link.
		c.localError("ERR nuthatch: SELECT of another database while keys are watched is not supported; UNWATCH first")
	default:
		c.setDB(db)
		c.localOK()
	}
}
