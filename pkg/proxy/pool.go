package proxy

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/sysio"
	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn"
)

// protocol is what the engine needs from a wire protocol: parse and route
// client requests, frame server replies, merge fragments, speak errors.
type protocol interface {
	// parse parses one request at the start of buf and queues it on c.
	// It returns the bytes consumed, or 0 and a size hint when buf holds
	// no complete request; an error closes the client after the replies
	// already queued.
	parse(c *clientConn, buf []byte) (n, need int, err error)
	// replyLen frames one reply to m at the start of buf, the bytes l has
	// read; l keeps what the protocol needs to resume a reply cut short.
	replyLen(l *link, m *msg, buf []byte) (n, need int, isErr bool, err error)
	// errorReply appends the protocol's reply for a failed request.
	errorReply(dst []byte, err error) []byte
	// merge builds a parent's reply from its finished fragments.
	merge(parent *msg)
	// handshake queues the requests a new server link sends first.
	handshake(l *link)
	// tooManyClients appends the reply sent before closing a client over
	// the client_connections limit.
	tooManyClients(dst []byte) []byte
	// maxRequest is the largest request a client may send, in bytes.
	maxRequest() int
}

// coalescer is a protocol that sends several requests as one (a carrier
// msg with members) and so must split the one reply among them.
type coalescer interface {
	scatter(carrier *msg, reply []byte, isErr bool)
}

type pool struct {
	cfg     *config.Pool
	log     *logrus.Entry
	proto   protocol
	servers []*server
	nodes   []hashkit.Node
	hash    hashkit.HashFunc
	ring    atomic.Pointer[hashkit.Ring]
	ringMu  sync.Mutex // serialises rebuilds

	maxReply int
	streamer streamer // the protocol, when it streams large replies
	stats    PoolStats
	latency  histogram // request latency as clients see it
	slowlog  int64     // slowlog_slower_than in microseconds, 0 = off
	slowLim  rateLimiter
	limitLog rateLimiter // log lines of clients closed by a limit
	authLim  rateLimiter // AUTH attempts checked per second
	commands sync.Map    // command name -> *atomic.Uint64
	peers    PeerTotals  // the other workers' counters, for INFO; on the loop
	// hint reports what the engine saw of a server whose address moves
	// (topology.go); nil without a topology source.
	hint func(pool, server, reason string)
	// cluster is a cluster pool's slot map and waiting requests; nil for
	// other pools.
	cluster *clusterState
	// readFrom is the sentinel or cluster block's read_from
	// (config.ReadFrom*).
	readFrom string
	// counter admits clients with the other workers' (limits.go); nil
	// counts this engine's clients only.
	counter ClientCounter

	lp    *loop
	merge [][]byte // scratch of merges; only the loop merges
	keys  [][]byte // scratch of splits
	// tlsServer and tlsClient are the pool's TLS sides (tls.go), nil for
	// plaintext.
	tlsServer *tlsconn.Server
	tlsClient *tlsconn.Client
	tlsFiles  map[string][]byte // the configuration's TLS files' contents

	acceptors []*acceptor
	clients   map[*clientConn]struct{} // owned by the loop
	draining  bool
	wg        sync.WaitGroup // clients
}

func newPool(cfg *config.Pool, log *logrus.Entry, lp *loop, tlsFiles map[string][]byte) (*pool, error) {
	h, err := hashkit.Hash(cfg.Hash)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", cfg.Name, err)
	}
	p := &pool{
		cfg:      cfg,
		log:      log.WithField("pool", cfg.Name),
		hash:     h,
		clients:  make(map[*clientConn]struct{}),
		lp:       lp,
		tlsFiles: tlsFiles,
	}
	switch cfg.Protocol {
	case config.ProtocolRedis:
		p.proto = newRedisProto(p)
	case config.ProtocolMemcache:
		p.proto = newMemcacheProto(p)
	default:
		return nil, fmt.Errorf("pool %s: unknown protocol %q", cfg.Name, cfg.Protocol)
	}
	p.readFrom = config.ReadFromMaster
	if cfg.Sentinel != nil && cfg.Sentinel.ReadFrom != "" {
		p.readFrom = cfg.Sentinel.ReadFrom
	}
	if cfg.Cluster != nil && cfg.Cluster.ReadFrom != "" {
		p.readFrom = cfg.Cluster.ReadFrom
	}
	p.maxReply = 1 << 30
	p.streamer, _ = p.proto.(streamer)
	p.slowlog = cfg.SlowlogSlowerThan.Microseconds()
	p.slowLim.limit = slowLogPerSecond
	p.limitLog.limit = slowLogPerSecond
	p.authLim.limit = authChecksPerSecond
	if err := p.setupTLS(); err != nil {
		return nil, fmt.Errorf("pool %s: %w", cfg.Name, err)
	}
	for i, sc := range cfg.Servers {
		s := &server{pool: p, idx: i, name: sc.Name, addr: sc.Address, cfg: sc, managed: cfg.Sentinel != nil}
		s.conns = newServerConns(s, cfg.ServerConnections, false)
		p.servers = append(p.servers, s)
		p.nodes = append(p.nodes, hashkit.Node{Name: sc.PlacementName(), Weight: sc.Weight})
	}
	if cfg.Cluster != nil {
		p.cluster = newClusterState()
		return p, nil
	}
	r, err := hashkit.Build(cfg.Distribution, p.nodes, nil)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", cfg.Name, err)
	}
	p.ring.Store(r)
	return p, nil
}

