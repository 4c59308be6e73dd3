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

// maxPendingPerClient bounds the requests one client may have in flight;
// past it the proxy stops reading that client (back-pressure), so a client
// that pipelines without reading cannot grow the proxy's memory.
const maxPendingPerClient = 4096

// clientConn is one client connection: a reader goroutine that parses and
// routes requests, and a writer goroutine that returns replies in order.
type clientConn struct {
	pool *pool
	conn net.Conn

	pending chan *msg
	notify  chan struct{}

	draining atomic.Bool
	// outstanding counts requests read whose reply is not written yet.
	outstanding atomic.Int64
	// proto-specific per-client state
	authed bool
	quit   bool // a request asked to close after its reply
	rp     *resp.RequestParser
	mp     *memcache.RequestParser
	groups [][]int32 // per-server key positions while splitting
	keys   []int     // key positions of the request being routed
	skip   int       // bytes of an oversized value still to discard

	wbuf []byte
}

func newClientConn(p *pool, conn net.Conn) *clientConn {
	return &clientConn{
		pool:    p,
		conn:    conn,
		pending: make(chan *msg, maxPendingPerClient),
		notify:  make(chan struct{}, 1),
	}
}

func (c *clientConn) wakeWriter() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// enqueue puts m in the client's reply order. It blocks when the client
// already has maxPendingPerClient requests in flight.
func (c *clientConn) enqueue(m *msg) {
	m.start = time.Now().UnixNano()
	c.outstanding.Add(1)
	c.pending <- m
}

// reply queues a reply produced by the proxy itself.
func (c *clientConn) reply(m *msg) {
	c.enqueue(m)
	m.done.Store(true)
	c.wakeWriter()
}

func (c *clientConn) run() {
	defer c.pool.removeClient(c)
	writerDone := make(chan struct{})
	go func() {
		c.writeLoop()
		close(writerDone)
	}()
	c.readLoop()
	close(c.pending)
	<-writerDone
	c.conn.Close()
}

func (c *clientConn) readLoop() {
	p := c.pool
	rb := newReadBuf(p.proto.maxRequest())
	for {
		if c.draining.Load() {
			// Close at a moment when the client waits for nothing: every
			// request read has been answered and no partial one is
			// buffered. Clients that pool connections see a clean EOF.
			if rb.len() == 0 && c.outstanding.Load() == 0 {
				return
			}
			c.conn.SetReadDeadline(time.Now().Add(drainPoll))
		}
		err := rb.fill(c.conn)
		if err != nil {
			if isTimeout(err) && c.draining.Load() {
				continue
			}
			if isEOF(err) {
				p.stats.ClientEOF.Add(1)
			} else {
				p.stats.ClientErr.Add(1)
			}
			return
		}
		for rb.len() > 0 {
			n, need, err := p.proto.parse(c, rb.bytes())
			if err != nil {
				p.stats.ClientErr.Add(1)
				return
			}
			if n == 0 {
				if err := rb.want(need, p.proto.maxRequest()); err != nil {
					p.stats.ClientErr.Add(1)
					return
				}
				break
			}
			rb.consume(n)
			if c.quit {
				return
			}
		}
	}
}

// drainPoll is how often a draining client is checked for idleness.
const drainPoll = 20 * time.Millisecond

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeLoop writes replies in request order, batching every reply that is
// ready into one write.
func (c *clientConn) writeLoop() {
	dead := false
	closeAfter := false
	for {
		var m *msg
		var ok bool
		select {
		case m, ok = <-c.pending:
		default:
			// Nothing more queued right now: send what we have.
			if !c.flush(&dead) {
				dead = true
			}
			if c.draining.Load() && c.outstanding.Load() == 0 {
				// Everything answered: wake the reader so that it closes
				// the connection while the client waits for nothing.
				c.conn.SetReadDeadline(time.Now())
			}
			m, ok = <-c.pending
		}
		if !ok {
			c.flush(&dead)
			return
		}
		for !m.done.Load() {
			c.flush(&dead)
			<-c.notify
		}
		if !dead && !closeAfter && !m.silent {
			c.wbuf = append(c.wbuf, m.reply...)
		}
		c.outstanding.Add(-1)
		if m.closeAfter && !closeAfter {
			closeAfter = true
			c.flush(&dead)
			dead = true
			// A reply that closes the connection may be decided after the
			// reader went back to waiting for requests (a failed memcache
			// multi-get): shutting the read side wakes it with EOF, and
			// run closes the connection. Only the read side, so the reply
			// just written is not lost to a reset.
			c.closeRead()
		}
		m.free()
	}
}

func (c *clientConn) flush(dead *bool) bool {
	if len(c.wbuf) == 0 || *dead {
		c.wbuf = c.wbuf[:0]
		return true
	}
	_, err := c.conn.Write(c.wbuf)
	if cap(c.wbuf) > maxKeptWriteBuf {
		c.wbuf = nil
	} else {
		c.wbuf = c.wbuf[:0]
	}
	if err != nil {
		*dead = true
		c.pool.stats.ClientErr.Add(1)
		c.conn.Close() // unblocks the reader
		return false
	}
	return true
}

// drain asks the client to finish: requests already read are answered,
// then the connection closes once the client is idle.
func (c *clientConn) drain() {
	c.draining.Store(true)
	c.conn.SetReadDeadline(time.Now())
}

// closeRead ends the reader's wait for requests.
func (c *clientConn) closeRead() {
	if cr, ok := c.conn.(interface{ CloseRead() error }); ok && cr.CloseRead() == nil {
		return
	}
	c.conn.Close()
}
