package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/memcache"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn"
)

// server is one backend of a pool and its connections.
type server struct {
	pool *pool
	idx  int
	name string
	addr config.Address
	// cfg is the server's block; nil for the nodes of a cluster (the
	// pool's credentials then).
	cfg *config.Server
	// conns are the links of RESP2 and memcached clients; conns3 those of
	// RESP3 clients (opened with HELLO 3 on first use), so that every
	// client gets the server's replies in its own protocol version.
	conns  []*serverConn
	conns3 []*serverConn
	// dbconns are the links of clients that SELECTed another database
	// than the pool's redis_db (databases > 1), by link class (redis_db.go).
	dbconns map[uint8][]*serverConn
	rr      atomic.Uint32
	// extra are links opened, by link class, while every one of conns
	// streams a large reply (stream.go).
	extra [2][]*serverConn

	failures     atomic.Int32 // consecutive failures
	ejectedUntil atomic.Int64 // unix nanos; 0 when on the ring

	// A server whose address moves (topology.go): addr is the master the
	// topology source last named (zero until it names one), version that
	// message's; down stops requests until it speaks again; waiting holds
	// the requests meanwhile. All on the loop.
	managed  bool
	version  uint64
	down     bool
	paused   bool // a failover is under way: writes wait
	waiting  []*msg
	lastHint int64

	// Replica reads (replica.go): a primary's replicas, each a server of
	// its own links, off the ring; a replica's primary and when it may be
	// tried again after a failure.
	replicas  []*server
	replRR    uint32
	primary   *server
	downUntil int64
	// Links lent to clients (pinned.go): every open one, and those idle.
	pins    []*link
	pinIdle []*link

	stats   ServerStats
	latency histogram // from write to reply
}

// conn picks one of the server's connections of a link class, round
// robin, so that server_connections > 1 spreads the load.
func (s *server) conn(class uint8) *serverConn {
	if class > linkRESP3 {
		return s.dbConn(class)
	}
	conns := s.conns
	if class == linkRESP3 {
		if s.conns3 == nil {
			s.conns3 = newServerConns(s, len(s.conns), true)
		}
		conns = s.conns3
	}
	sc := conns[0]
	if len(conns) > 1 {
		sc = conns[int(s.rr.Add(1))%len(conns)]
	}
	if sc.l.busy() {
		sc = s.unbusy(class, conns, sc)
	}
	return sc
}

// Link classes: which set of a server's links a client's requests use.
const (
	linkDefault uint8 = iota // RESP2, memcached
	linkRESP3                // opened with HELLO 3
)

func newServerConns(s *server, n int, resp3 bool) []*serverConn {
	conns := make([]*serverConn, max(n, 1))
	for j := range conns {
		conns[j] = &serverConn{srv: s, resp3: resp3}
	}
	return conns
}

// eachConn calls fn with every connection slot of the server, of both
// classes.
func (s *server) eachConn(fn func(sc *serverConn)) {
	for _, sc := range s.conns {
		fn(sc)
	}
	for _, sc := range s.conns3 {
		fn(sc)
	}
	for _, conns := range s.dbconns {
		for _, sc := range conns {
			fn(sc)
		}
	}
	for _, extra := range s.extra {
		for _, sc := range extra {
			fn(sc)
		}
	}
}

// ok records a successful exchange, resetting the consecutive failures.
func (s *server) ok() {
	if s.failures.Load() != 0 {
		s.failures.Store(0)
	}
}

// failed records a failure and ejects the server once the pool's limit is
// reached, as twemproxy's server_failure does.
func (s *server) failed() {
	p := s.pool
	n := s.failures.Add(1)
	if !p.cfg.AutoEjectHosts || int(n) < p.cfg.ServerFailureLimit {
		return
	}
	now := time.Now()
	until := now.Add(p.cfg.ServerRetryTimeout).UnixNano()
	if old := s.ejectedUntil.Load(); old != 0 || !s.ejectedUntil.CompareAndSwap(old, until) {
		return
	}
	s.failures.Store(0)
	s.stats.EjectedAt.Store(now.UnixMicro())
	p.stats.ServerEjects.Add(1)
	p.log.WithField("server", s.name).WithField("retry_after", p.cfg.ServerRetryTimeout).Warn("server ejected")
	p.rebuildRing()
}

// serverConn is one of the server_connections slots: it holds at most one
// live link at a time and replaces it after a failure. Only the loop
// touches it.
type serverConn struct {
	srv   *server
	l     *link
	resp3 bool // links speak RESP3 (HELLO 3 in the handshake)
	// dbSel is the database its links SELECT: 0 the pool's redis_db, n
	// database n-1 (redis_db.go).
	dbSel uint8
}

