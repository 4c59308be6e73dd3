package proxy

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
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
	// shards are a cluster pool's shard channels (SSUBSCRIBE), each on
	// its slot's owner; Redis counts them apart from the others.
	shards []string
	// one is a cluster pool's node of the channels and patterns.
	one   *server
	links []*link // by server index
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
	// shards: an SSUBSCRIBE's channels, sent again on MOVED, dropped if
	// the node refuses them.
	shards    []string
	redirects int
}

func (s *subState) active() bool {
	return s != nil && len(s.channels)+len(s.patterns)+len(s.shards) > 0
}

// countFor is the subscription count Redis reports in a confirmation of
// kind: shard channels apart, channels and patterns together.
func (s *subState) countFor(kind string) int {
	if kind == "ssubscribe" || kind == "sunsubscribe" {
		return len(s.shards)
	}
	return len(s.channels) + len(s.patterns)
}

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
	case "ssubscribe", "sunsubscribe":
		if r.pool.cluster == nil {
			return false
		}
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
		if r.pool.cluster == nil {
			c.localError("ERR command '" + cmd.Name + "' is not supported by nuthatch: " + cmd.Reason)
			return
		}
		r.subscribe(c, cmd.Name, args[1:])
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
		if o := ss.one; o != nil && o.idx < len(ss.links) && ss.links[o.idx] != nil && !ss.links[o.idx].dead {
			one = o
		} else {
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
	shard := name == "ssubscribe" || name == "sunsubscribe"
	unsub := name == "unsubscribe" || name == "punsubscribe" || name == "sunsubscribe"
	list := &ss.channels
	switch {
	case pattern:
		list = &ss.patterns
	case shard:
		// Shard channels live on their slot's owner, as keys do, and one
		// command's must share a slot, as Redis requires.
		list = &ss.shards
		for _, t := range targets[min(1, len(targets)):] {
			if hashkit.Slot(t) != hashkit.Slot(targets[0]) {
				c.localError(crossSlotText)
				return
			}
		}
		one = nil
	}
	if one != nil {
		ss.one = one
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
		if err == errPinWait {
			return
		}
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
		out = c.appendSubReply(out, name, []byte(n), ss.countFor(name))
	}
	if len(names) == 0 {
		out = c.appendSubReply(out, name, nil, ss.countFor(name))
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
		ack := subAck{m: m, n: len(ns)}
		if shard && !unsub {
			ack.shards = ns
		}
		l.pin.sub.acks = append(l.pin.sub.acks, ack)
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
	l.countQueued()
	if l.fd >= 0 {
		l.lp.dirtyLink(l)
	}
}

var subConfirmations = [][]byte{
	[]byte("$9\r\nsubscribe\r\n"), []byte("$11\r\nunsubscribe\r\n"),
	[]byte("$10\r\npsubscribe\r\n"), []byte("$12\r\npunsubscribe\r\n"),
	[]byte("$10\r\nssubscribe\r\n"), []byte("$12\r\nsunsubscribe\r\n"),
}

var sunsubscribeConf = []byte("$12\r\nsunsubscribe\r\n")

// frame takes one frame a subscriber link read: a confirmation counts
// toward its request, anything else (message, pmessage) goes to the
// client as it is.
func (sl *subLink) frame(l *link, b []byte) {
	c := sl.owner
	if i := bytes.IndexByte(b, '\n'); i > 0 && (b[0] == '*' || b[0] == '>') {
		rest := b[i+1:]
		if len(sl.acks) == 0 && bytes.HasPrefix(rest, sunsubscribeConf) {
			// Asked by no one: the node gave the shard channel's slot
			// away (a reshard, a failover) and dropped its subscribers.
			sl.shardDropped(c, b)
			return
		}
		for _, conf := range subConfirmations {
			if bytes.HasPrefix(rest, conf) {
				sl.confirmed(c)
				return
			}
		}
	}
	if b[0] == '-' && len(sl.acks) > 0 {
		sl.refused(c, b)
		return
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

// refused: the node answered a subscriber's request with an error (an
// SSUBSCRIBE sent to a node that no longer owns the channel's slot:
// MOVED). That request gets the error, with no MOVED shown, its shard
// channels are dropped, and the slot map is patched.
func (sl *subLink) refused(c *clientConn, b []byte) {
	a := sl.acks[0]
	sl.acks = slices.Delete(sl.acks, 0, 1)
	p := c.pool
	text := string(bytes.TrimRight(b[1:], "\r\n"))
	if c.closed || c.rs.st == nil || c.rs.st.sub == nil {
		return
	}
	ss := c.rs.st.sub
	if kind, slot, addr := parseRedirect(b); kind == "MOVED" && p.cluster != nil && len(a.shards) > 0 {
		target := p.clusterServer(addr)
		p.cluster.slots[slot] = int32(target.idx)
		p.clusterHint(addr, HintMoved)
		p.stats.Moved.Add(1)
		if a.redirects < p.cfg.Cluster.MaxRedirects && sl.resubscribe(c, ss, target, a) {
			return
		}
		text = "ERR nuthatch: the shard channel's slot " + strconv.Itoa(slot) + " moved to " + addr + "; subscribe again"
	}
	for _, n := range a.shards {
		if j := slices.Index(ss.shards, n); j >= 0 {
			ss.shards = slices.Delete(ss.shards, j, j+1)
		}
	}
	a.m.reply = resp.AppendError(a.m.reply[:0], text)
	a.m.isErr = true
	if a.m.pending -= int32(a.n); a.m.pending <= 0 {
		a.m.pending = 0
		c.done(a.m)
	}
	ss.release(c)
}

// resubscribe sends a refused SSUBSCRIBE again, to the node a MOVED
// named, for the same reply.
func (sl *subLink) resubscribe(c *clientConn, ss *subState, s *server, a subAck) bool {
	p := c.pool
	if n := len(p.servers); len(ss.links) < n {
		ss.links = append(ss.links, make([]*link, n-len(ss.links))...)
	}
	l := ss.links[s.idx]
	if l == nil || l.dead {
		var err error
		if l, err = p.pin(c, s, pinSub); err != nil {
			return false
		}
		l.pin.sub = &subLink{owner: c}
		ss.links[s.idx] = l
	}
	names := a.shards
	l.writeRaw(func(dst []byte) []byte {
		dst = resp.AppendArrayHeader(dst, 1+len(names))
		dst = resp.AppendBulkString(dst, "ssubscribe")
		for _, n := range names {
			dst = resp.AppendBulkString(dst, n)
		}
		return dst
	})
	a.redirects++
	l.pin.sub.acks = append(l.pin.sub.acks, a)
	return true
}

// shardDropped tells the client of a shard channel its node dropped, as
// the node tells a cluster client (which subscribes again), with the
// client's own count.
func (sl *subLink) shardDropped(c *clientConn, frame []byte) {
	var ch []byte
	i := 0
	resp.ArrayElems(frame, func(e []byte) bool {
		if i == 1 {
			ch = bulkBytes(e)
		}
		i++
		return true
	})
	if ch == nil || c.closed || c.rs.st == nil || c.rs.st.sub == nil {
		return
	}
	ss := c.rs.st.sub
	j := slices.Index(ss.shards, string(ch))
	if j < 0 {
		return
	}
	ss.shards = slices.Delete(ss.shards, j, j+1)
	if c.pool.cluster != nil {
		c.pool.clusterHint("", HintMoved) // the map is out of date
	}
	m := newMsg(c)
	m.reply = c.appendSubReply(m.reply[:0], "sunsubscribe", ch, len(ss.shards))
	m.start = c.lp.now
	c.queue = append(c.queue, m)
	c.done(m)
	ss.release(c)
}

// bulkBytes is a bulk string's content, nil for anything else.
func bulkBytes(e []byte) []byte {
	if len(e) < 4 || e[0] != '$' {
		return nil
	}
	i := bytes.Index(e, []byte("\r\n"))
	if i < 0 || len(e) < i+4 {
		return nil
	}
	return e[i+2 : len(e)-2]
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
