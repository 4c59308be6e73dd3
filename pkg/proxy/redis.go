package proxy

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"strconv"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Version is reported by HELLO; cmd/ sets it from the build.
var Version = "dev"

type redisProto struct {
	pool *pool
	lim  resp.Limits
}

func newRedisProto(p *pool) *redisProto {
	return &redisProto{pool: p, lim: resp.DefaultLimits()}
}

func (r *redisProto) maxRequest() int { return int(r.lim.MaxBulkLen) + 64<<10 }

func (r *redisProto) tooManyClients(dst []byte) []byte {
	return resp.AppendError(dst, "ERR max number of clients reached")
}

func (r *redisProto) errorReply(dst []byte, err error) []byte {
	return resp.AppendError(dst, "ERR "+errnoText(err))
}

// replyLen frames with the link's own scanner: a reply that arrives in
// many reads (a large array) is scanned once, not again from its start on
// every read, and a small one does not pay for a fresh scanner each time.
func (r *redisProto) replyLen(l *link, m *msg, buf []byte) (n, need int, isErr bool, err error) {
	if l.rscan == nil {
		l.rscan = resp.NewReplyScanner(r.lim)
	}
	n, need, err = l.rscan.Scan(buf)
	return n, need, n > 0 && buf[0] == '-', err
}

// handshake authenticates and selects the database on a new server link;
// the replies are checked by pool.finish and never reach a client.
func (r *redisProto) handshake(l *link) {
	cfg := r.pool.cfg
	if cfg.RedisAuth != "" {
		l.enqueueFunc(l.lp.newMsg(nil), func(dst []byte) []byte {
			return resp.AppendCommand(dst, [][]byte{[]byte("AUTH"), []byte(cfg.RedisAuth)})
		})
	}
	if cfg.RedisDB != 0 {
		l.enqueueFunc(l.lp.newMsg(nil), func(dst []byte) []byte {
			return resp.AppendCommand(dst, [][]byte{[]byte("SELECT"), strconv.AppendInt(nil, int64(cfg.RedisDB), 10)})
		})
	}
}

// localReply queues a reply made by the proxy.
func (c *clientConn) localReply(build func(dst []byte) []byte) {
	m := newMsg(c)
	m.reply = build(m.reply[:0])
	c.reply(m)
}

func (c *clientConn) localError(text string) {
	c.localReply(func(dst []byte) []byte { return resp.AppendError(dst, text) })
}

func (r *redisProto) parse(c *clientConn, buf []byte) (int, int, error) {
	if c.rp == nil {
		c.rp = resp.NewRequestParser(r.lim)
	}
	n, args, need, err := c.rp.Parse(buf)
	if err != nil {
		c.cmdName, c.cmdKey = "protocol_error", nil
		var perr *resp.ProtocolError
		text := "ERR Protocol error"
		if errors.As(err, &perr) {
			text = "ERR " + perr.Error()
		}
		m := newMsg(c)
		m.reply = resp.AppendError(m.reply[:0], text)
		m.closeAfter = true
		c.reply(m)
		r.pool.log.WithError(err).Debug("client protocol error")
		return 0, 0, err
	}
	if n == 0 || len(args) == 0 {
		return n, need, nil
	}
	raw := buf[:n]
	if c.rp.Inline() {
		raw = nil
	}
	r.dispatch(c, args, raw)
	return n, 0, nil
}

