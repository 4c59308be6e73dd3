package proxy

import (
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Replies the proxy makes itself, in the client's RESP version.

func (c *clientConn) appendNull(dst []byte) []byte {
	if c.resp3() {
		return resp.AppendNull3(dst)
	}
	return resp.AppendNull(dst)
}

// appendMapHeader starts a map of n pairs: %n in RESP3, *2n in RESP2.
func (c *clientConn) appendMapHeader(dst []byte, n int) []byte {
	if c.resp3() {
		return resp.AppendMapHeader(dst, n)
	}
	return resp.AppendArrayHeader(dst, 2*n)
}

// appendText is a text reply redis sends as a verbatim string in RESP3
// (INFO, CLIENT LIST, CLIENT INFO) and a bulk string in RESP2.
func (c *clientConn) appendText(dst, text []byte) []byte {
	if c.resp3() {
		return resp.AppendVerbatim(dst, "txt", text)
	}
	return resp.AppendBulk(dst, text)
}

func (c *clientConn) localOK() {
	c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "OK") })
}

func (c *clientConn) localWrongArgs(name string) {
	c.localReply(func(dst []byte) []byte { return resp.AppendWrongArgs(dst, []byte(name)) })
}

// local answers the commands the proxy handles itself.
func (r *redisProto) local(c *clientConn, cmd *resp.Command, args [][]byte) {
	p := r.pool
	switch cmd.Name {
	case "ping":
		if len(args) > 2 {
			c.localWrongArgs(string(args[0]))
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
	case "reset":
		if st := c.session().st; st != nil {
			// RESET ends the transaction, the watches and the
			// subscriptions, as on redis.
			st.clientGone(c)
		}
		c.session().reset(p.authRequired())
		c.linkClass = linkDefault // RESP2, the pool's redis_db
		c.setProto(2)
		c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "RESET") })
	case "select":
		r.selectDB(c, args[1]) // redis_db.go
	case "readonly", "readwrite":
		// Cluster clients send these to every node; on a pool of
		// masters they change nothing.
		c.localOK()
	case "auth":
		r.auth(c, args[1:])
	case "hello":
		r.hello(c, args)
	case "client":
		r.client(c, args)
	case "info":
		r.info(c, args[1:])
	case "command":
		if len(args) > 1 && lower(args[1]) == "docs" {
			// redis-cli asks for docs at start-up to show hints; none is fine.
			c.localReply(func(dst []byte) []byte { return c.appendMapHeader(dst, 0) })
			return
		}
		r.single(c, args, nil, nil)
	default:
		r.single(c, args, nil, nil)
	}
}

