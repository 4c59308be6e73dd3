package proxy

import (
	"bytes"
	"slices"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Pub/sub (issue #21). A channel is placed by the pool's hash like a key,
// so PUBLISH (forwarded on a shared link) and SUBSCRIBE of one channel
// meet on one server; a pattern may match channels of any server, so
// PSUBSCRIBE and PUNSUBSCRIBE go to every server. A subscriber holds one
// pinned link per server it listens on. The proxy keeps the client's
// subscriptions itself and answers (P)(UN)SUBSCRIBE with the counts a
// single redis would report (channels and patterns together), once every
// server involved confirmed, so that a message published after the
// confirmation reaches the client; the servers' own confirmations are
// consumed, their messages forwarded as they are (RESP2 arrays on a RESP2
// link, RESP3 pushes on a RESP3 one). UNSUBSCRIBE without arguments is
// sent to each server with the channels it holds, in subscription order.
//
// A RESP2 subscriber may only send (P)(UN)SUBSCRIBE, PING, QUIT and
// RESET, as on redis; a RESP3 one may send anything. A subscriber that
// does not read is bounded by the client output limits like any client
// (client_output_hard_limit, client_output_soft_limit) and closed, with a
// log line, when over them; client_idle_timeout does not close a
// subscriber (redis's timeout does not either). A subscriber's link that
// fails closes the client: its subscriptions on that server are gone.

// subState is a subscribed client's, in its session.
type subState struct {
	channels []string // in subscription order
	patterns []string
	links    []*link // by server index
}

// subLink is a subscriber link's: the requests waiting for the server's
// confirmations, oldest first.
type subLink struct {
	owner *clientConn
	acks  []subAck
}

type subAck struct {
	m *msg
	n int // confirmations still to come on this link
}

func (s *subState) active() bool { return s != nil && len(s.channels)+len(s.patterns) > 0 }

func (s *subState) count() int { return len(s.channels) + len(s.patterns) }

// subscribed reports whether c is a subscriber.
func (c *clientConn) subscribed() bool {
	return c.rs != nil && c.rs.st != nil && c.rs.st.sub.active()
}

// pubsub takes the pub/sub commands the proxy serves.
func (r *redisProto) pubsub(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) bool {
	switch cmd.Name {
	case "publish", "spublish":
		c.keys = append(c.keys[:0], 1)
		r.single(c, args, raw, c.keys)
	case "subscribe", "unsubscribe", "psubscribe", "punsubscribe":
		r.subscribe(c, cmd.Name, args[1:])
	default:
		return false
	}
	return true
}

// subDispatch serves a RESP2 subscriber: only what redis allows then.
func (r *redisProto) subDispatch(c *clientConn, st *statefulSession, args [][]byte, raw []byte) {
	cmd := r.command(c, args)
	if cmd == nil {
		return
	}
	switch cmd.Name {
	case "subscribe", "unsubscribe", "psubscribe", "punsubscribe":
		r.subscribe(c, cmd.Name, args[1:])
	case "ping":
		if len(args) > 2 {
			c.localWrongArgs(string(args[0]))
			return
		}
		var arg []byte
		if len(args) == 2 {
			arg = args[1]
		}
		c.localReply(func(dst []byte) []byte {
			dst = resp.AppendArrayHeader(dst, 2)
			dst = resp.AppendBulkString(dst, "pong")
			return resp.AppendBulk(dst, arg)
		})
	case "quit", "reset":
		r.local(c, cmd, args)
	case "ssubscribe", "sunsubscribe":
		c.localError("ERR command '" + cmd.Name + "' is not supported by nuthatch: " + cmd.Reason)
	default:
		name := cmd.Name
		if isContainer(name) && len(args) > 1 {
			name += "|" + lower(args[1])
		}
		c.localError("ERR Can't execute '" + name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
	}
}

// isContainer: redis names these commands with their subcommand.
func isContainer(name string) bool {
	switch name {
	case "client", "command", "config", "script", "object", "xinfo", "xgroup", "memory", "acl", "cluster",
		"function", "latency", "module", "slowlog", "pubsub":
		return true
	}
	return false
}

// subscribe serves (P)(UN)SUBSCRIBE: the reply is made now, from the
// client's subscriptions as they become, and sent once every server it
// went to confirmed.
func (r *redisProto) subscribe(c *clientConn, name string, targets [][]byte) {
	p := r.pool
	st := c.stateful()
	if st.sub == nil {
		st.sub = &subState{}
	}
	ss := st.sub
	if n := len(p.servers); len(ss.links) < n {
		ss.links = append(ss.links, make([]*link, n-len(ss.links))...) // a cluster pool's nodes grow
	}
	// A Redis Cluster delivers every PUBLISH to every node (over its
	// bus): one link to one node hears every channel and pattern, where
	// a link per node would get each message once per node.
	var one *server
	if p.cluster != nil {
		for _, l := range ss.links {
			if l != nil && !l.dead {
				one = l.sc.srv
			}
		}
		if one == nil {
			one = p.anyClusterServer()
		}
		if one == nil {
			m := newMsg(c)
			c.enqueue(m)
			p.fail(m, ErrNoServer)
			return
		}
	}
	pattern := name[0] == 'p'
	unsub := name == "unsubscribe" || name == "punsubscribe"
	list := &ss.channels
	if pattern {
		list = &ss.patterns
	}
	var names []string
	if unsub && len(targets) == 0 {
		names = slices.Clone(*list)
	} else {
		for _, t := range targets {
			names = append(names, string(t))
		}
	}
	// Which servers get which names.
	perServer := make([][]string, len(p.servers))
	for _, n := range names {
		has := slices.Contains(*list, n)
		if unsub != has {
			continue // already so: redis confirms, the server need not hear it
		}
		if one != nil {
			perServer[one.idx] = append(perServer[one.idx], n)
			continue
		}
		if pattern {
			for i := range perServer {
				perServer[i] = append(perServer[i], n)
			}
			continue
		}
		s := p.serverFor([]byte(n))
		if s == nil {
			m := newMsg(c)
			c.enqueue(m)
			p.fail(m, ErrNoServer)
			return
		}
		perServer[s.idx] = append(perServer[s.idx], n)
	}
	// Pin the links first: a refusal changes nothing.
	for i, ns := range perServer {
		if len(ns) == 0 || (ss.links[i] != nil && !ss.links[i].dead) {
			continue
		}
		l, err := p.pin(c, p.servers[i], pinSub)
		if err != nil {
			m := newMsg(c)
			c.enqueue(m)
			p.fail(m, err)
			return
		}
		l.pin.sub = &subLink{owner: c}
		ss.links[i] = l
	}
	m := newMsg(c)
	c.enqueue(m)
	out := m.reply[:0]
	for _, n := range names {
		if i := slices.Index(*list, n); unsub && i >= 0 {
			*list = slices.Delete(*list, i, i+1)
		} else if !unsub && i < 0 {
			*list = append(*list, n)
		}
		out = c.appendSubReply(out, name, []byte(n), ss.count())
	}
	if len(names) == 0 {
		out = c.appendSubReply(out, name, nil, ss.count())
	}
	m.reply = out
	cmdName := []byte(name)
	for i, ns := range perServer {
		if len(ns) == 0 {
			continue
		}
		l := ss.links[i]
		l.writeRaw(func(dst []byte) []byte {
			dst = resp.AppendArrayHeader(dst, 1+len(ns))
			dst = resp.AppendBulk(dst, cmdName)
			for _, n := range ns {
				dst = resp.AppendBulkString(dst, n)
			}
			return dst
		})
		l.pin.sub.acks = append(l.pin.sub.acks, subAck{m: m, n: len(ns)})
		m.pending += int32(len(ns))
	}
	if m.pending == 0 {
		c.done(m)
	}
}

// appendSubReply appends one confirmation as redis words it; a nil name
// is UNSUBSCRIBE's reply when nothing was subscribed.
func (c *clientConn) appendSubReply(dst []byte, kind string, name []byte, count int) []byte {
	if c.resp3() {
		dst = resp.AppendPushHeader(dst, 3)
	} else {
		dst = resp.AppendArrayHeader(dst, 3)
	}
	dst = resp.AppendBulkString(dst, kind)
	if name == nil {
		dst = c.appendNull(dst)
	} else {
		dst = resp.AppendBulk(dst, name)
	}
	return resp.AppendInt(dst, int64(count))
}

// writeRaw queues bytes on l that no reply answers in order (a
// subscriber's requests: their confirmations are frames, subLink.frame).
func (l *link) writeRaw(build func(dst []byte) []byte) {
	if l.dead {
		return
	}
	l.wbuf = build(l.wbuf)
	if l.fd >= 0 {
		l.lp.dirtyLink(l)
	}
}

var subConfirmations = [][]byte{
	[]byte("$9\r\nsubscribe\r\n"), []byte("$11\r\nunsubscribe\r\n"),
	[]byte("$10\r\npsubscribe\r\n"), []byte("$12\r\npunsubscribe\r\n"),
}

// frame takes one frame a subscriber link read: a confirmation counts
// toward its request, anything else (message, pmessage) goes to the
// client as it is.
func (sl *subLink) frame(l *link, b []byte) {
	c := sl.owner
	if i := bytes.IndexByte(b, '\n'); i > 0 && (b[0] == '*' || b[0] == '>') {
		rest := b[i+1:]
		for _, conf := range subConfirmations {
			if bytes.HasPrefix(rest, conf) {
				sl.confirmed(c)
				return
			}
		}
	}
	if c.closed {
		return
	}
	m := newMsg(c)
	m.reply = append(m.reply[:0], b...)
	m.start = c.lp.now
	c.queue = append(c.queue, m)
	c.done(m)
}

// confirmed counts one confirmation of the oldest request waiting.
func (sl *subLink) confirmed(c *clientConn) {
	if len(sl.acks) == 0 {
		return
	}
	m := sl.acks[0].m
	if sl.acks[0].n--; sl.acks[0].n == 0 {
		sl.acks = slices.Delete(sl.acks, 0, 1)
	}
	if m.pending--; m.pending == 0 && !c.closed {
		c.done(m)
	}
	if len(sl.acks) == 0 && !c.closed && c.rs.st != nil && c.rs.st.sub != nil {
		c.rs.st.sub.release(c)
	}
}

// release gives back the links of a client no longer subscribed to
// anything, once their servers confirmed: their state is clean again.
func (s *subState) release(c *clientConn) {
	if s.active() {
		return
	}
	for i, l := range s.links {
		if l == nil || l.dead || l.pin.sub == nil || len(l.pin.sub.acks) > 0 {
			continue
		}
		l.pin.sub = nil
		l.unpin()
		s.links[i] = nil
	}
}

// lost: a subscriber link died; the client is closed, as its
// subscriptions on that server are gone.
func (s *subState) lost(c *clientConn, l *link) bool {
	i := slices.Index(s.links, l)
	if i < 0 {
		return false
	}
	s.links[i] = nil
	p := c.pool
	if p.limitLog.allow(p.lp.now) {
		p.log.WithField("client", c.remoteAddr()).WithField("server", l.sc.srv.name).
			Warn("closing a subscriber whose server connection failed")
	}
	c.close()
	return true
}

// endSub closes a leaving subscriber's links (their state is unknown to
// a next owner); requests still waiting for confirmations are answered.
func (st *statefulSession) endSub(c *clientConn) {
	s := st.sub
	if s == nil {
		return
	}
	st.sub = nil
	for _, l := range s.links {
		if l == nil || l.dead {
			continue
		}
		for _, a := range l.pin.sub.acks {
			if a.m.pending > 0 && !c.closed {
				a.m.pending = 0
				c.done(a.m)
			}
		}
		l.pin.sub.acks = nil
		l.kill(errLinkShutdown)
	}
}