// start opens the server connections with preconnect; on the loop.
func (p *pool) start() {
	if p.cfg.Preconnect {
		for _, s := range p.servers {
			if !s.hasMaster() {
				continue // dialled once its address is known
			}
			for _, sc := range s.conns {
				sc.link()
			}
		}
	}
}

// tickPeriod is how often the loop times out late requests and client
// timers: a coarse tick costs nothing per request, unlike a timer each.
func (p *pool) tickPeriod() time.Duration {
	period := 50 * time.Millisecond
	if t := p.cfg.Timeout; t > 0 && t/8 < period {
		period = max(t/8, time.Millisecond)
	}
	return period
}

// expire times out requests whose server is late, re-admits ejected
// servers and applies the client timers; called on the loop's tick.
func (p *pool) expire(now int64) {
	timeout := int64(p.cfg.Timeout)
	readmit := false
	for _, s := range p.servers {
		if until := s.ejectedUntil.Load(); until != 0 && now >= until {
			s.ejectedUntil.Store(0)
			readmit = true
			p.log.WithField("server", s.name).Info("server back on the ring")
		}
		if s.managed {
			s.expireWaiting(now)
		}
		if len(s.pins) > 0 {
			s.expirePins(now, timeout)
		}
		if timeout <= 0 {
			continue
		}
		s.eachConnAndReplicas(func(sc *serverConn) {
			if l := sc.current(); l != nil && l.late(now, timeout) {
				l.kill(ErrTimeout)
			}
		})
	}
	if readmit {
		p.rebuildRing()
	}
	if p.cluster != nil {
		p.expireCluster(now)
	}
	for _, a := range p.acceptors {
		a.resume(now)
	}
	if p.draining || p.cfg.ClientIdleTimeout > 0 || p.cfg.ClientWriteTimeout > 0 || p.cfg.ClientOutputSoftLimit > 0 {
		for c := range p.clients {
			c.checkTimers(now)
		}
	}
}

// rebuildRing places keys over the servers that are not ejected, as
// twemproxy's server_pool_run does.
func (p *pool) rebuildRing() {
	p.ringMu.Lock()
	defer p.ringMu.Unlock()
	live := make([]bool, len(p.servers))
	for i, s := range p.servers {
		live[i] = s.ejectedUntil.Load() == 0
	}
	r, err := hashkit.Build(p.cfg.Distribution, p.nodes, live)
	if err != nil {
		p.log.WithError(err).Error("rebuilding the ring")
		return
	}
	p.ring.Store(r)
}

// serverFor returns the server that owns key, or nil when none is live.
func (p *pool) serverFor(key []byte) *server {
	if p.cluster != nil {
		return p.slotOwner(int32(hashkit.Slot(key)))
	}
	if p.cfg.HashTag != "" {
		key = hashkit.HashTagKey(key, p.cfg.HashTag)
	}
	var h uint32
	if len(key) > 0 { // twemproxy's server_pool_hash maps an empty key to 0
		h = p.hash(key)
	}
	i := p.ring.Load().Pick(h)
	if i < 0 {
		return nil
	}
	return p.servers[i]
}

// forward queues m on server s with the request bytes appended by build;
// the client flushes the link once its whole batch is routed.
func (p *pool) forward(m *msg, s *server, build func(dst []byte) []byte) {
	if s.managed {
		// The request is kept, to be replayed if the master moves.
		m.server = s
		s.stats.Requests.Add(1)
		m.req = build(m.req[:0])
		p.setReplaySafe(m)
		p.sendManaged(m, s)
		return
	}
	p.forwardVia(m, s, func(l *link) bool { return l.enqueueFunc(m, build) })
}

