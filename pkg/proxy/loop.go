package proxy

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn"
)

// loop is the engine's event loop: one goroutine that owns every client
// and server connection of a proxy and does all their I/O with epoll,
// edge-triggered, as twemproxy and nginx do. One round reads every ready
// client and routes its requests, then writes each server once for all
// of them, then writes every client whose replies arrived. Requests of
// many clients leave in one write, replies of a server read leave in one
// write per client, and no goroutine hand-off or scheduler wake-up sits on
// the request path. A worker process runs one loop; more cores are used
// with more workers (worker_processes).
//
// Other goroutines (the worker, stats, dialers) talk to the loop only
// through post and do, which queue a function and wake epoll_wait.
type loop struct {
	epfd int
	evfd int // eventfd: wakes epoll_wait when a task is posted

	mu      sync.Mutex
	tasks   []func()
	stopped bool // no more tasks are run
	woken   bool // evfd written and not yet read

	handlers []handler // by descriptor
	now      int64     // unix nanos, read once per round

	dirtyLinks []*link       // links with requests to write this round
	ready      []*clientConn // clients with replies to write or requests to resume
	spare      []*clientConn

	scratch []byte       // read buffer shared by every client
	iov     []unix.Iovec // writev scratch
	bufs    [][]byte     // writev scratch
	coal    []byte       // small replies copied together for one iovec

	// held counts the reply bytes the loop's clients are owed and the
	// proxy holds; over budget (worker_output_budget) clients are parked:
	// not read until held is back under three quarters of it.
	held int
	// copied counts reply bytes copied from a link's read buffer into
	// msgs (with the links' rb.moved, the copies per byte of a reply;
	// tests read it).
	copied  int
	budget  int
	starved []*link // server links not read while over budget
	queued  int     // request bytes in link write buffers (the budget counts them for reading clients)
	parked  []*clientConn
	resumed []*link // paused links whose streams made room

	deferred []*clientConn // clients holding replies for the rest of a batch (deferWrite)

	lingering []*lingerer // half-closed client descriptors (lingerFD)

	freeMsgs  []*msg // recycled msgs (newMsg, msg.free)
	freeBytes int    // capacity of the buffers they keep

	// A hand-over in progress (handover.go): where drained clients go,
	// and what it did with them.
	give     func(Handoff)
	hoHanded int
	hoClosed map[string]int

	pools []*pool
	// handshakes bounds the TLS handshakes of the loop's clients; nil
	// without a TLS pool.
	handshakes *tlsconn.Limiter
	tlsScratch []byte // where a TLS client's replies are gathered for one write
	tick       time.Duration
	nextTick   int64
	quit       bool
	started    atomic.Bool
	done       chan struct{}
}

// handler is what owns a descriptor registered with the loop.
type handler interface {
	event(ev uint32)
}

// scratchSize is the shared read buffer: big enough that a client
// pipelining large requests is read in big chunks, and shared, so an idle
// client holds no read buffer at all.
const scratchSize = 256 << 10

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("proxy: epoll_create: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("proxy: eventfd: %w", err)
	}
	lp := &loop{epfd: epfd, evfd: evfd, tick: 50 * time.Millisecond, done: make(chan struct{}), coal: make([]byte, 0, 16<<10)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("proxy: epoll_ctl: %w", err)
	}
	return lp, nil
}

// post runs f on the loop. It reports false, without running f, once the
// loop has stopped.
func (lp *loop) post(f func()) bool {
	lp.mu.Lock()
	if lp.stopped {
		lp.mu.Unlock()
		return false
	}
	lp.tasks = append(lp.tasks, f)
	wake := !lp.woken
	lp.woken = true
	lp.mu.Unlock()
	if wake {
		var one = [8]byte{1}
		unix.Write(lp.evfd, one[:])
	}
	return true
}

// do runs f on the loop and waits for it; once the loop has stopped, f
// runs on the caller (nothing else touches the loop's state then).
func (lp *loop) do(f func()) {
	if !lp.started.Load() {
		f()
		return
	}
	ch := make(chan struct{})
	if !lp.post(func() { f(); close(ch) }) {
		<-lp.done
		f()
		return
	}
	select {
	case <-ch:
	case <-lp.done:
		// The loop ended with the task queued but not run.
		select {
		case <-ch:
		default:
			f()
		}
	}
}

// register adds fd for reads, edge-triggered.
func (lp *loop) register(fd int, h handler) error {
	return lp.add(fd, connEvents, h)
}

