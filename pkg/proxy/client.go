package proxy

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/memcache"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn"
)

var errLinkShutdown = errors.New("proxy: shutting down")

// clientIDs numbers the clients of the process, as redis numbers its
// connections (CLIENT ID).
var clientIDs atomic.Uint64

// clientConn is one client connection, owned by the event loop. A read
// event reads what the client sent (into the loop's shared buffer) and
// routes every complete request; the replies are written back in request
// order, in one write per round, as they arrive. A client that has
// maxBatch requests in flight, or whose socket will not take its replies,
// is not read (back-pressure) until that changes. Between requests a
// client holds no buffer: a partial request is the only thing copied out
// of the shared buffer.
type clientConn struct {
	pool *pool
	lp   *loop
	fd   int
	peer unix.Sockaddr
	tcp  bool
	// tls is the client's TLS session (tls.go), nil for plaintext; while
	// handshaking the descriptor is not in the loop yet.
	tls         *tlsconn.Conn
	handshaking bool

	rb      readBuf // a partial request, or a batch cut at maxBatch
	queue   []*msg  // read, reply not written yet, in request order
	qhead   int
	partial int // bytes of queue[qhead]'s reply already written
	held    int // reply bytes ready (or streaming) and not yet written
	// softSince is when the client's output went over
	// client_output_soft_limit, 0 while under it.
	softSince int64
	outSince  int64 // when the socket last filled up, for client_write_timeout

	now      int64 // when the current batch was read
	lastRead int64
	accepted int64

	readable bool // an edge said there is data, not yet read to the end
	hup      bool // the peer closed or failed: read until EOF, not a short read
	blocked  bool // the socket took less than offered: wait for EPOLLOUT
	watching bool // EPOLLOUT is being watched
	needMore bool // rb holds an incomplete request: parse only after a read
	eof      bool // the client sent EOF (or failed): no more reads
	noMore   bool // a request asked to close: route nothing after it
	closing  bool // a reply asked to close the connection once written
	ready    bool // on the loop's ready list
	deferred bool // on the loop's deferred list (deferWrite)
	closed   bool
	served   bool // something was read from the client
	draining bool
	drainAt  int64 // when drain began
	linger   bool  // close with lingerFD (a draining TLS client at a boundary)
	parked   bool  // not read while the worker is over worker_output_budget
	// mapSince: since when the client waits, unread, for its cluster
	// pool's first slot map (awaitMap); mapLate: it waited
	// failover_timeout, and its next requests count from then.
	mapSince, mapLate int64
	// ownerSince: since when the client waits, unread from its stateful
	// request on, for a reachable owner of that request's slot (cluster
	// pools: parkForOwner); ownerPark: it is parked now; ownerLate: it
	// waited failover_timeout, the request fails.
	ownerSince int64
	ownerPark  bool
	ownerLate  bool
	// dispatching: a request of the client is being routed, so that it
	// may be parked unconsumed (parkForOwner); false for the proxy's own
	// resends (a blocking call after a MOVED).
	dispatching bool

	id        uint64 // unique in the process, for CLIENT ID and CLIENT LIST
	linkClass uint8  // which of a server's link sets carries its requests

	// proto-specific per-client state
	rs        *redisSession // what a Redis client set on its connection
	quit      bool          // a request asked to close after its reply
	rp        *resp.RequestParser
	mp        *memcache.RequestParser
	groups    [][]int32 // per-server (cluster: per-slot) key positions while splitting
	groupSlot []int32   // cluster pools: the slot of each group
	keys      []int     // key positions of the request being routed
	skip      int       // bytes of an oversized value still to discard

	// The request being routed, for the slow log and the per-command
	// counts: set by the protocol before it queues anything.
	cmdName       string
	cmdKey        []byte
	cmdReadOnly   bool // the command is read-only
	cmdReplaySafe bool // running it twice is running it once (retry.go)
	// The counter of the last command seen: clients mostly repeat one.
	cmdCountName string
	cmdCount     *atomic.Uint64
	need         int // size hint of the incomplete request in rb
}

