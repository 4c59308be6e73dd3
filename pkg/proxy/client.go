package proxy

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/memcache"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

var errLinkShutdown = errors.New("proxy: shutting down")

// clientConn is one client connection, served by one goroutine: it reads
// what the client sent, routes every request, sends each touched server
// its share in one write, then writes the replies back in request order
// as they arrive, and reads again. One goroutine and no hand-off per
// request keeps the unpipelined path as short as twemproxy's event loop;
// a client that sends more than it reads is simply not read (back-pressure)
// until its replies are written.
type clientConn struct {
	pool *pool
	conn net.Conn

	queue   []*msg // read, reply not written yet, in request order
	qhead   int
	notify  chan struct{} // a msg of this client finished
	touched []*link       // links holding requests of this batch
	now     int64         // when the current batch was read

	draining atomic.Bool
	accepted time.Time
	served   bool // something was read from the client
	dead     bool // writing to the client failed
	closing  bool // a reply asked to close the connection

	// proto-specific per-client state
	authed bool
	name   []byte // CLIENT SETNAME, answered by CLIENT GETNAME
	quit   bool   // a request asked to close after its reply
	rp     *resp.RequestParser
	mp     *memcache.RequestParser
	groups [][]int32 // per-server key positions while splitting
	keys   []int     // key positions of the request being routed
	skip   int       // bytes of an oversized value still to discard

	// The request being routed, for the slow log and the per-command
	// counts: set by the protocol before it queues anything.
	cmdName string
	cmdKey  []byte
	// The counter of the last command seen: clients mostly repeat one.
	cmdCountName string
	cmdCount     *atomic.Uint64

	wbuf []byte
}

func newClientConn(p *pool, conn net.Conn) *clientConn {
	return &clientConn{pool: p, conn: conn, notify: make(chan struct{}, 1), accepted: time.Now()}
}

// wakeWriter tells the client goroutine that one of its msgs finished.
func (c *clientConn) wakeWriter() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
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
	m.done.Store(true)
}

// touch records that l holds requests of this batch, to flush after it.
func (c *clientConn) touch(l *link) {
	for _, t := range c.touched {
		if t == l {
			return
		}
	}
	c.touched = append(c.touched, l)
}

func (c *clientConn) run() {
	p := c.pool
	defer p.removeClient(c)
	defer c.conn.Close()
	rb := newClientReadBuf(p.proto.maxRequest())
	// more: complete requests may still be buffered (a batch was cut at
	// maxBatch), so parse before reading again.
	more := false
	for {
		if !more {
			if c.draining.Load() {
				// Close at a moment when the client waits for nothing:
				// every request read has been answered and no partial one
				// is buffered. Clients that pool connections see a clean
				// EOF. A client that connected just now gets a moment to
				// send its first request, which is surely on its way.
				if rb.len() == 0 && (c.served || time.Since(c.accepted) > firstRequestGrace) {
					return
				}
				c.conn.SetReadDeadline(time.Now().Add(drainPoll))
			} else if idle := p.cfg.ClientIdleTimeout; idle > 0 {
				// Also ends a client stalled in the middle of a request.
				c.conn.SetReadDeadline(time.Now().Add(idle))
			}
			err := rb.fill(c.conn)
			if err != nil {
				if isTimeout(err) && c.draining.Load() {
					continue
				}
				if isTimeout(err) && p.cfg.ClientIdleTimeout > 0 {
					p.stats.ClientIdleClosed.Add(1)
					p.log.WithField("partial_bytes", rb.len()).Debug("closing an idle client")
					return
				}
				if isEOF(err) {
					p.stats.ClientEOF.Add(1)
				} else {
					p.stats.ClientErr.Add(1)
				}
				// A client that half-closed still gets the replies to what
				// it sent before.
				c.writeReplies()
				return
			}
		}
		c.now = time.Now().UnixNano()
		c.served = true
		stop := false
		more = false
		for rb.len() > 0 && !stop {
			if len(c.queue) >= maxBatch {
				// Bound what one client holds in flight: the replies of a
				// batch are written (the client must read them) before more
				// of its requests are routed.
				more = true
				break
			}
			n, need, err := p.proto.parse(c, rb.bytes())
			if err != nil {
				p.stats.ClientErr.Add(1)
				stop = true
				break
			}
			if n == 0 {
				if err := rb.want(need, p.proto.maxRequest()); err != nil {
					p.stats.ClientErr.Add(1)
					stop = true
				}
				break
			}
			rb.consume(n)
			stop = c.quit
		}
		c.flushLinks()
		c.writeReplies()
		if stop || c.dead || c.closing {
			return
		}
	}
}