// add watches fd for events on behalf of h.
func (lp *loop) add(fd int, events uint32, h handler) error {
	for fd >= len(lp.handlers) {
		lp.handlers = append(lp.handlers, make([]handler, len(lp.handlers)+64)...)
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("proxy: epoll_ctl: %w", err)
	}
	lp.handlers[fd] = h
	return nil
}

// connEvents are what a connection is watched for. EPOLLOUT is added only
// while a socket is full (watchWrite): watched all the time, every ACK that
// frees send space would raise an edge and wake the loop for nothing.
const connEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET

// watchWrite starts or stops watching fd for EPOLLOUT. Re-arming reports
// a socket that is already writable, so no wake-up is lost.
func (lp *loop) watchWrite(fd int, on bool) {
	ev := unix.EpollEvent{Events: connEvents, Fd: int32(fd)}
	if on {
		ev.Events |= unix.EPOLLOUT
	}
	unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

// listenerEvents: a listening socket is level-triggered and exclusive:
// when several workers wait on the same socket, one of them is woken per
// connection rather than all.
const listenerEvents = unix.EPOLLIN | unix.EPOLLEXCLUSIVE

// registerListener adds a listening socket.
func (lp *loop) registerListener(fd int, h handler) error {
	return lp.add(fd, listenerEvents, h)
}

// unregister forgets fd and closes it (closing removes it from epoll).
func (lp *loop) closeFD(fd int) {
	if fd >= 0 && fd < len(lp.handlers) {
		lp.handlers[fd] = nil
	}
	unix.Close(fd)
}

// lingerMax bounds how long a half-closed client's bytes are read and
// dropped before its descriptor closes anyway.
const lingerMax = time.Second

// lingerer is a client descriptor after a half-close: what the client
// still sends is read and dropped until it closes its side.
type lingerer struct {
	lp    *loop
	fd    int
	until int64
}

// lingerFD closes a client's descriptor the way a server ends a
// connection a request may be on its way to (nginx's lingering close):
// the write side first, then what arrives is read and dropped until the
// client closes or lingerMax passes. Closed at once, unread bytes would
// make the kernel send the client a reset, which can reach it before the
// end of the stream and lose the replies it has not read.
func (lp *loop) lingerFD(fd int) {
	if unix.Shutdown(fd, unix.SHUT_WR) != nil || fd >= len(lp.handlers) {
		lp.closeFD(fd)
		return
	}
	l := &lingerer{lp: lp, fd: fd, until: lp.now + int64(lingerMax)}
	lp.handlers[fd] = l
	lp.lingering = append(lp.lingering, l)
	l.event(unix.EPOLLIN) // edge-triggered: what is there already
}

func (l *lingerer) event(uint32) {
	if l.fd < 0 {
		return
	}
	for {
		n, err := unix.Read(l.fd, l.lp.scratch)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return
		case n > 0:
			continue
		}
		l.close() // EOF or an error
		return
	}
}

func (l *lingerer) close() {
	if l.fd >= 0 {
		l.lp.closeFD(l.fd)
		l.fd = -1
	}
}

// expireLingering closes the half-closed descriptors past lingerMax (all
// with force, when the loop stops).
func (lp *loop) expireLingering(force bool) {
	keep := lp.lingering[:0]
	for _, l := range lp.lingering {
		if force || lp.now >= l.until {
			l.close()
		}
		if l.fd >= 0 {
			keep = append(keep, l)
		}
	}
	clear(lp.lingering[len(keep):])
	lp.lingering = keep
}

func (lp *loop) dirtyLink(l *link) {
	if !l.dirty {
		l.dirty = true
		lp.dirtyLinks = append(lp.dirtyLinks, l)
	}
}

func (lp *loop) markReady(c *clientConn) {
	if !c.ready {
		c.ready = true
		lp.ready = append(lp.ready, c)
	}
}