// forwardVia is forward with the queueing on a link left to enqueue, which
// reports false when the link is dead; a second link is tried, then m
// fails.
func (p *pool) forwardVia(m *msg, s *server, enqueue func(l *link) bool) {
	m.server = s
	s.stats.Requests.Add(1)
	class := linkDefault
	if c := m.owner(); c != nil {
		class = c.linkClass
	}
	for range 2 {
		if enqueue(s.conn(class).link()) {
			return
		}
	}
	p.stats.ForwardError.Add(1)
	p.fail(m, ErrClosed)
}

// setReplaySafe records whether m may be replayed after an unknown
// outcome (retry.go): the command is read-only.
func (p *pool) setReplaySafe(m *msg) {
	if c := m.owner(); c != nil {
		m.readOnly, m.replaySafe, m.replicaOK = c.cmdReadOnly, c.cmdReplaySafe, c.cmdReadOnly
	} else {
		m.readOnly, m.replaySafe = true, true // the proxy's own INFO
	}
}

// failoverTimeout bounds how long a request waits for a server's (or a
// slot's) owner.
func (p *pool) failoverTimeout() int64 {
	switch {
	case p.cfg.Cluster != nil:
		return int64(p.cfg.Cluster.FailoverTimeout)
	case p.cfg.Sentinel != nil:
		return int64(p.cfg.Sentinel.FailoverTimeout)
	}
	return 0
}

// mergeScratch returns n nil slices for a merge to fill; the caller
// clears them when done so that no reply stays referenced.
func (p *pool) mergeScratch(n int) [][]byte {
	if cap(p.merge) < n {
		p.merge = make([][]byte, n)
	}
	return p.merge[:n]
}

// countCommand counts one request of the named command.
func (p *pool) countCommand(name string) *atomic.Uint64 {
	if v, ok := p.commands.Load(name); ok {
		return v.(*atomic.Uint64)
	}
	v, _ := p.commands.LoadOrStore(name, new(atomic.Uint64))
	return v.(*atomic.Uint64)
}

// groupKeys places the keys of a multi-key request: key(i) for i in
// first, first+step, … below n. c.groups[s] collects the positions of server
// s's keys. It returns how many servers hold keys, or 0 when some key has
// no live server.
func (p *pool) groupKeys(c *clientConn, first, n, step int, key func(i int) []byte) int {
	if p.cluster != nil {
		return p.groupSlots(c, first, n, step, key)
	}
	if len(c.groups) < len(p.servers) {
		c.groups = make([][]int32, len(p.servers))
	}
	groups := c.groups[:len(p.servers)]
	for i := range groups {
		groups[i] = groups[i][:0]
	}
	nserv := 0
	for i := first; i < n; i += step {
		s := p.serverFor(key(i))
		if s == nil {
			return 0
		}
		if len(groups[s.idx]) == 0 {
			nserv++
		}
		groups[s.idx] = append(groups[s.idx], int32(i))
	}
	return nserv
}

// fragment sends parent as one fragment per server of c.groups (nserv of
// them hold keys); build encodes a fragment from its key positions. The
// last fragment to finish merges the replies into parent.
func (p *pool) fragment(c *clientConn, parent *msg, nserv int, build func(dst []byte, keys []int32) []byte) {
	if p.cluster != nil {
		p.fragmentSlots(c, parent, nserv, build)
		return
	}
	p.fragmentWith(c, parent, nserv, func(f *msg, s *server, g []int32) {
		p.forward(f, s, func(dst []byte) []byte { return build(dst, g) })
	})
}

// fragmentWith is fragment with the forwarding of each fragment, with its
// key positions, left to send.
func (p *pool) fragmentWith(c *clientConn, parent *msg, nserv int, send func(f *msg, s *server, keys []int32)) {
	groups := c.groups[:len(p.servers)]
	parent.pending = int32(nserv)
	p.stats.Fragments.Add(uint64(nserv))
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		f := p.lp.newMsg(nil)
		f.parent = parent
		f.op = parent.op
		f.keyIdx = append(f.keyIdx[:0], g...)
		parent.frags = append(parent.frags, f)
	}
	c.enqueue(parent)
	fi := 0
	for si, g := range groups {
		if len(g) == 0 {
			continue
		}
		f := parent.frags[fi]
		fi++
		send(f, p.servers[si], g)
	}
}