func newClientConn(p *pool, fd int, peer unix.Sockaddr, tcp bool) *clientConn {
	c := &clientConn{pool: p, lp: p.lp, fd: fd, peer: peer, tcp: tcp, accepted: p.lp.now, id: clientIDs.Add(1)}
	c.rb = newClientReadBuf(p.proto.maxRequest())
	c.lastRead = c.accepted
	return c
}

// enqueue puts m in the client's reply order.
func (c *clientConn) enqueue(m *msg) {
	m.start = c.now
	if c.cmdName != c.cmdCountName || c.cmdCount == nil {
		c.cmdCountName, c.cmdCount = c.cmdName, c.pool.countCommand(c.cmdName)
	}
	c.cmdCount.Add(1)
	if c.pool.slowlog > 0 {
		m.cmd = c.cmdName
		if c.pool.cfg.SlowlogLogKeys {
			m.key = append(m.key[:0], c.cmdKey...)
		}
	}
	c.queue = append(c.queue, m)
}

// reply queues a reply produced by the proxy itself.
func (c *clientConn) reply(m *msg) {
	c.enqueue(m)
	c.done(m)
}

// done marks m's reply ready to write.
func (c *clientConn) done(m *msg) {
	if !m.streamed && !c.closed {
		c.addHeld(len(m.out()))
	}
	m.done = true
	c.lp.markReady(c)
}

func (c *clientConn) inFlight() int { return len(c.queue) - c.qhead }

// event handles epoll's news about the client socket.
func (c *clientConn) event(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		// The FIN came with this edge: no edge will follow it, so read on
		// until read says EOF.
		c.hup = true
	}
	if ev&unix.EPOLLOUT != 0 && c.blocked {
		c.blocked = false
		c.lp.markReady(c)
	}
	c.serve()
}

