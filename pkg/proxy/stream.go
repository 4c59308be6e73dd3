package proxy

import (
	"io"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Large replies are streamed rather than held whole (issue #23). When the
// reply at the head of a link declares itself large (a RESP bulk of
// streamThreshold bytes or more), the link stops framing it in its read
// buffer: the bytes are read from the server socket straight into the
// msg's reply buffer (streamWindow bytes), which the client writes out as
// they come, in its reply order, and reuses once all of it is written.
// When that buffer is full and every reply before the msg in its client's
// queue is ready (so only the client's reading can make room), the link
// pauses: it
// reads nothing more, and the rest of the reply waits in the kernel's and
// the server's buffers, not the proxy's. The client's write that empties
// the buffer resumes the link. A streaming msg behind a reply that is not
// ready cannot be written, so it buffers (its bytes count
// toward the client output limits) instead of pausing the link: a pause
// that waits for anything but the client's own socket could wait for a
// reply queued behind another paused link, in a cycle.
//
// While a link streams, the server's new requests go to another link
// (server.conn), opening up to maxExtraLinks more than server_connections;
// requests queued behind the stream wait for it. When the client of a
// streaming reply goes away (or is closed by an output limit), the rest of
// the reply is read and discarded, so the link serves the others again.

const (
	// streamThreshold: replies this large or larger stream. Below it a
	// reply is framed whole (one copy, from the read buffer into the msg).
	streamThreshold = 512 << 10
	// streamWindow is the buffer of a streaming reply: what the proxy
	// holds at most for a client that reads its large reply slowly.
	streamWindow = 1 << 20
	// maxExtraLinks bounds the links opened, per server and link class,
	// beside server_connections while those stream large replies: so many
	// slow readers of large values at once leave new requests a link.
	maxExtraLinks = 16
)

// streamer is a protocol that can stream large replies.
type streamer interface {
	// stream starts streaming the incomplete reply to head (the link's
	// next reply) at the start of buf when it should stream, and reports
	// whether it did: the link then takes the reply over.
	stream(l *link, head *msg, buf []byte) bool
	// rest takes the rest of a reply that streamed in part (l.cont), now
	// complete in buf.
	rest(l *link, buf []byte, isErr bool)
}

func (r *redisProto) stream(l *link, head *msg, buf []byte) bool {
	total := r.streamLen(l, head, buf)
	if total == 0 {
		return false
	}
	l.pop()
	l.sc.srv.stats.Responses.Add(1)
	l.startStream(head, total)
	return true
}

// A RESP reply streams whole: nothing follows it.
func (r *redisProto) rest(*link, []byte, bool) {}

// streamLen: a RESP bulk string ('$', RESP2 and RESP3) of at least
// streamThreshold bytes, to a plain request.
func (r *redisProto) streamLen(l *link, m *msg, buf []byte) int {
	if len(buf) == 0 || buf[0] != '$' || !streamable(m) {
		return 0
	}
	v, i := 0, 1
	for ; i < len(buf) && buf[i] >= '0' && buf[i] <= '9'; i++ {
		v = v*10 + int(buf[i]-'0')
		if v > r.pool.maxReply {
			return 0 // the scanner refuses it
		}
	}
	if i+1 >= len(buf) || i == 1 || buf[i] != '\r' || buf[i+1] != '\n' {
		return 0
	}
	total := i + 2 + v + 2
	if total < streamThreshold || total <= len(buf) || int64(v) > r.lim.MaxBulkLen {
		return 0
	}
	if l.rscan != nil {
		l.rscan.Reset()
	}
	return total
}

// streamable: m is a request of a client, answered whole by one reply.
func streamable(m *msg) bool {
	return m != nil && m.client != nil && m.parent == nil && len(m.members) == 0 && !m.silent && !m.quiet
}

// atHead reports whether m is the next reply c writes.
func (c *clientConn) atHead(m *msg) bool {
	return c.qhead < len(c.queue) && c.queue[c.qhead] == m
}

// writableNext reports whether every reply before m in c's queue is
// ready, so that only c's socket stands between m and its client.
func (c *clientConn) writableNext(m *msg) bool {
	for i := c.qhead; i < len(c.queue); i++ {
		if c.queue[i] == m {
			return true
		}
		if !c.queue[i].done {
			return false
		}
	}
	return false
}

// addHeld counts n more (or, negative, fewer) reply bytes held for c.
func (c *clientConn) addHeld(n int) {
	c.held += n
	c.lp.held += n
}

// startStream has m, popped from l (or a member of the carrier l.cont),
// take the next total bytes of its reply, which begin with all of l's
// read buffer. m.reply may already hold the start of its reply.
func (l *link) startStream(m *msg, total int) {
	b := l.rb.bytes()
	l.sc.srv.stats.ResponseBytes.Add(uint64(len(b)))
	l.stream, m.stream, m.streamed = m, l, true
	l.streamLeft = total - len(b)
	l.streamAt = l.lp.now
	if c := m.client; !c.closed && cap(m.reply) < streamWindow {
		m.reply = append(make([]byte, 0, max(streamWindow, len(m.reply)+len(b))), m.reply...)
	}
	l.give(m, b)
	l.rb.consume(len(b))
	l.rb.release()
}

// give appends b to the reply of m, which streams, for its client to
// write out now.
func (l *link) give(m *msg, b []byte) {
	if c := m.client; !c.closed && len(b) > 0 {
		m.reply = append(m.reply, b...)
		l.lp.copied += len(b)
		c.addHeld(len(b))
		l.lp.markReady(c)
	}
}

// readStream reads the streaming reply. It reports true when the reply is
// complete and the link reads on, false when reading stops for now (the
// socket is empty, the link paused or failed).
func (l *link) readStream() bool {
	m := l.stream
	c := m.client
	var buf []byte
	discard := c.closed
	if discard {
		buf = l.lp.scratch
	} else {
		if len(m.reply) == cap(m.reply) {
			if c.writableNext(m) {
				l.paused = true // resumed by the client's write (clientConn.drainedStream)
				return false
			}
			// Not writable yet: buffer, under the output limits.
			m.reply = slices.Grow(m.reply, max(streamWindow, len(m.reply)))
		}
		buf = m.reply[len(m.reply):cap(m.reply)]
	}
	buf = buf[:min(len(buf), l.streamLeft)]
	for {
		n, err := l.sysRead(buf)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if !isAgain(err) {
				l.kill(err)
			}
			return false
		}
		if n == 0 {
			l.kill(io.EOF)
			return false
		}
		l.sc.srv.stats.ResponseBytes.Add(uint64(n))
		l.streamLeft -= n
		l.streamAt = l.lp.now
		if !discard {
			m.reply = m.reply[:len(m.reply)+n]
			c.addHeld(n)
			l.lp.markReady(c)
		}
		if l.streamLeft == 0 {
			l.endStream()
			return true
		}
		return n == len(buf) || l.hup
	}
}

// endStream finishes the streamed reply, or its streamed part when the
// rest of it is framed as usual (l.cont).
func (l *link) endStream() {
	if l.cont != nil {
		return
	}
	m := l.stream
	l.stream, m.stream = nil, nil
	l.paused = false
	s := l.sc.srv
	s.ok()
	if m.client.closed {
		m.free()
		return
	}
	s.pool.answered(m, false)
}

// failStream ends a streaming reply whose link failed: a client that got
// none of it gets the error reply, one that got part of it gets what is
// buffered and is then closed (its reply cannot be completed).
func (l *link) failStream(err error) {
	m := l.stream
	l.stream, m.stream = nil, nil
	l.paused = false
	if cont := l.cont; cont != nil {
		// The carrier's members after m get the error.
		l.cont = nil
		for i := l.contMember + 1; i < len(cont.members); i++ {
			l.sc.srv.pool.fail(cont.members[i], err)
		}
		if cont != m {
			cont.free()
		}
	}
	c := m.client
	if c.closed {
		m.free()
		return
	}
	if c.atHead(m) && c.partial == 0 && m.flushed == 0 {
		c.addHeld(-len(m.reply))
		m.streamed = false
		l.sc.srv.pool.fail(m, err)
		return
	}
	m.err = err
	m.closeAfter = true
	l.sc.srv.pool.finish(m)
}

// drainedStream: the client wrote all that m, a streaming msg at its head,
// has buffered; the buffer is reused and a paused link resumes.
func (c *clientConn) drainedStream(m *msg) {
	m.flushed += len(m.reply)
	if cap(m.reply) > 2*streamWindow {
		m.reply = make([]byte, 0, streamWindow)
	}
	m.reply = m.reply[:0]
	c.partial = 0
	if l := m.stream; l != nil && l.paused {
		c.lp.resumeLink(l)
	}
}

// resumeLink has l read again at the end of the round.
func (lp *loop) resumeLink(l *link) {
	if !l.resuming {
		l.resuming = true
		lp.resumed = append(lp.resumed, l)
	}
}

// resumeLinks reads the links whose stream made room.
func (lp *loop) resumeLinks() {
	for i := 0; i < len(lp.resumed); i++ {
		l := lp.resumed[i]
		lp.resumed[i] = nil
		l.resuming = false
		if !l.dead {
			l.paused = false // read re-pauses a stream whose window is still full
			l.read()
		}
	}
	lp.resumed = lp.resumed[:0]
}

// late reports whether l's server is late by timeout: the oldest request
// written to it (or the reply streaming on it, while the link reads it)
// has waited that long. A paused link waits for its client, not for the
// server.
func (l *link) late(now, timeout int64) bool {
	if l.starved {
		return false // waiting for the worker's clients to read
	}
	if l.stream != nil {
		return !l.paused && now-l.streamAt > timeout
	}
	return l.head < len(l.inflight) && l.inflight[l.head].sentAt != 0 && now-l.inflight[l.head].sentAt > timeout
}

// busy: l streams a large reply, so what is queued on it now waits for
// that reply.
func (l *link) busy() bool { return l != nil && l.stream != nil }

// unbusy returns a connection of conns whose link is not streaming,
// opening one of up to maxExtraLinks extra ones when every link is. When
// all of those stream too, it picks the link whose stream should end
// first: one still flowing (not paused) with the fewest bytes left.
func (s *server) unbusy(class uint8, conns []*serverConn, sc *serverConn) *serverConn {
	for _, o := range conns {
		if !o.l.busy() {
			return o
		}
	}
	extra := &s.extra[class]
	for _, o := range *extra {
		if !o.l.busy() {
			return o
		}
	}
	if len(*extra) < maxExtraLinks {
		o := &serverConn{srv: s, resp3: class == linkRESP3}
		*extra = append(*extra, o)
		return o
	}
	best := sc
	better := func(o *serverConn) {
		a, b := o.l, best.l
		if !a.busy() || (!a.paused && b.paused) || (a.paused == b.paused && a.streamLeft < b.streamLeft) {
			best = o
		}
	}
	for _, o := range conns {
		better(o)
	}
	for _, o := range *extra {
		better(o)
	}
	return best
}

// outputBacklog is what c is owed: the reply bytes held for it and the
// rest of a reply streaming to it at the head of its queue.
func (c *clientConn) outputBacklog() int64 {
	n := int64(c.held)
	if c.qhead < len(c.queue) {
		if l := c.queue[c.qhead].stream; l != nil {
			n += int64(l.streamLeft)
		}
	}
	return n
}

// overOutputLimit applies client_output_hard_limit (now) and
// client_output_soft_limit (for client_output_soft_duration), redis's
// client-output-buffer-limit; a client over them is closed, counted and
// logged (rate-limited).
func (c *clientConn) overOutputLimit(now int64) bool {
	lim := c.outputLimits()
	why := ""
	if lim.hard > 0 && int64(c.held) > lim.hard {
		why = lim.names[0]
	} else if lim.soft > 0 {
		if c.outputBacklog() <= lim.soft {
			c.softSince = 0
			return false
		}
		if c.softSince == 0 {
			c.softSince = now
		}
		if now-c.softSince < int64(lim.softFor) {
			return false
		}
		why = lim.names[1]
	} else {
		return false
	}
	p := c.pool
	p.stats.ClientOutputClosed.Add(1)
	if lim.pubsub {
		p.stats.PubSubOutputClosed.Add(1)
	}
	if p.limitLog.allow(now) {
		p.log.WithField("client", c.remoteAddr()).WithField("limit", why).
			WithField("held_bytes", c.held).WithField("pending_bytes", c.outputBacklog()).
			Warn("closing a client over its output limit")
	}
	c.close()
	return true
}

// outputLimits are a client's output limits: the pub/sub class's for a
// subscriber (redis's client-output-buffer-limit pubsub), else the
// normal class's.
type outputLimits struct {
	hard, soft int64
	softFor    time.Duration
	names      [2]string // the attributes, for the log
	pubsub     bool
}

// hardOutputLimit is outputLimits' hard limit, for the write path.
func (c *clientConn) hardOutputLimit() int64 {
	if c.subscribed() {
		return c.pool.cfg.PubSubOutputHardLimit
	}
	return c.pool.cfg.ClientOutputHardLimit
}

func (c *clientConn) outputLimits() outputLimits {
	cfg := c.pool.cfg
	if c.subscribed() {
		return outputLimits{cfg.PubSubOutputHardLimit, cfg.PubSubOutputSoftLimit, cfg.PubSubOutputSoftDuration,
			[2]string{"client_output_pubsub_hard_limit", "client_output_pubsub_soft_limit"}, true}
	}
	return outputLimits{cfg.ClientOutputHardLimit, cfg.ClientOutputSoftLimit, cfg.ClientOutputSoftDuration,
		[2]string{"client_output_hard_limit", "client_output_soft_limit"}, false}
}

// overBudget: the worker holds more reply bytes than worker_output_budget;
// c reads no new request until they drain (back-pressure).
func (c *clientConn) overBudget() bool {
	lp := c.lp
	if lp.budget <= 0 || lp.held+lp.queued <= lp.budget {
		return false
	}
	if !c.parked {
		c.parked = true
		lp.parked = append(lp.parked, c)
	}
	return true
}

// overBudget: the worker holds more reply bytes than
// worker_output_budget; l reads no more replies (the rest waits in the
// kernel's and the server's buffers, as for a paused stream) unless its
// next reply is wanted now: a client has written all before it. Without
// it the replies to every request read before the budget was reached
// are still taken in: 1,000 clients pipelining 432 KiB of GETs each took
// a worker 183 MiB over its 32 MiB budget. No cycle of starved links:
// the starved link whose next reply was forwarded first has a client all
// of whose earlier replies are done (each was forwarded earlier, so it
// is not behind the head of a starved link), so it waits only on that
// client's socket.
func (l *link) overBudget() bool {
	lp := l.lp
	if lp.budget <= 0 || lp.held <= lp.budget || l.nextReplyWanted() {
		return false
	}
	if !l.starved {
		l.starved = true
		lp.starved = append(lp.starved, l)
	}
	return true
}

// nextReplyWanted reports whether a client of l's next reply has written
// every reply before it (or is gone: the reply is read and dropped), or
// the reply is the proxy's own.
func (l *link) nextReplyWanted() bool {
	m := l.stream
	if m == nil || l.streamLeft == 0 {
		if m = l.cont; m == nil {
			if l.head >= len(l.inflight) {
				return true // nothing is owed: whatever comes is read
			}
			m = l.inflight[l.head]
		}
	}
	if len(m.members) > 0 {
		for _, mb := range m.members {
			if waitsFor(mb) {
				return true
			}
		}
		return false
	}
	return waitsFor(m)
}

// waitsFor: m's client has nothing to write before m.
func waitsFor(m *msg) bool {
	c := m.owner()
	if c == nil || c.closed {
		return true
	}
	if m.parent != nil {
		m = m.parent
	}
	return !c.blocked && c.unsent() == 0 && c.writableNext(m)
}

// unpark lets the parked clients read again, and the starved links, once
// the worker's held bytes are back under three quarters of its budget.
func (lp *loop) unpark() {
	if len(lp.starved) > 0 {
		// A starved link whose next client took its bytes reads again.
		all := lp.held <= lp.budget/4*3
		kept := lp.starved[:0]
		for _, l := range lp.starved {
			if !all && !l.dead && !l.nextReplyWanted() {
				kept = append(kept, l)
				continue
			}
			l.starved = false
			lp.resumeLink(l)
		}
		clear(lp.starved[len(kept):])
		lp.starved = kept
	}
	if len(lp.parked) == 0 || lp.held+lp.queued > lp.budget/4*3 {
		return
	}
	for i, c := range lp.parked {
		c.parked = false
		if !c.closed {
			lp.markReady(c)
		}
		lp.parked[i] = nil
	}
	lp.parked = lp.parked[:0]
}