// client answers the CLIENT subcommands that concern the client's own
// connection; those about the server or other clients are refused.
func (r *redisProto) client(c *clientConn, args [][]byte) {
	sub := lower(args[1])
	arity, known := clientArity[sub]
	if !known {
		if clientRefused[sub] {
			c.localError("ERR command 'client " + sub + "' is not supported by nuthatch: server command")
			return
		}
		c.localError("ERR unknown subcommand '" + string(args[1]) + "'. Try CLIENT HELP.")
		return
	}
	if (arity > 0 && len(args) != arity) || (arity < 0 && len(args) < -arity) {
		c.localWrongArgs("client|" + sub)
		return
	}
	rs := c.session()
	switch sub {
	case "setname":
		if !validClientName(args[2]) {
			c.localError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		rs.name = append(rs.name[:0], args[2]...)
		c.localOK()
	case "getname":
		if len(rs.name) == 0 {
			c.localReply(c.appendNull)
			return
		}
		c.localReply(func(dst []byte) []byte { return resp.AppendBulk(dst, rs.name) })
	case "setinfo":
		attr := lower(args[2])
		i := 0
		switch attr {
		case "lib-name":
		case "lib-ver":
			i = 1
		default:
			c.localError("ERR Unrecognized option '" + string(args[2]) + "'")
			return
		}
		if !validClientName(args[3]) {
			c.localError("ERR " + attr + " cannot contain spaces, newlines or special characters.")
			return
		}
		rs.lib[i] = append(rs.lib[i][:0], args[3]...)
		c.localOK()
	case "id":
		c.localReply(func(dst []byte) []byte { return resp.AppendInt(dst, int64(c.id)) })
	case "info":
		line := c.appendClientInfo(nil, c.lp.now)
		c.localReply(func(dst []byte) []byte { return c.appendText(dst, line) })
	case "list":
		r.clientList(c, args[2:])
	case "no-evict", "no-touch":
		var on bool
		switch lower(args[2]) {
		case "on":
			on = true
		case "off":
		default:
			c.localError("ERR syntax error")
			return
		}
		if sub == "no-evict" {
			rs.noEvict = on
		} else {
			rs.noTouch = on
		}
		c.localOK()
	case "reply":
		switch lower(args[2]) {
		case "on":
			rs.replyOff, rs.skipNext, rs.replyOn = false, false, true
			c.localOK()
		case "off":
			rs.replyOff = true // no reply, as redis
		case "skip":
			if !rs.replyOff {
				rs.skipNext = true
			}
		default:
			c.localError("ERR syntax error")
		}
	case "help":
		c.localReply(func(dst []byte) []byte {
			dst = resp.AppendArrayHeader(dst, len(clientHelp))
			for _, l := range clientHelp {
				dst = resp.AppendStatus(dst, l)
			}
			return dst
		})
	}
}

// clientArity is redis's arity of each CLIENT subcommand the proxy
// answers (negative: at least).
var clientArity = map[string]int{
	"getname": 2, "setname": 3, "setinfo": 4, "id": 2, "info": 2, "list": -2,
	"no-evict": 3, "no-touch": 3, "reply": 3, "help": 2,
}

// clientRefused are redis's CLIENT subcommands that act on the server or
// on other connections.
var clientRefused = map[string]bool{
	"kill": true, "pause": true, "unpause": true, "unblock": true, "tracking": true,
	"trackinginfo": true, "caching": true, "getredir": true,
}

var clientHelp = []string{
	"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"GETNAME", "    Return the name of the current connection.",
	"ID", "    Return the ID of the current connection.",
	"INFO", "    Return information about the current client connection.",
	"LIST [TYPE <normal|master|replica|pubsub>] [ID <id> [<id> ...]]",
	"    Return information about client connections of this worker of the proxy.",
	"NO-EVICT (ON|OFF)", "    Accepted; eviction is the servers' concern.",
	"NO-TOUCH (ON|OFF)", "    Accepted; the servers' LRU is not affected by the proxy.",
	"REPLY (ON|OFF|SKIP)", "    Control the replies sent to the current connection.",
	"SETNAME <name>", "    Assign the name <name> to the current connection.",
	"SETINFO <option> <value>", "    Set client meta attr (LIB-NAME, LIB-VER).",
	"HELP", "    Print this help.",
}

// clientList answers CLIENT LIST [TYPE type] [ID id ...] with the clients of
// this worker in the pool.
func (r *redisProto) clientList(c *clientConn, opts [][]byte) {
	var ids []uint64
	kind := ""
	for i := 0; i < len(opts); i++ {
		switch lower(opts[i]) {
		case "type":
			if i+1 >= len(opts) {
				c.localError("ERR syntax error")
				return
			}
			kind = lower(opts[i+1])
			switch kind {
			case "normal", "master", "replica", "slave", "pubsub":
			default:
				c.localError("ERR Unknown client type '" + string(opts[i+1]) + "'")
				return
			}
			i++
		case "id":
			if i+1 >= len(opts) {
				c.localError("ERR syntax error")
				return
			}
			for i++; i < len(opts); i++ {
				id, err := strconv.ParseUint(string(opts[i]), 10, 64)
				if err != nil || id == 0 {
					c.localError("ERR Invalid client ID")
					return
				}
				ids = append(ids, id)
			}
		default:
			c.localError("ERR syntax error")
			return
		}
	}
	var text []byte
	if kind == "" || kind == "normal" {
		for cl := range r.pool.clients {
			if ids != nil && !containsID(ids, cl.id) {
				continue
			}
			text = cl.appendClientInfo(text, c.lp.now)
		}
	}
	c.localReply(func(dst []byte) []byte { return c.appendText(dst, text) })
}

func containsID(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// appendClientInfo appends c's line of CLIENT LIST and CLIENT INFO, in
// redis 7.2's fields; buffers are the proxy's, not a server's.
func (c *clientConn) appendClientInfo(dst []byte, now int64) []byte {
	rs := c.rs
	if rs == nil {
		rs = newRedisSession()
	}
	var laddr string
	if sa, err := unix.Getsockname(c.fd); err == nil {
		laddr = sockaddrString(sa)
	}
	cmd := rs.lastCmd
	if cmd == "" {
		cmd = "NULL"
	}
	user := c.userName()
	// redis's order of flag letters: P (subscriber), x (MULTI), b
	// (blocked), e, T.
	flags := ""
	sub, psub, multi := 0, 0, -1
	if st := rs.st; st != nil {
		if st.sub != nil {
			sub, psub = len(st.sub.channels), len(st.sub.patterns)
		}
		if sub+psub > 0 {
			flags += "P"
		}
		if st.txn.multi {
			multi = st.txn.count
			flags += "x"
		}
		for _, l := range st.blocks {
			if l.blockedFor(c) && l.head < len(l.inflight) {
				flags += "b"
				break
			}
		}
	}
	if rs.noEvict {
		flags += "e"
	}
	if rs.noTouch {
		flags += "T"
	}
	if flags == "" {
		flags = "N"
	}
	f := func(k, v string) {
		dst = append(dst, k...)
		dst = append(dst, '=')
		dst = append(dst, v...)
		dst = append(dst, ' ')
	}
	fi := func(k string, v int64) {
		dst = append(dst, k...)
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, v, 10)
		dst = append(dst, ' ')
	}
	fi("id", int64(c.id))
	f("addr", c.remoteAddr())
	f("laddr", laddr)
	fi("fd", int64(c.fd))
	f("name", string(rs.name))
	fi("age", (now-c.accepted)/int64(time.Second))
	fi("idle", (now-c.lastRead)/int64(time.Second))
	f("flags", flags)
	fi("db", int64(c.db()))
	fi("sub", int64(sub))
	fi("psub", int64(psub))
	fi("ssub", 0)
	fi("multi", int64(multi))
	fi("qbuf", int64(c.rb.len()))
	fi("qbuf-free", 0)
	fi("argv-mem", 0)
	fi("multi-mem", 0)
	fi("rbs", int64(cap(c.rb.buf)))
	fi("rbp", 0)
	fi("obl", 0)
	fi("oll", int64(c.inFlight()))
	fi("omem", int64(c.unsent()))
	fi("tot-mem", int64(cap(c.rb.buf)))
	f("events", "r")
	f("cmd", cmd)
	f("user", user)
	fi("redir", -1)
	fi("resp", int64(rs.proto))
	f("lib-name", string(rs.lib[0]))
	dst = append(dst, "lib-ver="...)
	dst = append(dst, rs.lib[1]...)
	return append(dst, '\n')
}

func (r *redisProto) auth(c *clientConn, args [][]byte) {
	if len(args) > 2 {
		c.localError("ERR syntax error")
		return
	}
	u, text := r.authenticate(args)
	if text != "" {
		c.localError(text)
		return
	}
	c.loggedIn(u)
	c.localOK()
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]] as redis
// 7 does: the map of the connection's properties, in the protocol the
// client switched to.
func (r *redisProto) hello(c *clientConn, args [][]byte) {
	rs := c.session()
	ver := 0
	if len(args) > 1 {
		v, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			c.localError("ERR Protocol version is not an integer or out of range")
			return
		}
		if v < 2 || v > 3 {
			c.localError("NOPROTO unsupported protocol version")
			return
		}
		ver = int(v)
	}
	var name []byte
	var auth [][]byte
	for i := 2; i < len(args); i++ {
		// Like redis, the error quotes the option as the client spelt it.
		switch opt := lower(args[i]); {
		case opt == "auth" && i+2 < len(args):
			auth = args[i+1 : i+3]
			i += 2
		case opt == "setname" && i+1 < len(args):
			name = args[i+1]
			i++
		default:
			c.localError("ERR Syntax error in HELLO option '" + string(args[i]) + "'")
			return
		}
	}
	if auth != nil {
		u, text := r.authenticate(auth)
		if text != "" {
			c.localError(text)
			return
		}
		c.loggedIn(u)
	}
	if r.pool.authRequired() && !rs.authed {
		// redis 7.0's text.
		c.localError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if name != nil {
		if !validClientName(name) {
			c.localError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		rs.name = append(rs.name[:0], name...)
	}
	if ver != 0 {
		c.setProto(ver)
	}
	c.localReply(func(dst []byte) []byte {
		dst = c.appendMapHeader(dst, 7)
		dst = resp.AppendBulkString(dst, "server")
		dst = resp.AppendBulkString(dst, "nuthatch")
		dst = resp.AppendBulkString(dst, "version")
		dst = resp.AppendBulkString(dst, Version)
		dst = resp.AppendBulkString(dst, "proto")
		dst = resp.AppendInt(dst, int64(rs.proto))
		dst = resp.AppendBulkString(dst, "id")
		dst = resp.AppendInt(dst, int64(c.id))
		dst = resp.AppendBulkString(dst, "mode")
		dst = resp.AppendBulkString(dst, "standalone")
		dst = resp.AppendBulkString(dst, "role")
		dst = resp.AppendBulkString(dst, "master")
		dst = resp.AppendBulkString(dst, "modules")
		return resp.AppendArrayHeader(dst, 0)
	})
}