// link returns the live link, creating (and dialing) a new one when needed.
func (sc *serverConn) link() *link {
	l := sc.l
	if l == nil || l.dead {
		l = &link{sc: sc, lp: sc.srv.pool.lp, fd: -1}
		sc.l = l
		sc.srv.pool.proto.handshake(l)
		go l.dial(sc.srv.addr)
	}
	return l
}

func (sc *serverConn) drop(l *link) {
	if sc.l == l {
		sc.l = nil
	}
}

// current returns the live link or nil, without dialing.
func (sc *serverConn) current() *link { return sc.l }

// link is one TCP or unix connection to a server, owned by the loop.
// Clients append requests to wbuf while they are routed; the loop writes
// wbuf once per round, so the requests of every client read in that round
// leave in one write. Replies are matched to the inflight queue in order.
type link struct {
	sc *serverConn
	lp *loop
	fd int // -1 while dialing
	// tls is the link's TLS session (tls.go), nil for plaintext.
	tls *tlsconn.Conn

	wbuf     []byte // requests not written yet
	woff     int
	queued   int // len(wbuf)-woff as last counted in loop.queued
	inflight []*msg
	head     int
	enqSeq   uint64 // msgs ever enqueued
	headSeq  uint64 // seq of inflight[head]
	sentSeq  uint64 // msgs already stamped as sent
	dead     bool
	dirty    bool // on the loop's list of links to write
	hup      bool // the server closed: read until EOF
	blocked  bool // the socket took less than offered: wait for EPOLLOUT
	watching bool // EPOLLOUT is being watched
	rb       readBuf
	rscan    *resp.ReplyScanner    // Redis: the reply being framed
	mscan    memcache.ReplyScanner // memcached: the reply being framed

	// A large reply streaming (stream.go): its msg, the bytes of it still
	// to read, when some last arrived; paused while its client's buffer
	// for it is full.
	stream     *msg
	streamLeft int
	streamAt   int64
	paused     bool
	resuming   bool // on the loop's list of links to resume
	starved    bool // not read while the worker is over worker_output_budget
	// A memcached retrieval whose large VALUE blocks stream (memcache.go):
	// cont is the request (or coalesced carrier) the rest of the reply
	// belongs to once streamLeft is 0; contKey is the key its next block
	// is matched from, contMember its first member not yet answered.
	cont       *msg
	contKey    int
	contMember int

	pin *pinState // set on a link lent to a client (pinned.go)
}

// enqueueFunc appends a request, encoded straight into the write buffer by
// build, and its msg, and schedules the write for the end of the round.
// It reports false when the link is dead; the caller then retries on a new
// link or fails the msg.
func (l *link) enqueueFunc(m *msg, build func(dst []byte) []byte) bool {
	if l.dead {
		return false
	}
	n := len(l.wbuf)
	l.wbuf = build(l.wbuf)
	m.reqLen = len(l.wbuf) - n
	l.inflight = append(l.inflight, m)
	l.enqSeq++
	l.countQueued()
	if l.fd >= 0 {
		if len(l.wbuf)-l.woff >= linkFlushAt {
			// Big requests: write now rather than grow the buffer for the
			// whole round.
			l.flush()
		} else {
			l.lp.dirtyLink(l)
		}
	}
	return true
}

// unsentTail is the msg enqueued last when none of its bytes have been
// written yet, so that the protocol may extend its request (extendTail);
// nil otherwise.
func (l *link) unsentTail() *msg {
	if l.dead || l.sentSeq == l.enqSeq || l.head == len(l.inflight) {
		return nil
	}
	return l.inflight[len(l.inflight)-1]
}

// extendTail lets extend rewrite the end of the write buffer, which holds
// the request of unsentTail, and returns the bytes it added.
func (l *link) extendTail(extend func(wbuf []byte) []byte) int {
	n := len(l.wbuf)
	l.wbuf = extend(l.wbuf)
	l.inflight[len(l.inflight)-1].reqLen += len(l.wbuf) - n
	l.countQueued()
	if l.fd >= 0 && len(l.wbuf)-l.woff >= linkFlushAt {
		l.flush()
	}
	return len(l.wbuf) - n
}

// linkFlushAt is how much a link gathers before it writes within a round.
const linkFlushAt = 64 << 10

