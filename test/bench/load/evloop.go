package load

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Closed-loop runs drive their clients from event loops, one OS thread
// each, as redis-benchmark and memtier do: level-triggered epoll, one read
// and one write per batch, no goroutine hand-offs. A goroutine per client
// over net.Conn cost the generator about 10 µs of CPU per unpipelined
// request (a read that finds nothing, a park, a poller wake-up); the
// generator shares the machine's CPUs with the proxy and the backends, so
// what it spends is taken from what it measures.

// errAborted ends a loop whose replies did not come in time.
var errAborted = errors.New("load: replies still missing after the window")

// detachFD takes a connected socket out of Go's poller: it duplicates the
// descriptor and closes the net.Conn, which removes the original from the
// runtime's epoll set (otherwise every reply would wake the runtime's
// poller too). The duplicate shares the open file, so it is already
// non-blocking.
func detachFD(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("load: %T has no file descriptor", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("load: dup: %w", derr)
	}
	conn.Close()
	return fd, nil
}

// evClient is a client's state in an event loop: the batch in flight.
type evClient struct {
	*client
	fd       int
	idx      int32 // its index in the loop, the epoll event's tag
	pending  int   // replies still due for the batch in flight
	rec      bool  // the batch was written inside the measured window
	sentAt   int64 // when it was written, ns since the loop's base
	woff     int   // bytes of wbuf already written
	watchOut bool  // EPOLLOUT is armed: the socket took less than offered
	done     bool
}

type evLoop struct {
	epfd    int
	phase   *atomic.Int32
	abort   *atomic.Bool
	base    time.Time
	clients []*evClient
	active  int
}

// runEventLoop runs clients closed-loop on one locked OS thread until the
// phase is phaseStop and every batch in flight has been answered.
func runEventLoop(phase *atomic.Int32, abort *atomic.Bool, clients []*evClient) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("load: epoll_create: %w", err)
	}
	defer unix.Close(epfd)
	lp := &evLoop{epfd: epfd, phase: phase, abort: abort, base: time.Now(), clients: clients, active: len(clients)}
	for i, c := range clients {
		c.idx = int32(i)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: c.idx}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
			return fmt.Errorf("load: epoll_ctl: %w", err)
		}
	}
	for _, c := range clients {
		if err := lp.send(c); err != nil {
			return err
		}
	}
	events := make([]unix.EpollEvent, len(clients))
	for lp.active > 0 {
		if abort.Load() {
			return errAborted
		}
		n, err := unix.EpollWait(epfd, events, 100)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("load: epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			c := clients[ev.Fd]
			if c.done {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				if err := lp.write(c); err != nil {
					return err
				}
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				if err := lp.read(c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// send writes the client's next batch, or retires the client once the
// run is over.
func (lp *evLoop) send(c *evClient) error {
	ph := lp.phase.Load()
	if ph == phaseStop {
		c.done = true
		lp.active--
		return nil
	}
	depth := max(c.spec.Pipeline, 1)
	c.wbuf = c.wbuf[:0]
	for range depth {
		c.wbuf = c.appendRequest(c.wbuf)
	}
	c.pending, c.rec, c.woff = depth, ph == phaseMeasure, 0
	c.sentAt = int64(time.Since(lp.base))
	return lp.write(c)
}

// write offers the rest of the batch; a full socket arms EPOLLOUT.
func (lp *evLoop) write(c *evClient) error {
	for c.woff < len(c.wbuf) {
		n, err := unix.Write(c.fd, c.wbuf[c.woff:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return fmt.Errorf("load: write: %w", err)
		}
		c.woff += n
	}
	if out := c.woff < len(c.wbuf); out != c.watchOut {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: c.idx}
		if out {
			ev.Events |= unix.EPOLLOUT
		}
		if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
			return fmt.Errorf("load: epoll_ctl: %w", err)
		}
		c.watchOut = out
	}
	return nil
}

// read takes one read (level-triggered: what is left is reported again),
// counts the replies it completes and sends the next batch after the last.
func (lp *evLoop) read(c *evClient) error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.rbuf) && c.r > 0 {
		c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.rbuf) {
		if len(c.rbuf) >= maxReply {
			return fmt.Errorf("%w: reply over %d bytes", ErrProtocol, maxReply)
		}
		c.rbuf = append(c.rbuf, make([]byte, len(c.rbuf))...)
	}
	n, err := unix.Read(c.fd, c.rbuf[c.w:])
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return nil
	case err != nil:
		return fmt.Errorf("load: read: %w", err)
	case n == 0:
		return fmt.Errorf("load: server closed with %d replies due: %w", c.pending, io.EOF)
	}
	c.w += n
	lat := time.Duration(int64(time.Since(lp.base)) - c.sentAt)
	for c.pending > 0 && c.w > c.r {
		m, r, err := c.parse(c.rbuf[c.r:c.w])
		if errors.Is(err, errIncomplete) {
			break
		}
		if err != nil {
			return err
		}
		c.r += m
		c.pending--
		if c.rec {
			c.count(r, lat)
		}
	}
	if c.pending > 0 {
		return nil
	}
	if c.r != c.w {
		return fmt.Errorf("%w: %d bytes after the last reply of a batch", ErrProtocol, c.w-c.r)
	}
	return lp.send(c)
}
