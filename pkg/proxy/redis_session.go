package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nuthatch-proxy/nuthatch/pkg/acl"
)

// redisSession is what a Redis client has set on its connection: the RESP
// version it speaks (HELLO), whether it authenticated (AUTH, HELLO AUTH),
// its name and library (CLIENT SETNAME/SETINFO) and its reply mode (CLIENT
// REPLY). It belongs to the Redis protocol; clientConn keeps only I/O
// state. A session is made on a client's first request.
type redisSession struct {
	proto  int // RESP version, 2 or 3
	authed bool
	// user is the ACL user the client authenticated as; nil before AUTH
	// (it is then the pool's default user, see aclUser). userName is the
	// name a hand-over brought, until adopt resolves it.
	user     *acl.User
	userName string
	name     []byte
	lib      [2][]byte // CLIENT SETINFO lib-name, lib-ver

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

// reset is RESET: the state of a new connection, the default user
// again, except that a client stays authenticated where the default user
// needs no password, as on redis.
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

// The session's hand-over encoding (handover.go): a version byte, then
// one field after another, each a tag byte, a uvarint length and its
// bytes. Every field of the session that outlives a request goes through
// sessionFields, the one place both directions read, so that a new field
// (an ACL user) is one more line there and cannot be encoded without
// being decoded. A decoder refuses an unknown tag rather than drop it: a
// connection is better closed than handed over with less state than it
// had (a user it authenticated as, a reply mode it asked for).
const redisSessionVersion = 1

// Field tags of the encoding; never reuse a number.
const (
	tagProto    = 1 // RESP version: one byte, 2 or 3
	tagFlags    = 2 // one byte of sessionFlag bits
	tagName     = 3 // CLIENT SETNAME
	tagLibName  = 4 // CLIENT SETINFO lib-name
	tagLibVer   = 5 // CLIENT SETINFO lib-ver
	tagLastCmd  = 6 // CLIENT LIST cmd=
	tagUser     = 7 // the ACL user AUTH chose; absent: the default user
	tagMaxField = 7
)

const (
	flagAuthed = 1 << iota
	flagReplyOff
	flagSkipNext
	flagReplyOn
	flagNoEvict
	flagNoTouch
	flagAll = 1<<iota - 1
)

// maxSessionState bounds an encoded session: checked by the encoder (a
// larger session is not handed over) and by the decoder before it reads
// anything. Names and library strings are short; 8 KiB leaves room.
const maxSessionState = 8 << 10

var errSessionState = errors.New("proxy: invalid session state")

// sessionField is one field of the encoding: get appends its value,
// set takes it back (b is the caller's, copy what is kept).
type sessionField struct {
	tag uint8
	get func(s *redisSession, dst []byte) []byte
	set func(s *redisSession, b []byte) error
}

func bytesField(tag uint8, f func(s *redisSession) *[]byte) sessionField {
	return sessionField{tag,
		func(s *redisSession, dst []byte) []byte { return append(dst, *f(s)...) },
		func(s *redisSession, b []byte) error { *f(s) = append([]byte(nil), b...); return nil }}
}

var sessionFields = []sessionField{
	{tagProto, func(s *redisSession, dst []byte) []byte { return append(dst, byte(s.proto)) },
		func(s *redisSession, b []byte) error {
			if len(b) != 1 || (b[0] != 2 && b[0] != 3) {
				return fmt.Errorf("%w: RESP version", errSessionState)
			}
			s.proto = int(b[0])
			return nil
		}},
	{tagFlags, func(s *redisSession, dst []byte) []byte {
		var f byte
		for i, on := range []bool{s.authed, s.replyOff, s.skipNext, s.replyOn, s.noEvict, s.noTouch} {
			if on {
				f |= 1 << i
			}
		}
		return append(dst, f)
	}, func(s *redisSession, b []byte) error {
		if len(b) != 1 || b[0]&^flagAll != 0 {
			return fmt.Errorf("%w: flags", errSessionState)
		}
		f := b[0]
		s.authed, s.replyOff, s.skipNext = f&flagAuthed != 0, f&flagReplyOff != 0, f&flagSkipNext != 0
		s.replyOn, s.noEvict, s.noTouch = f&flagReplyOn != 0, f&flagNoEvict != 0, f&flagNoTouch != 0
		return nil
	}},
	bytesField(tagName, func(s *redisSession) *[]byte { return &s.name }),
	bytesField(tagLibName, func(s *redisSession) *[]byte { return &s.lib[0] }),
	bytesField(tagLibVer, func(s *redisSession) *[]byte { return &s.lib[1] }),
	{tagLastCmd, func(s *redisSession, dst []byte) []byte { return append(dst, s.lastCmd...) },
		func(s *redisSession, b []byte) error { s.lastCmd = string(b); return nil }},
	{tagUser, func(s *redisSession, dst []byte) []byte {
		if s.user != nil {
			dst = append(dst, s.user.Name...)
		}
		return dst
	}, func(s *redisSession, b []byte) error { s.userName = string(b); return nil }},
}

// appendState appends the session's encoding to dst, or reports false
// when it is over maxSessionState. Pinned state (st) is not encoded: a
// session holding any is not handed over (clientConn.handoverBlocker).
func (s *redisSession) appendState(dst []byte) ([]byte, bool) {
	start := len(dst)
	dst = append(dst, redisSessionVersion)
	var val []byte
	for _, f := range sessionFields {
		val = f.get(s, val[:0])
		dst = append(dst, f.tag)
		dst = binary.AppendUvarint(dst, uint64(len(val)))
		dst = append(dst, val...)
		if len(dst)-start > maxSessionState {
			return dst[:start], false
		}
	}
	return dst, true
}

// decodeState replaces s with the session encoded in b. It allocates
// nothing from a length it reads: every length is checked against the
// bytes that are there, and b itself is bounded first.
func (s *redisSession) decodeState(b []byte) error {
	if len(b) > maxSessionState {
		return fmt.Errorf("%w: %d bytes, limit %d", errSessionState, len(b), maxSessionState)
	}
	if len(b) == 0 || b[0] != redisSessionVersion {
		return fmt.Errorf("%w: version", errSessionState)
	}
	*s = redisSession{proto: 2}
	var seen uint64
	b = b[1:]
	for len(b) > 0 {
		tag := b[0]
		if tag == 0 || tag > tagMaxField {
			return fmt.Errorf("%w: unknown field %d", errSessionState, tag)
		}
		if seen&(1<<tag) != 0 {
			return fmt.Errorf("%w: field %d twice", errSessionState, tag)
		}
		seen |= 1 << tag
		n, k := binary.Uvarint(b[1:])
		if k <= 0 || n > uint64(len(b)-1-k) {
			return fmt.Errorf("%w: field %d length", errSessionState, tag)
		}
		val := b[1+k : 1+k+int(n)]
		b = b[1+k+int(n):]
		for _, f := range sessionFields {
			if f.tag == tag {
				if err := f.set(s, val); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