// dispatch routes one parsed request. raw is the request as the client
// sent it, or nil when it must be re-encoded (inline commands).
func (r *redisProto) dispatch(c *clientConn, args [][]byte, raw []byte) {
	p := r.pool
	cmd, ok := resp.Lookup(args[0])
	if !ok {
		c.cmdName, c.cmdKey = "unknown", nil
		c.localReply(func(dst []byte) []byte { return resp.AppendUnknownCommand(dst, args) })
		return
	}
	c.cmdName, c.cmdKey = cmd.Name, nil
	if cmd.Kind == resp.KindMultiKey && len(args) > 1 {
		c.cmdKey = args[1]
	}
	if !resp.CheckArity(cmd, len(args)) {
		c.localReply(func(dst []byte) []byte { return resp.AppendWrongArgs(dst, args[0]) })
		return
	}
	if p.cfg.RedisAuth != "" && !c.authed && cmd.Name != "auth" && cmd.Name != "quit" && cmd.Name != "hello" {
		c.localError("NOAUTH Authentication required.")
		return
	}
	switch cmd.Kind {
	case resp.KindLocal:
		r.local(c, cmd, args)
	case resp.KindUnsupported:
		c.localError("ERR command '" + cmd.Name + "' is not supported by nuthatch: " + cmd.Reason)
	case resp.KindMultiKey:
		r.split(c, cmd, args, raw)
	default: // single key, eval family, cross-key commands
		keys, err := resp.Keys(cmd, args, c.keys[:0])
		c.keys = keys
		if err != nil {
			if errors.Is(err, resp.ErrNoKeys) {
				c.localError("ERR command '" + cmd.Name + "' needs at least one key to be routed by nuthatch")
			} else {
				c.localError("ERR " + err.Error())
			}
			return
		}
		c.cmdKey = args[keys[0]]
		if !cmd.CrossKey && cmd.Kind != resp.KindEval {
			keys = keys[:1]
		}
		r.single(c, args, raw, keys)
	}
}

// single forwards a request whose keys must all live on one server; the
// first key picks it. With no keys, any server answers (COMMAND, LOLWUT).
func (r *redisProto) single(c *clientConn, args [][]byte, raw []byte, keys []int) {
	p := r.pool
	var s *server
	if len(keys) > 0 {
		s = p.serverFor(args[keys[0]])
	} else {
		s = p.anyServer()
	}
	if s == nil {
		m := newMsg(c)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	}
	for _, k := range keys[min(1, len(keys)):] {
		if p.serverFor(args[k]) != s {
			c.localError("ERR keys of '" + lower(args[0]) + "' map to different servers; use a hash_tag to keep them together")
			return
		}
	}
	m := newMsg(c)
	c.enqueue(m)
	if raw != nil {
		p.forward(m, s, func(dst []byte) []byte { return append(dst, raw...) })
	} else {
		p.forward(m, s, func(dst []byte) []byte { return resp.AppendCommand(dst, args) })
	}
}

func (p *pool) anyServer() *server {
	r := p.ring.Load()
	if i := r.Pick(0); i >= 0 {
		return p.servers[i]
	}
	return nil
}

// Fragment kinds of multi-key commands.
const (
	opForward uint8 = iota
	opMGet
	opSum
	opMSet
)

// split sends a multi-key command as one sub-command per server and merges
// the replies in key order (MGET, MSET, DEL, UNLINK, TOUCH, EXISTS).
func (r *redisProto) split(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) {
	p := r.pool
	step := max(cmd.Step, 1)
	nserv := p.groupKeys(c, 1, len(args), step, func(i int) []byte { return args[i] })
	switch nserv {
	case 0:
		m := newMsg(c)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	case 1:
		// Every key on one server: forward the command unchanged.
		c.keys = append(c.keys[:0], 1)
		r.single(c, args, raw, c.keys)
		return
	}
	parent := newMsg(c)
	switch cmd.Name {
	case "mget":
		parent.op = opMGet
	case "mset":
		parent.op = opMSet
	default:
		parent.op = opSum
	}
	parent.keyIdx = append(parent.keyIdx[:0], int32((len(args)-1)/step))
	name := []byte(cmd.Name)
	p.fragment(c, parent, nserv, func(dst []byte, keys []int32) []byte {
		dst = resp.AppendArrayHeader(dst, 1+len(keys)*step)
		dst = resp.AppendBulk(dst, name)
		for _, ki := range keys {
			for j := 0; j < step; j++ {
				dst = resp.AppendBulk(dst, args[int(ki)+j])
			}
		}
		return dst
	})
}