// flush writes what is queued, as much as the socket takes; EPOLLOUT
// brings it back for the rest.
func (l *link) flush() {
	if l.fd < 0 || l.dead || l.blocked {
		return
	}
	if l.tlsPending() {
		if err := l.tls.Flush(); err != nil && !isAgain(err) {
			l.kill(err)
			return
		}
		if l.tls.Pending() {
			l.blocked = true
			if !l.watching {
				l.watching = true
				l.lp.watchWrite(l.fd, true)
			}
			return
		}
	}
	if l.woff == len(l.wbuf) {
		return
	}
	n, err := l.sysWrite(l.wbuf[l.woff:])
	if err != nil && !isAgain(err) && err != unix.EINTR {
		l.kill(err)
		return
	}
	if l.blocked = n < len(l.wbuf)-l.woff || l.tlsPending(); l.blocked && !l.watching {
		l.watching = true
		l.lp.watchWrite(l.fd, true)
	}
	if n <= 0 {
		return
	}
	l.sc.srv.stats.RequestBytes.Add(uint64(n))
	l.woff += n
	now := l.lp.now
	for seq := max(l.sentSeq, l.headSeq); seq < l.enqSeq; seq++ {
		l.inflight[l.head+int(seq-l.headSeq)].sentAt = now
	}
	l.sentSeq = l.enqSeq
	if l.woff == len(l.wbuf) {
		l.wbuf, l.woff = l.wbuf[:0], 0
		if cap(l.wbuf) > maxKeptWriteBuf {
			l.wbuf = nil
		}
	}
	l.countQueued()
}

// countQueued keeps loop.queued, the request bytes waiting in the
// worker's link write buffers, up to date with l's.
func (l *link) countQueued() {
	n := max(0, len(l.wbuf)-l.woff)
	l.lp.queued += n - l.queued
	l.queued = n
}

func (l *link) pop() *msg {
	m := l.inflight[l.head]
	l.inflight[l.head] = nil
	l.head++
	l.headSeq++
	if l.head == len(l.inflight) {
		l.inflight = l.inflight[:0]
		l.head = 0
	} else if l.head > 1024 && l.head > len(l.inflight)/2 {
		n := copy(l.inflight, l.inflight[l.head:])
		clear(l.inflight[n:])
		l.inflight = l.inflight[:n]
		l.head = 0
	}
	return m
}

const maxKeptWriteBuf = 1 << 20

// dial connects the link on its own goroutine (name resolution and the
// connect timeout are the net package's), then hands the socket to the
// loop, which sends what clients queued meanwhile.
func (l *link) dial(addr config.Address) {
	s := l.sc.srv
	p := s.pool
	d := net.Dialer{Timeout: p.cfg.Timeout, KeepAlive: -1}
	if p.cfg.TCPKeepalive {
		d.KeepAlive = 0 // Go's default keepalive interval
	}
	conn, err := d.Dial(addr.Network, addr.Addr)
	fd := -1
	var tc *tlsconn.Conn
	if err == nil && p.tlsClient != nil {
		if tc, err = l.dialTLS(conn, addr.Addr); err != nil {
			p.stats.TLSHandshakeFailed.Add(1)
			p.log.WithField("server", s.name).WithError(err).Warn("TLS handshake with server failed")
		}
	}
	if err == nil {
		fd, err = rawFD(conn)
		if tc != nil && err == nil {
			tc.Attach(fd)
		}
	}
	if conn != nil {
		conn.Close()
	}
	if err != nil {
		p.log.WithField("server", s.name).WithError(err).Debug("connect failed")
		l.lp.post(func() { l.kill(err) })
		return
	}
	if !l.lp.post(func() { l.connected(fd, tc) }) {
		unix.Close(fd)
	}
}

func (l *link) connected(fd int, tc *tlsconn.Conn) {
	if l.dead {
		unix.Close(fd)
		return
	}
	l.tls = tc
	if err := l.lp.register(fd, l); err != nil {
		unix.Close(fd)
		l.kill(err)
		return
	}
	l.fd = fd
	l.sc.srv.stats.Connections.Add(1)
	l.rb = newReadBuf(l.sc.srv.pool.maxReply)
	l.lp.dirtyLink(l)
	if l.pin != nil && l.pin.owner == nil && l.sc.srv.pool.cluster != nil {
		l.sc.srv.pool.wakeOwnerWaiters() // a probe (pin) connected
	}
}

// event handles epoll's news about the server socket.
func (l *link) event(ev uint32) {
	if ev&unix.EPOLLOUT != 0 && l.blocked {
		l.blocked = false
		l.flush()
		if !l.blocked && l.watching && !l.dead {
			l.watching = false
			l.lp.watchWrite(l.fd, false)
		}
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.hup = true
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.read()
	}
}