// run is the loop itself; it returns after stop.
func (lp *loop) run() {
	// The loop keeps its OS thread: resuming on another thread after a
	// blocking epoll_wait loses the kernel's wake-up and cache affinity.
	// Measured in two A/B runs: unpipelined GET 0.98-1.04x -> 1.06-1.12x
	// nutcracker, GET x16 1.35-1.52x -> 1.52-1.64x.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(lp.done)
	lp.started.Store(true)
	events := make([]unix.EpollEvent, 512)
	lp.now = time.Now().UnixNano()
	lp.nextTick = lp.now + int64(lp.tick)
	lastYield, rounds := lp.now, 0
	for !lp.quit {
		wait := int((lp.nextTick - lp.now + 999_999) / 1e6)
		if wait < 0 || lp.busy() {
			wait = 0
		} else if len(lp.deferred) > 0 && wait > 1 {
			wait = 1
		}
		n, err := unix.EpollWait(lp.epfd, events, wait)
		lp.now = time.Now().UnixNano()
		if err != nil && err != unix.EINTR {
			panic(fmt.Sprintf("proxy: epoll_wait: %v", err))
		}
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			if fd == lp.evfd {
				var b [8]byte
				unix.Read(lp.evfd, b[:])
				continue
			}
			if fd < len(lp.handlers) {
				if h := lp.handlers[fd]; h != nil {
					h.event(events[i].Events)
				}
			}
		}
		lp.runTasks()
		if lp.now >= lp.nextTick {
			for _, p := range lp.pools {
				p.expire(lp.now)
			}
			lp.expireLingering(false)
			lp.nextTick = lp.now + int64(lp.tick)
		}
		lp.settle()
		// A goroutine that never reschedules is, after 10 ms, taken
		// its P by sysmon in the middle of a blocking epoll_wait (Go
		// 1.26 retake: "if pp is in a syscall, preemptone doesn't
		// work"); the hand-off wakes other threads and sends sysmon
		// back to 20 µs polling. A busy loop yields every yieldEvery
		// instead; an idle one (few rounds) loses its P to the long
		// waits anyway and is left alone.
		if rounds++; rounds >= yieldRounds && lp.now-lastYield >= yieldEvery {
			rounds, lastYield = 0, lp.now
			runtime.Gosched()
		}
	}
	lp.mu.Lock()
	lp.stopped = true
	tasks := lp.tasks
	lp.tasks = nil
	lp.mu.Unlock()
	for _, f := range tasks {
		f()
	}
	lp.settle()
	lp.expireLingering(true)
	unix.Close(lp.epfd)
	unix.Close(lp.evfd)
}

func (lp *loop) runTasks() {
	lp.mu.Lock()
	tasks := lp.tasks
	lp.tasks = nil
	lp.woken = false
	lp.mu.Unlock()
	for i, f := range tasks {
		f()
		tasks[i] = nil
	}
}

// settle writes what the round produced: first every server link that
// received requests (one write for all the clients that routed to it),
// then every client whose replies are ready. Writing a client may let it
// route more of its pipeline, so this repeats, but at most settlePasses
// times: a client pipelining requests the proxy answers itself must not
// keep the loop from epoll_wait. Clients left over stay ready and the next
// epoll_wait does not block.
func (lp *loop) settle() {
	lp.unpark()
	lp.revisitDeferred()
	for pass := 0; pass < settlePasses && (len(lp.ready) > 0 || len(lp.resumed) > 0) || len(lp.dirtyLinks) > 0; pass++ {
		if len(lp.resumed) > 0 {
			lp.resumeLinks()
		}
		for i := 0; i < len(lp.dirtyLinks); i++ {
			l := lp.dirtyLinks[i]
			l.dirty = false
			l.flush()
			lp.dirtyLinks[i] = nil
		}
		lp.dirtyLinks = lp.dirtyLinks[:0]
		if pass >= settlePasses {
			break
		}
		ready := lp.ready
		lp.ready = lp.spare[:0]
		for i, c := range ready {
			c.ready = false
			c.writeOut()
			ready[i] = nil
		}
		lp.spare = ready[:0]
	}
}

// revisitDeferred writes the clients whose deferred batch has waited
// deferWindow (or is no longer deferred).
func (lp *loop) revisitDeferred() {
	if len(lp.deferred) == 0 {
		return
	}
	keep := lp.deferred[:0]
	for _, c := range lp.deferred {
		if !c.closed && c.qhead < len(c.queue) && lp.now-c.queue[c.qhead].start < deferWindow {
			keep = append(keep, c)
			continue
		}
		c.deferred = false
		if !c.closed {
			lp.markReady(c)
		}
	}
	clear(lp.deferred[len(keep):])
	lp.deferred = keep
}

// The loop's voluntary yield (run): at most every yieldEvery, and only
// after yieldRounds rounds, so that an idle loop does not wake for it.
const (
	yieldEvery  = int64(5 * time.Millisecond)
	yieldRounds = 64
)

// settlePasses bounds the write/route passes of one round.
const settlePasses = 8

// busy reports work left for the next round without waiting.
func (lp *loop) busy() bool {
	return len(lp.ready) > 0 || len(lp.dirtyLinks) > 0 || len(lp.resumed) > 0
}