// merge combines fragment replies. A failed fragment fails the whole
// command, as in twemproxy, with that fragment's error.
func (r *redisProto) merge(parent *msg) {
	for _, f := range parent.frags {
		if f.err != nil || f.isErr || len(f.reply) == 0 {
			parent.reply = append(parent.reply[:0], f.reply...)
			return
		}
	}
	switch parent.op {
	case opMSet:
		parent.reply = resp.AppendStatus(parent.reply[:0], "OK")
	case opSum:
		var sum int64
		for _, f := range parent.frags {
			v, ok := resp.ParseInt(f.reply)
			if !ok {
				parent.reply = resp.AppendError(parent.reply[:0], "ERR Invalid argument")
				return
			}
			sum += v
		}
		parent.reply = resp.AppendInt(parent.reply[:0], sum)
	case opMGet:
		nkeys := int(parent.keyIdx[0])
		elems := r.pool.mergeScratch(nkeys)
		defer clear(elems)
		for _, f := range parent.frags {
			j := 0
			err := resp.ArrayElems(f.reply, func(e []byte) bool {
				if j < len(f.keyIdx) {
					elems[int(f.keyIdx[j])-1] = e
				}
				j++
				return true
			})
			if err != nil || j != len(f.keyIdx) {
				parent.reply = resp.AppendError(parent.reply[:0], "ERR Invalid argument")
				return
			}
		}
		out := resp.AppendArrayHeader(parent.reply[:0], nkeys)
		for _, e := range elems {
			out = append(out, e...)
		}
		parent.reply = out
	}
}

// local answers the commands the proxy handles itself.
func (r *redisProto) local(c *clientConn, cmd *resp.Command, args [][]byte) {
	p := r.pool
	switch cmd.Name {
	case "ping":
		if len(args) > 2 {
			c.localReply(func(dst []byte) []byte { return resp.AppendWrongArgs(dst, args[0]) })
			return
		}
		if len(args) == 2 {
			c.localReply(func(dst []byte) []byte { return resp.AppendBulk(dst, args[1]) })
			return
		}
		c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "PONG") })
	case "echo":
		c.localReply(func(dst []byte) []byte { return resp.AppendBulk(dst, args[1]) })
	case "quit":
		m := newMsg(c)
		m.reply = resp.AppendStatus(m.reply[:0], "OK")
		m.closeAfter = true
		c.quit = true
		c.reply(m)
	case "select":
		db, err := strconv.Atoi(string(args[1]))
		switch {
		case err != nil:
			c.localError("ERR value is not an integer or out of range")
		case db == p.cfg.RedisDB:
			c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "OK") })
		default:
			c.localError("ERR SELECT " + strconv.Itoa(db) + " refused: pool '" + p.cfg.Name + "' serves database " + strconv.Itoa(p.cfg.RedisDB) + " only")
		}
	case "auth":
		r.auth(c, args[1:])
	case "hello":
		r.hello(c, args)
	case "client":
		r.client(c, args)
	case "command":
		if len(args) > 1 && lower(args[1]) == "docs" {
			// redis-cli asks for docs at start-up to show hints; none is fine.
			c.localReply(func(dst []byte) []byte { return resp.AppendArrayHeader(dst, 0) })
			return
		}
		r.single(c, args, nil, nil)
	default:
		r.single(c, args, nil, nil)
	}
}

// client answers the CLIENT subcommands that clients send while setting up
// a connection; the others are about the server and are refused.
func (r *redisProto) client(c *clientConn, args [][]byte) {
	sub := lower(args[1])
	var arity int
	switch sub {
	case "getname":
		arity = 2
	case "setname":
		arity = 3
	case "setinfo":
		arity = 4
	default:
		c.localError("ERR command 'client " + sub + "' is not supported by nuthatch: server command")
		return
	}
	if len(args) != arity {
		c.localReply(func(dst []byte) []byte { return resp.AppendWrongArgs(dst, []byte("client|"+sub)) })
		return
	}
	switch sub {
	case "setname":
		if !validClientName(args[2]) {
			c.localError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.name = append(c.name[:0], args[2]...)
		c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "OK") })
	case "getname":
		if len(c.name) == 0 {
			c.localReply(resp.AppendNull)
			return
		}
		c.localReply(func(dst []byte) []byte { return resp.AppendBulk(dst, c.name) })
	case "setinfo":
		switch attr := lower(args[2]); {
		case attr != "lib-name" && attr != "lib-ver":
			c.localError("ERR Unrecognized option '" + string(args[2]) + "'")
		case !validClientName(args[3]):
			c.localError("ERR " + attr + " cannot contain spaces, newlines or special characters.")
		default:
			c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "OK") })
		}
	}
}