// read reads until the socket is empty, framing replies and completing
// the inflight msgs in order.
func (l *link) read() {
	s := l.sc.srv
	p := s.pool
	for !l.dead && !l.paused {
		if l.overBudget() {
			return
		}
		if l.stream != nil && l.streamLeft > 0 {
			if !l.readStream() {
				return
			}
			continue
		}
		if err := l.rb.makeRoom(); err != nil {
			l.kill(err)
			return
		}
		room := len(l.rb.buf) - l.rb.w
		n, err := l.sysRead(l.rb.buf[l.rb.w:])
		if err != nil {
			if isAgain(err) {
				break
			}
			if err == unix.EINTR {
				continue
			}
			l.kill(err)
			return
		}
		if n == 0 {
			l.kill(io.EOF)
			return
		}
		l.rb.w += n
		l.rb.filled(n, room)
		if l.stream != nil {
			l.streamAt = l.lp.now
		}
		for l.rb.len() > 0 {
			var head *msg
			if l.cont != nil {
				head = l.cont // the rest of a reply that streamed in part
			} else if l.head < len(l.inflight) {
				head = l.inflight[l.head]
			} else if !l.sc.resp3 && l.pin == nil {
				l.kill(ErrServerProtocol)
				return
			}
			n, need, isErr, err := p.proto.replyLen(l, head, l.rb.bytes())
			if err != nil {
				p.log.WithField("server", s.name).WithError(err).Warn("invalid reply from server")
				l.kill(ErrServerProtocol)
				return
			}
			if n == 0 {
				if p.streamer != nil && p.streamer.stream(l, head, l.rb.bytes()) {
					break
				}
				if err := l.rb.want(need, p.maxReply); err != nil {
					l.kill(err)
					return
				}
				break
			}
			if head == nil && l.pin != nil && l.pin.sub != nil {
				// A subscriber link: messages and confirmations.
				l.pin.sub.frame(l, l.rb.bytes()[:n])
				if l.dead {
					return
				}
				l.rb.consume(n)
				continue
			}
			if b := l.rb.bytes(); l.sc.resp3 && (b[0] == '>' || b[0] == '|') && resp.IsPush(b[:n]) {
				// A RESP3 push is out-of-band data, not the reply to a
				// request; a shared link has no one to give it to.
				l.rb.consume(n)
				continue
			}
			if head == nil {
				l.kill(ErrServerProtocol)
				return
			}
			if l.cont != nil {
				s.stats.ResponseBytes.Add(uint64(n))
				p.streamer.rest(l, l.rb.bytes()[:n], isErr)
				l.rb.consume(n)
				continue
			}
			m := l.pop()
			if !m.uncounted && (m.client != nil || m.parent != nil || len(m.members) > 0) {
				// Replies to the link's own set-up (AUTH, SELECT, HELLO,
				// COMMAND) are not counted, as their requests are not.
				s.stats.Responses.Add(uint64(max(1, len(m.members))))
			}
			if !m.uncounted {
				s.stats.ResponseBytes.Add(uint64(n))
			}
			s.ok()
			p.complete(m, l.rb.bytes()[:n], isErr)
			l.rb.consume(n)
		}
		if l.pin != nil {
			l.pinRead()
		}
		if n < room && !l.hup {
			break
		}
	}
}

// kill closes the link, fails every request on it with err and counts a
// server failure.
func (l *link) kill(err error) {
	if l.dead {
		return
	}
	l.dead = true
	connected := l.fd >= 0
	if l.stream != nil {
		l.failStream(err)
	}
	pending := l.inflight[l.head:]
	l.inflight, l.head = nil, 0
	l.wbuf, l.woff = nil, 0
	l.countQueued()
	l.sc.drop(l)
	s := l.sc.srv
	if l.fd >= 0 {
		if l.tls != nil && err == errLinkShutdown {
			l.tls.CloseNotify()
		}
		l.lp.closeFD(l.fd)
		l.fd = -1
		s.stats.Connections.Add(-1)
	}
	switch {
	case err == ErrTimeout:
		s.stats.Timedout.Add(1)
	case isEOF(err):
		s.stats.EOF.Add(1)
	default:
		s.stats.Err.Add(1)
	}
	if err != errLinkShutdown {
		s.failed()
	}
	if l.pin != nil {
		l.pinKilled(pending, err, connected)
		return
	}
	if s.managed && err != errLinkShutdown {
		l.replay(pending, connected, err)
		return
	}
	for _, m := range pending {
		s.pool.fail(m, err)
	}
}

// replay sorts a dead link's requests of a server whose address moves by
// retry class (retry.go), then sends what may go to the server's master.
func (l *link) replay(pending []*msg, connected bool, err error) {
	s := l.sc.srv
	p := s.pool
	if s.primary != nil {
		l.replayReplica(pending, err)
		return
	}
	if !connected && err != errAddressChanged && err != ErrTimeout {
		// The dial failed: nothing was written, and the address answers
		// no more; the topology source is told.
		s.markDown(HintUnreachable)
	}
	for _, m := range pending {
		switch {
		case m.client == nil && m.parent == nil:
			m.free() // the link's own set-up
		case m.sentAt == 0:
			p.retryOrFail(m, s, neverWritten)
		default:
			p.retryOrFail(m, s, unknownOutcome)
		}
	}
	s.flushWaiting()
}