// complete records a server's reply to m.
func (p *pool) complete(m *msg, reply []byte, isErr bool) {
	if isErr && m.server != nil && m.server.primary != nil && replicaRefused(reply) {
		// A replica that cannot serve (LOADING, MASTERDOWN): the read
		// did not run; it goes to the master or another replica.
		m.server.replicaFailed(p.lp.now)
		p.retryOrFail(m, m.server.primary, notRun)
		m.server.primary.flushWaiting()
		return
	}
	if isErr && p.cluster != nil && m.pinned {
		if p.pinnedRedirect(m, reply) {
			return
		}
	} else if isErr && p.cluster != nil && m.server != nil && p.redirected(m, reply) {
		return
	}
	if isErr && m.server != nil && m.server.managed && !m.pinned && notRunError(reply) {
		// The server is no master (yet, or any more): the request did not
		// run; it waits for the master the topology source names next.
		s := m.server
		s.markDown(HintNotMaster)
		p.retryOrFail(m, s, notRun)
		return
	}
	if len(m.members) > 0 {
		// Only a protocol that coalesces requests makes carriers.
		p.proto.(coalescer).scatter(m, reply, isErr)
		m.free()
		return
	}
	m.reply = append(m.reply[:0], reply...)
	p.lp.copied += len(reply)
	p.answered(m, isErr)
}

// answered finishes m, whose reply is in place.
func (p *pool) answered(m *msg, isErr bool) {
	if m.sentAt != 0 && m.server != nil && !m.uncounted {
		// The proxy's own requests (COMMAND) are not in the histograms.
		m.server.latency.observe((p.lp.now - m.sentAt) / 1e3)
	}
	m.isErr = isErr
	p.finish(m)
}

// fail answers m with the protocol's error for err.
func (p *pool) fail(m *msg, err error) {
	if err == ErrNoServer && p.cluster != nil && !p.cluster.haveMap {
		err = errNoSlotMap
	}
	if len(m.members) > 0 {
		for _, mb := range m.members {
			p.fail(mb, err)
		}
		m.free()
		return
	}
	m.err = err
	if m.client != nil || m.parent != nil {
		m.reply = p.proto.errorReply(m.reply[:0], err)
	}
	p.finish(m)
}

// finish hands a done msg to its client, or to its parent; the client
// writes it at the end of the round.
func (p *pool) finish(m *msg) {
	if parent := m.parent; parent != nil {
		if parent.pending--; parent.pending == 0 {
			p.proto.merge(parent)
			for _, f := range parent.frags {
				f.free()
			}
			parent.frags = parent.frags[:0]
			p.finish(parent)
		}
		return
	}
	c := m.client
	if c == nil {
		if m.err == nil && m.isErr {
			p.log.WithField("reply", string(m.reply)).Warn("server refused the connection set-up")
		}
		m.free()
		return
	}
	if m.server != nil || m.frags != nil {
		us := (p.lp.now - m.start) / 1e3
		p.latency.observe(us)
		if p.slowlog > 0 && us > p.slowlog {
			p.slow(m, us)
		}
	}
	c.done(m)
}

// acceptor is one listening socket of a pool, registered with the loop.
type acceptor struct {
	p       *pool
	ln      net.Listener // closed with the acceptor
	fd      int          // the loop's duplicate of ln's socket
	tcp     bool
	tls     bool  // its clients speak TLS
	paused  int64 // unix nanos until which accepting is paused, 0 = active
	backoff time.Duration
}

// serve starts accepting clients on ln; on the loop.
func (p *pool) serve(ln net.Listener, tls bool) error {
	if p.draining {
		ln.Close()
		return nil
	}
	fd, err := rawFD(ln)
	if err != nil {
		return err
	}
	a := &acceptor{p: p, ln: ln, fd: fd, tcp: ln.Addr().Network() == "tcp", tls: tls}
	if err := p.lp.registerListener(fd, a); err != nil {
		unix.Close(fd)
		return err
	}
	p.acceptors = append(p.acceptors, a)
	return nil
}