func (r *redisProto) checkPassword(args [][]byte) (ok bool, errText string) {
	want := r.pool.cfg.RedisAuth
	pass := args[len(args)-1]
	user := "default"
	if len(args) == 2 {
		user = string(args[0])
	}
	if want == "" {
		// Like a server whose default user has nopass: the one-argument
		// form is an error, a user name goes through the ACL check.
		switch {
		case len(args) == 1:
			return false, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
		case user == "default":
			return true, ""
		}
		return false, "WRONGPASS invalid username-password pair or user is disabled."
	}
	p := r.pool
	p.stats.AuthAttempts.Add(1)
	if !p.authLim.allow(time.Now().UnixNano()) {
		// Too many failures this second: refuse without checking, so that
		// guessing gets no faster with more connections.
		p.stats.AuthFailures.Add(1)
		return false, "ERR too many failed AUTH attempts, try again later"
	}
	if user == "default" && subtle.ConstantTimeCompare(pass, []byte(want)) == 1 {
		p.authLim.undo()
		return true, ""
	}
	p.stats.AuthFailures.Add(1)
	p.log.Debug("failed AUTH")
	return false, "WRONGPASS invalid username-password pair or user is disabled."
}

func (r *redisProto) auth(c *clientConn, args [][]byte) {
	if len(args) > 2 {
		c.localError("ERR syntax error")
		return
	}
	ok, text := r.checkPassword(args)
	if !ok {
		c.localError(text)
		return
	}
	c.authed = true
	c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "OK") })
}

// hello answers HELLO for RESP2 only: clients that ask for RESP3 get the
// same NOPROTO error as from a server without it and fall back to RESP2.
func (r *redisProto) hello(c *clientConn, args [][]byte) {
	if len(args) > 1 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil {
			c.localError("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 {
			c.localError("NOPROTO unsupported protocol version")
			return
		}
	}
	var name []byte
	for i := 2; i < len(args); i++ {
		// Like redis, the error quotes the option as the client spelt it.
		switch opt := lower(args[i]); {
		case opt == "auth" && i+2 < len(args):
			ok, text := r.checkPassword(args[i+1 : i+3])
			if !ok {
				c.localError(text)
				return
			}
			c.authed = true
			i += 2
		case opt == "setname" && i+1 < len(args):
			if !validClientName(args[i+1]) {
				c.localError("ERR Client names cannot contain spaces, newlines or special characters.")
				return
			}
			name = args[i+1]
			i++
		default:
			c.localError("ERR Syntax error in HELLO option '" + string(args[i]) + "'")
			return
		}
	}
	if r.pool.cfg.RedisAuth != "" && !c.authed {
		// redis 7.0's text.
		c.localError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if name != nil {
		c.name = append(c.name[:0], name...)
	}
	c.localReply(func(dst []byte) []byte {
		dst = resp.AppendArrayHeader(dst, 14)
		for _, kv := range [][2]string{{"server", "nuthatch"}, {"version", Version}} {
			dst = resp.AppendBulk(dst, []byte(kv[0]))
			dst = resp.AppendBulk(dst, []byte(kv[1]))
		}
		dst = resp.AppendBulk(dst, []byte("proto"))
		dst = resp.AppendInt(dst, 2)
		dst = resp.AppendBulk(dst, []byte("id"))
		dst = resp.AppendInt(dst, 0)
		dst = resp.AppendBulk(dst, []byte("mode"))
		dst = resp.AppendBulk(dst, []byte("standalone"))
		dst = resp.AppendBulk(dst, []byte("role"))
		dst = resp.AppendBulk(dst, []byte("master"))
		dst = resp.AppendBulk(dst, []byte("modules"))
		return resp.AppendArrayHeader(dst, 0)
	})
}

func lower(b []byte) string { return string(bytes.ToLower(b)) }

// validClientName applies redis's rule for CLIENT SETNAME and HELLO
// SETNAME: printable ASCII without spaces.
func validClientName(name []byte) bool {
	for _, c := range name {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}