// flushLinks sends each server the requests of this batch.
func (c *clientConn) flushLinks() {
	for i, l := range c.touched {
		l.flush()
		c.touched[i] = nil
	}
	c.touched = c.touched[:0]
}

// writeReplies writes every queued reply in order, batching those that are
// ready into one write, waiting for the others.
func (c *clientConn) writeReplies() {
	for c.qhead < len(c.queue) {
		if c.dead {
			// Nobody to answer: the msgs still in flight belong to their
			// servers until they finish; the garbage collector takes them.
			clear(c.queue[c.qhead:])
			break
		}
		m := c.queue[c.qhead]
		if !m.done.Load() {
			c.flush()
			<-c.notify
			continue
		}
		if !m.silent {
			c.wbuf = append(c.wbuf, m.reply...)
		}
		c.queue[c.qhead] = nil
		c.qhead++
		closeAfter := m.closeAfter
		m.free()
		if closeAfter {
			c.closing = true
			clear(c.queue[c.qhead:])
			break
		}
	}
	c.queue, c.qhead = c.queue[:0], 0
	c.flush()
}

func (c *clientConn) flush() {
	if len(c.wbuf) == 0 || c.dead {
		c.wbuf = c.wbuf[:0]
		return
	}
	err := c.write(c.wbuf)
	if cap(c.wbuf) > maxKeptWriteBuf {
		c.wbuf = nil
	} else {
		c.wbuf = c.wbuf[:0]
	}
	if err != nil {
		c.dead = true
		c.pool.stats.ClientErr.Add(1)
	}
}

// write writes b to the client. With client_write_timeout, a client that
// takes none of it for that long is given up: it stopped reading, and
// would otherwise hold its goroutine, connection and replies for ever. A
// slow client that keeps taking bytes is not cut off.
func (c *clientConn) write(b []byte) error {
	wt := c.pool.cfg.ClientWriteTimeout
	if wt <= 0 {
		_, err := c.conn.Write(b)
		return err
	}
	for {
		c.conn.SetWriteDeadline(time.Now().Add(wt))
		n, err := c.conn.Write(b)
		if err == nil || !isTimeout(err) {
			return err
		}
		if n == 0 {
			p := c.pool
			if p.limitLog.allow(time.Now().UnixNano()) {
				p.log.WithField("client", remoteAddr(c.conn)).WithField("client_write_timeout", wt).
					WithField("unsent_bytes", len(b)).Warn("closing a client that does not read its replies")
			}
			return err
		}
		b = b[n:]
	}
}

// remoteAddr names a client for logs; a unix peer may have no address.
func remoteAddr(conn net.Conn) string {
	if a := conn.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// maxBatch bounds the requests of one client in flight at once, and so
// the replies the proxy holds for a client that pipelines without reading
// (twemproxy #203). Deeper pipelines are served in batches of this size.
const maxBatch = 256

// firstRequestGrace is how long a draining worker waits for the first
// request of a client it accepted just before it stopped accepting.
const firstRequestGrace = 500 * time.Millisecond

// drainPoll is how often a draining client is checked for idleness.
const drainPoll = 20 * time.Millisecond

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// drain asks the client to finish: requests already read are answered,
// then the connection closes once the client is idle.
func (c *clientConn) drain() {
	c.draining.Store(true)
	c.conn.SetReadDeadline(time.Now())
}