// serve routes what the client sent, reading while it may: until the
// socket is drained, maxBatch requests are in flight, or its replies back
// up.
func (c *clientConn) serve() {
	p := c.pool
	for !c.closed && !c.noMore && !c.handshaking {
		if c.inFlight() >= maxBatch || c.blocked || c.overBudget() || c.awaitMap() || c.ownerPark {
			return
		}
		if c.rb.len() > 0 && !c.needMore {
			n := c.parse(c.rb.bytes())
			c.rb.consume(n)
			c.afterParse()
			continue
		}
		if !c.readable || c.eof {
			break
		}
		// Read into the shared buffer when nothing is pending, else append
		// to the partial request.
		var room []byte
		shared := c.rb.len() == 0
		if shared {
			room = c.lp.scratch
		} else {
			if err := c.rb.makeRoom(); err != nil {
				p.stats.ClientErr.Add(1)
				c.noMore = true
				c.finished()
				break
			}
			room = c.rb.buf[c.rb.w:]
		}
		n, err := c.read(room)
		if err != nil {
			if isAgain(err) {
				c.readable = false
				break
			}
			if err == unix.EINTR {
				continue
			}
			// A reset: count it as twemproxy does (client_err), and still
			// write what can be written.
			p.stats.ClientErr.Add(1)
			c.eof = true
			c.finished()
			c.eofStateful()
			break
		}
		if n == 0 {
			p.stats.ClientEOF.Add(1)
			c.eof = true
			c.finished()
			c.eofStateful()
			break
		}
		if n < len(room) && !c.hup {
			// Edge-triggered: a short read emptied the socket; the next
			// byte to arrive raises a new edge.
			c.readable = false
		}
		if c.tcp && p.cfg.TCPQuickack {
			unix.SetsockoptInt(c.fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
		}
		c.now, c.lastRead, c.served, c.needMore = c.lp.now, c.lp.now, true, false
		if c.mapLate != 0 {
			c.now, c.mapLate = c.mapLate, 0
		}
		if shared {
			data := room[:n]
			used := c.parse(data)
			if used < n {
				c.rb.keep(data[used:])
			}
		} else {
			c.rb.w += n
			c.rb.filled(n, len(room))
			used := c.parse(c.rb.bytes())
			c.rb.consume(used)
		}
		c.afterParse()
	}
}

// finished: the client sent EOF, failed, or asked to close. What it sent
// is answered, then the connection closes (writeOut decides when).
func (c *clientConn) finished() {
	c.readable = false
	c.lp.markReady(c)
}

// parse routes the complete requests at the start of data and returns the
// bytes consumed. It stops at maxBatch requests in flight, at a request
// that ends the connection, and before an incomplete request.
func (c *clientConn) parse(data []byte) (used int) {
	p := c.pool
	defer func() {
		// A bug met by one client's request must not take the worker, and
		// every other client, with it: that client is closed, loudly.
		if r := recover(); r != nil {
			p.log.WithField("client", c.remoteAddr()).WithField("panic", fmt.Sprint(r)).
				WithField("stack", string(debug.Stack())).Error("internal error routing a request; closing its client")
			p.stats.ClientErr.Add(1)
			c.noMore = true
			c.close()
			used = len(data)
		}
	}()
	for used < len(data) {
		if c.inFlight() >= maxBatch {
			break
		}
		n, need, err := p.proto.parse(c, data[used:])
		if err != nil {
			p.stats.ClientErr.Add(1)
			c.noMore = true
			c.finished()
			break
		}
		if n == 0 {
			if c.ownerPark {
				break // the request stays in rb until its slot has an owner
			}
			c.needMore = true
			c.need = need
			break
		}
		used += n
		if c.quit {
			c.noMore = true
			c.finished()
			break
		}
	}
	return used
}

// afterParse sizes the buffer for an incomplete request, refusing one
// over the protocol's limit.
func (c *clientConn) afterParse() {
	if c.needMore && c.need > 0 {
		if err := c.rb.want(c.need, c.pool.proto.maxRequest()); err != nil {
			c.pool.stats.ClientErr.Add(1)
			c.noMore = true
			c.finished()
		}
		c.need = 0
	}
	if c.rb.len() == 0 {
		c.rb.release()
	}
}

// writeOut writes every reply that is ready, in request order, in one
// write or writev straight from the replies' buffers; a socket that takes
// only part of them keeps the rest where it is (partial counts what of the
// head reply is written) until EPOLLOUT. Then, if that made room, it routes
// more of what the client sent, and closes the client once it is finished.
func (c *clientConn) writeOut() {
	if c.closed || c.handshaking {
		return
	}
	lp := c.lp
	if blocked, err := c.tlsBlocked(); err != nil {
		c.writeFailed()
		return
	} else if blocked {
		c.waitWritable()
		return
	}
	if hard := c.hardOutputLimit(); hard > 0 && int64(c.held) > hard && c.overOutputLimit(lp.now) {
		return
	}
	for !c.closing && !c.blocked {
		bufs := lp.bufs[:0]
		coal := lp.coal[:0]
		coalFrom := -1
		size := 0
		end := c.qhead
		for end < len(c.queue) && len(bufs) < maxIovecs {
			m := c.queue[end]
			streaming := !m.done && m.stream != nil
			if !m.done && (!streaming || len(m.reply) == 0) {
				if c.deferWrite(m, end, size) {
					end = c.qhead
				}
				break
			}
			end++
			if r := m.out(); len(r) > 0 {
				if end == c.qhead+1 {
					r = r[c.partial:]
				}
				bufs, coal = appendReply(bufs, coal, r, &coalFrom)
				size += len(r)
			}
			if m.closeAfter || streaming {
				break
			}
		}
		lp.bufs = bufs
		if end == c.qhead {
			clear(bufs)
			break
		}
		var n int
		var err error
		switch len(bufs) {
		case 0:
		case 1:
			n, err = c.write(bufs[0])
		default:
			n, err = c.writev(bufs, lp.iov[:0])
		}
		clear(bufs)
		if err != nil && !isAgain(err) && err != unix.EINTR {
			c.writeFailed()
			return
		}
		// Retire what was written, in order.
		written := max(n, 0)
		c.addHeld(-written)
		for c.qhead < end {
			m := c.queue[c.qhead]
			rest := len(m.out()) - c.partial
			if written < rest {
				c.partial += written
				break
			}
			written -= rest
			if !m.done {
				// Streaming: all it has is written, its buffer is reused.
				c.drainedStream(m)
				break
			}
			c.partial = 0
			c.queue[c.qhead] = nil
			c.qhead++
			if m.closeAfter {
				c.closing = true
				c.noMore = true
			}
			m.free()
		}
		if n < size || c.tls != nil && c.tls.Pending() {
			// The socket is full: wait for EPOLLOUT.
			c.waitWritable()
		}
	}
	if c.qhead == len(c.queue) {
		c.queue, c.qhead = c.queue[:0], 0
		if cap(c.queue) > 4*maxBatch {
			c.queue = nil
		}
	}
	if c.blocked {
		return
	}
	if c.watching {
		c.watching = false
		lp.watchWrite(c.fd, false)
	}
	if c.closing || ((c.eof || c.noMore) && c.inFlight() == 0) {
		c.close()
		return
	}
	if c.drained(lp.now) {
		c.leave()
		return
	}
	if c.inFlight() < maxBatch && (c.readable || (c.rb.len() > 0 && !c.needMore)) {
		c.serve()
	}
}

// deferMax and deferWindow bound the replies writeOut holds back for the
// rest of their batch: in bytes, and in time since the batch was read.
const (
	deferMax    = 64 << 10
	deferWindow = int64(time.Millisecond)
)

// deferWrite reports whether the replies ready before m (queue positions
// qhead to end) wait for m: when m was read in the same batch, is on its
// way on a shared link, and the batch is young. A batch that spans servers
// is then written once, when whole, instead of one write (and one wake-up
// of the client) per server that answers. The loop revisits a deferred
// client after deferWindow (loop.revisitDeferred), so a slow server delays
// the others' replies by at most that much.
func (c *clientConn) deferWrite(m *msg, end, size int) bool {
	if end == c.qhead || c.partial != 0 || m.pinned || m.stream != nil || size >= deferMax {
		return false
	}
	head := c.queue[c.qhead]
	if m.start != head.start || c.lp.now-head.start >= deferWindow {
		return false
	}
	if !c.deferred {
		c.deferred = true
		c.lp.deferred = append(c.lp.deferred, c)
	}
	return true
}

// appendReply adds reply r to the iovecs of a write. Consecutive small
// replies are copied side by side into coal and sent as one iovec: at 16
// deep a writev of 16 small iovecs cost 1.09 µs of CPU per GET against
// 0.94 µs with them copied together (SET 1.08 against 0.97). coalFrom is
// where the last iovec starts in coal, -1 when it is a reply's own buffer:
// a small reply is copied only once a second one follows it, so a lone
// reply is not copied.
func appendReply(bufs [][]byte, coal, r []byte, coalFrom *int) ([][]byte, []byte) {
	nb := len(bufs)
	if len(r) > coalesceMax || nb == 0 {
		*coalFrom = -1
		return append(bufs, r), coal
	}
	prev := bufs[nb-1]
	grow := len(r)
	if *coalFrom < 0 {
		if len(prev) > coalesceMax {
			return append(bufs, r), coal
		}
		grow += len(prev)
	}
	if len(coal)+grow > cap(coal) {
		*coalFrom = -1
		return append(bufs, r), coal
	}
	if *coalFrom < 0 {
		*coalFrom = len(coal)
		coal = append(coal, prev...)
	}
	coal = append(coal, r...)
	bufs[nb-1] = coal[*coalFrom:]
	return bufs, coal
}

// unsent counts the reply bytes ready and not yet written.
func (c *clientConn) unsent() int {
	n := -c.partial
	for _, m := range c.queue[c.qhead:] {
		if !m.done && m.stream == nil {
			break
		}
		n += len(m.out())
		if !m.done {
			break
		}
	}
	return n
}

// drained: a draining client that may close now, waiting for nothing. A
// client that connected just before the drain gets a moment to send its
// first request, which is surely on its way; unless it is handed over,
// which leaves that request in its socket for the next worker.
func (c *clientConn) drained(now int64) bool {
	return c.draining && c.idle() && (c.served || now-c.accepted > int64(firstRequestGrace) || c.lp.give != nil) &&
		(c.rs == nil || c.rs.st == nil || !c.rs.st.holds(c)) &&
		(c.tls == nil || now-c.lastRead >= int64(tlsDrainIdle) || now-c.drainAt >= int64(tlsDrainIdle))
}

// tlsDrainIdle: a TLS client, which cannot be handed over, is closed by a
// draining worker once it has sent nothing for this long, so that the
// close does not meet a request on its way; one that never pauses that
// long is closed at its first boundary once the drain is that old, with a
// lingering close (lingerFD) so that a request it sent meanwhile meets the
// end of the connection, not a reset.
const tlsDrainIdle = time.Second

// idle: waiting for nothing and holding no partial request.
func (c *clientConn) idle() bool {
	return c.inFlight() == 0 && c.rb.len() == 0
}

// waitWritable: the socket is full; EPOLLOUT brings the client back.
func (c *clientConn) waitWritable() {
	c.blocked = true
	c.outSince = c.lp.now
	if !c.watching {
		c.watching = true
		c.lp.watchWrite(c.fd, true)
	}
}

func (c *clientConn) writeFailed() {
	c.pool.stats.ClientErr.Add(1)
	c.close()
}

// close closes the connection now. Requests still in flight belong to
// their servers until they finish; their replies are then dropped.
func (c *clientConn) close() {
	if c.closed {
		return
	}
	c.closed = true
	c.closeTLS()
	if c.linger {
		c.lp.lingerFD(c.fd)
	} else {
		c.lp.closeFD(c.fd)
	}
	c.lp.held -= c.held
	c.held = 0
	for i := c.qhead; i < len(c.queue); i++ {
		if m := c.queue[i]; m.done {
			m.free()
		} else if l := m.stream; l != nil && l.paused {
			// The rest of its reply is read and dropped.
			c.lp.resumeLink(l)
		}
		c.queue[i] = nil
	}
	c.queue, c.qhead = nil, 0
	c.rb.release()
	if c.rs != nil && c.rs.st != nil {
		c.rs.st.clientGone(c) // pinned links (redis_txn.go)
	}
	c.pool.removeClient(c)
}

// checkTimers applies the drain grace and the pool's client timeouts;
// called from the loop's tick.
func (c *clientConn) checkTimers(now int64) {
	p := c.pool
	if c.drained(now) {
		c.leave()
		return
	}
	if c.overOutputLimit(now) {
		return
	}
	if idle := p.cfg.ClientIdleTimeout; idle > 0 && c.inFlight() == 0 &&
		now-c.lastRead > int64(idle) && !c.subscribed() {
		p.stats.ClientIdleClosed.Add(1)
		p.log.WithField("partial_bytes", c.rb.len()).Debug("closing an idle client")
		c.close()
		return
	}
	if wt := p.cfg.ClientWriteTimeout; wt > 0 && c.blocked && now-c.outSince > int64(wt) {
		if p.limitLog.allow(now) {
			p.log.WithField("client", c.remoteAddr()).WithField("client_write_timeout", wt).
				WithField("unsent_bytes", c.unsent()).Warn("closing a client that does not read its replies")
		}
		c.writeFailed()
	}
}

// remoteAddr names a client for logs; a unix peer may have no address.
func (c *clientConn) remoteAddr() string {
	return sockaddrString(c.peer)
}

// drain asks the client to finish: requests already read are answered,
// then the connection closes once the client is idle.
func (c *clientConn) drain() {
	if !c.draining {
		c.drainAt = c.lp.now
	}
	c.draining = true
	c.checkTimers(c.lp.now)
}

// maxBatch bounds the requests of one client in flight at once, and so
// the replies the proxy holds for a client that pipelines without reading
// (twemproxy #203). Deeper pipelines are served in batches of this size.
const maxBatch = 256

// firstRequestGrace is how long a draining worker waits for the first
// request of a client it accepted just before it stopped accepting.
const firstRequestGrace = 500 * time.Millisecond