// event accepts the connections waiting on the socket.
func (a *acceptor) event(uint32) {
	p := a.p
	for range 64 { // then let the clients already connected have a turn
		fd, sa, err := unix.Accept4(a.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if isAgain(err) {
			return
		}
		if err != nil {
			// EMFILE and friends: stop accepting for a while instead of
			// spinning, as net/http does.
			a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
			p.log.WithError(err).WithField("retry_in", a.backoff).Warn("accept failed")
			unix.EpollCtl(p.lp.epfd, unix.EPOLL_CTL_DEL, a.fd, nil)
			a.paused = p.lp.now + int64(a.backoff)
			return
		}
		a.backoff = 0
		if a.tcp {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		p.accept(fd, sa, a.tcp, a.tls)
	}
}

// resume re-arms an acceptor paused after an error.
func (a *acceptor) resume(now int64) {
	if a.paused != 0 && now >= a.paused && a.fd >= 0 {
		a.paused = 0
		a.p.lp.add(a.fd, listenerEvents, a)
	}
}

func (a *acceptor) close() {
	if a.fd >= 0 {
		// Out of the epoll set first: closing our descriptor does not
		// take it out while the master and the next generation hold the
		// socket, and a draining worker left in the set takes, with
		// EPOLLEXCLUSIVE, the wake-ups of connections it never accepts
		// (one of 20 connections during a reload waited for the next).
		if a.paused == 0 {
			unix.EpollCtl(a.p.lp.epfd, unix.EPOLL_CTL_DEL, a.fd, nil)
		}
		a.p.lp.closeFD(a.fd)
		a.fd = -1
	}
	a.ln.Close()
}

func (p *pool) accept(fd int, sa unix.Sockaddr, tcp, tls bool) {
	p.stats.ClientAccepted.Add(1)
	if !p.admit() {
		p.stats.ClientRejected.Add(1)
		if p.limitLog.allow(p.lp.now) {
			p.log.WithField("limit", p.cfg.ClientConnections).Warn("client_connections limit reached, refusing a client")
		}
		if !tls { // a TLS client could not read it
			sysio.Write(fd, p.proto.tooManyClients(nil)) // best effort: the socket is fresh and empty
		}
		unix.Close(fd)
		return
	}
	c := newClientConn(p, fd, sa, tcp)
	if tls {
		if !p.acceptTLS(c) {
			p.unadmit()
			unix.Close(fd)
			return
		}
	} else if err := p.lp.register(fd, c); err != nil {
		p.unadmit()
		p.log.WithError(err).Warn("accept failed")
		unix.Close(fd)
		return
	}
	// Even while draining: the client connected before the listener
	// closed and has likely sent a request already; it is drained too.
	p.clients[c] = struct{}{}
	p.wg.Add(1)
	p.stats.ClientConnections.Add(1)
	if p.draining {
		c.draining = true
	}
}

func (p *pool) removeClient(c *clientConn) {
	delete(p.clients, c)
	p.stats.ClientConnections.Add(-1)
	p.unadmit()
	p.wg.Done()
}

// drain stops accepting and asks every client to finish what it has sent;
// on the loop.
func (p *pool) drain() {
	if p.draining {
		return
	}
	p.draining = true
	for _, a := range p.acceptors {
		a.close()
	}
	p.acceptors = nil
	for c := range p.clients {
		c.drain()
	}
}

// closeAll closes every client and server connection now; on the loop.
func (p *pool) closeAll() {
	p.drain()
	for c := range p.clients {
		c.close()
	}
	// Fail what is still in flight so that no client waits for a reply.
	for _, s := range p.servers {
		s.eachConnAndReplicas(func(sc *serverConn) {
			if l := sc.current(); l != nil {
				l.kill(errLinkShutdown)
			}
		})
		s.killPins(errLinkShutdown)
	}
}

// slow logs a request over slowlog_slower_than, at most slowLogPerSecond
// records a second so that a slow backend cannot flood the journal.
func (p *pool) slow(m *msg, us int64) {
	p.stats.SlowRequests.Add(1)
	if !p.slowLim.allow(time.Now().UnixNano()) {
		return
	}
	f := logrus.Fields{"command": m.cmd, "duration": time.Duration(us) * time.Microsecond,
		"request_bytes": m.reqLen, "reply_bytes": len(m.reply)}
	if m.server != nil {
		f["server"] = m.server.name
	} else if len(m.frags) > 0 || m.keyIdx != nil {
		f["server"] = "(several)"
	}
	if m.err != nil {
		f["error"] = m.err.Error()
	}
	if p.cfg.SlowlogLogKeys && len(m.key) > 0 {
		f["key"] = string(m.key)
	}
	p.log.WithFields(f).Warn("slow request")
}

// Rates: slow-log records, and AUTH passwords checked (successful checks
// are given back, so only failures consume the budget).
const (
	slowLogPerSecond    = 10
	authChecksPerSecond = 100
)

// rateLimiter allows limit events per wall-clock second.
type rateLimiter struct {
	mu     sync.Mutex
	limit  int
	second int64
	n      int
}

func (r *rateLimiter) allow(now int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := now / 1e9; s != r.second {
		r.second, r.n = s, 0
	}
	if r.n >= r.limit {
		return false
	}
	r.n++
	return true
}

// undo gives back the last allowed event.
func (r *rateLimiter) undo() {
	r.mu.Lock()
	if r.n > 0 {
		r.n--
	}
	r.mu.Unlock()
}
