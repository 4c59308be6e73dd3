// Package tlsconn runs the standard library's crypto/tls over a socket that
// an event loop owns. The handshake needs a blocking stack (crypto/tls
// cannot resume one that saw "would block"), so it runs on a goroutine over
// a net.Conn of its own, bounded by a Limiter and a deadline. Once it is
// done, the loop drives the tls.Conn over its raw, non-blocking descriptor:
// Read and Write mimic read(2) and write(2) (EAGAIN when the socket is
// empty or full) so the loop's code paths stay those of plaintext.
//
// The package knows nothing of the proxy: it imports only the standard
// library and x/sys.
package tlsconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/sysio"
)

// Conn is one TLS connection. Handshake runs on any goroutine; after it,
// every method is for the loop's goroutine only.
type Conn struct {
	tc *tls.Conn
	t  transport
}

// transport is the net.Conn under the tls.Conn. During the handshake it is
// the blocking nc; after it, the loop's descriptor, where Read says "would
// block" with a temporary error (which crypto/tls does not make sticky) and
// Write never fails: a failed write is permanent in crypto/tls, so bytes
// the socket will not take wait in out, and a socket error is kept for the
// loop to see.
type transport struct {
	mu       sync.Mutex   // guards nc and state against Abort
	nc       net.Conn     // the handshake's blocking conn; nil after it
	state    atomic.Int32 // stateHandshake, stateData, stateAborted; set under mu
	lim      *Limiter
	has      bool // holds a slot of lim
	deadline time.Time

	fd      int
	drained bool   // the socket is empty, as far as this Read knows
	out     []byte // ciphertext the socket has not taken yet
	ooff    int
	cork    bool  // gather the records of one Write into out
	werr    error // the socket's write error, reported by the next Write
}

// Accept starts a server-side connection on fd, an accepted socket the
// caller keeps. The handshake reads a duplicate of fd, so the caller's
// descriptor need not be registered anywhere until Handshake returns.
func Accept(fd int, cfg *tls.Config, lim *Limiter) (*Conn, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tlsconn: dup: %w", err)
	}
	f := os.NewFile(uintptr(dup), "tls")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("tlsconn: %w", err)
	}
	c := &Conn{}
	c.t = transport{nc: nc, lim: lim, fd: fd}
	c.tc = tls.Server(&c.t, cfg)
	return c, nil
}

// Connect starts a client-side connection over nc, a dialled conn; after
// Handshake, Attach moves it to the loop's descriptor.
func Connect(nc net.Conn, cfg *tls.Config) *Conn {
	c := &Conn{}
	c.t = transport{nc: nc, fd: -1}
	c.tc = tls.Client(&c.t, cfg)
	return c
}

// Handshake runs the handshake, blocking, for at most timeout. A server
// connection then closes its duplicate descriptor; the caller hands the
// connection to the loop.
func (c *Conn) Handshake(timeout time.Duration) error {
	nc, err := c.t.handshakeConn()
	if err != nil {
		return err
	}
	if nc == nil {
		return net.ErrClosed
	}
	if timeout > 0 {
		c.t.deadline = time.Now().Add(timeout)
		nc.SetDeadline(c.t.deadline)
	}
	err = c.tc.Handshake()
	c.t.release()
	if err != nil {
		c.t.detach(true)
		return err
	}
	nc.SetDeadline(time.Time{})
	if c.t.fd >= 0 {
		// The server side: the loop has the descriptor; the duplicate goes.
		c.t.mu.Lock()
		aborted := c.t.state.Load() == stateAborted
		c.t.state.Store(stateData)
		c.t.nc = nil
		if aborted {
			c.t.state.Store(stateAborted)
		}
		c.t.mu.Unlock()
		nc.Close()
		if aborted {
			return net.ErrClosed
		}
	}
	return nil
}

// Attach gives a client connection whose handshake is done its loop
// descriptor; the caller then closes the dialled conn.
func (c *Conn) Attach(fd int) {
	c.t.fd = fd
	c.t.detach(false)
}

// Abort ends a handshake in progress (from any goroutine): it fails at once.
func (c *Conn) Abort() { c.t.detach(true) }

// State is the connection's TLS state, once the handshake is done.
func (c *Conn) State() tls.ConnectionState { return c.tc.ConnectionState() }

// Read reads plaintext as read(2) would: n > 0, or 0 and nil at the peer's
// end (close_notify or EOF), or unix.EAGAIN when nothing complete is there.
// It fills b from as many records as are available, so a short read means
// the socket is empty.
func (c *Conn) Read(b []byte) (int, error) {
	c.t.drained = false
	n := 0
	for n < len(b) {
		m, err := c.tc.Read(b[n:])
		n += m
		if err != nil {
			if n > 0 {
				// An error after data: returned again (sticky) next time.
				return n, nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, unix.EAGAIN
			}
			if errors.Is(err, io.EOF) {
				return 0, nil
			}
			return 0, err
		}
		if m == 0 {
			break
		}
	}
	return n, nil
}

// plainChunk is how much plaintext one tls.Conn.Write is given: four full
// records, gathered from small replies so that they share records.
const plainChunk = 64 << 10

// ChunkSize is the scratch a caller gives Writev to gather replies in.
const ChunkSize = plainChunk

// maxRecord is the plaintext of one full record: a write of at most this
// is one record, written straight to the socket.
const maxRecord = 16 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, plainChunk+1024); return &b }}

// Write encrypts b and writes it as write(2) would: it returns how much
// plaintext was taken. Taken bytes are sent or wait in the connection's
// output (Pending), at most about one chunk; nothing is taken, and
// unix.EAGAIN returned, while earlier output waits.
func (c *Conn) Write(b []byte) (int, error) {
	one := [1][]byte{b}
	return c.Writev(one[:], nil)
}

// Writev is Write of bufs gathered: replies of one loop round leave in as
// few records as they fit (one record costs ≈ 320 ns plus the bytes).
// scratch (capacity ChunkSize, owned by the caller's loop) is where they
// are gathered; nil takes a pooled buffer.
func (c *Conn) Writev(bufs [][]byte, scratch []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	if len(bufs) == 1 && len(bufs[0]) <= plainChunk {
		// One buffer: sealed from where it is.
		if err := c.seal(bufs[0]); err != nil && err != unix.EAGAIN {
			return 0, err
		}
		return len(bufs[0]), nil
	}
	var bp *[]byte
	plain := scratch[:0]
	if cap(plain) < plainChunk {
		bp = chunkPool.Get().(*[]byte)
		plain = (*bp)[:0]
	}
	taken := 0
	var err error
	for i := 0; i < len(bufs) && err == nil; i++ {
		b := bufs[i]
		for len(b) > 0 && err == nil {
			if len(plain) == 0 && len(b) >= plainChunk/2 {
				// Large: encrypted from where it is.
				k := min(len(b), plainChunk)
				if err = c.seal(b[:k]); err == nil {
					taken += k
					b = b[k:]
					if c.Pending() {
						err = errFull
					}
				}
				continue
			}
			k := min(len(b), plainChunk-len(plain))
			plain = append(plain, b[:k]...)
			b = b[k:]
			if len(plain) == plainChunk {
				if err = c.seal(plain); err == nil {
					taken += len(plain)
					plain = plain[:0]
					if c.Pending() {
						err = errFull
					}
				}
			}
		}
	}
	if err == nil && len(plain) > 0 {
		if err = c.seal(plain); err == nil {
			taken += len(plain)
		}
	}
	if bp != nil {
		*bp = plain[:0]
		chunkPool.Put(bp)
	}
	if err == errFull {
		err = nil
	}
	if err != nil {
		return taken, err
	}
	if taken == 0 && c.Pending() {
		return 0, unix.EAGAIN
	}
	return taken, nil
}

const (
	stateHandshake = iota
	stateData
	stateAborted
)

var errFull = errors.New("tlsconn: socket full")

// seal encrypts p and writes it: one record straight to the socket, or
// several gathered in out and written in one call.
func (c *Conn) seal(p []byte) error {
	c.t.cork = len(p) > maxRecord
	_, err := c.tc.Write(p)
	c.t.cork = false
	if err != nil {
		return err
	}
	return c.Flush()
}

// Pending reports ciphertext the socket has not taken yet: the caller
// waits for EPOLLOUT and calls Flush (or Write) again.
func (c *Conn) Pending() bool { return c.t.ooff < len(c.t.out) }

// Flush writes pending ciphertext: nil when none is left, unix.EAGAIN when
// the socket is full, or the socket's error.
func (c *Conn) Flush() error {
	t := &c.t
	if t.werr != nil {
		return t.werr
	}
	for t.ooff < len(t.out) {
		n, err := sysio.Write(t.fd, t.out[t.ooff:])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return unix.EAGAIN
			}
			t.werr = err
			return err
		}
		t.ooff += n
	}
	t.putOut()
	return nil
}

// CloseNotify sends close_notify, best effort, before the caller closes
// the descriptor.
func (c *Conn) CloseNotify() {
	if c.t.state.Load() == stateData && c.t.fd >= 0 {
		c.tc.CloseWrite()
		c.Flush()
	}
	c.t.putOut()
}

func (t *transport) putOut() {
	if t.out != nil && t.ooff == len(t.out) {
		b := t.out[:0]
		chunkPool.Put(&b)
		t.out, t.ooff = nil, 0
	}
}

// detach ends the handshake mode: to data mode over fd (close false), or
// aborted, the conn closed (close true).
func (t *transport) detach(close bool) {
	t.mu.Lock()
	nc := t.nc
	t.nc = nil
	if close {
		t.state.Store(stateAborted)
	} else if t.state.Load() == stateHandshake {
		t.state.Store(stateData)
	}
	t.mu.Unlock()
	if nc != nil && close {
		nc.Close()
	}
}

// handshakeConn is the handshake's conn, or nil in data mode; aborted, an
// error.
func (t *transport) handshakeConn() (net.Conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch t.state.Load() {
	case stateHandshake:
		return t.nc, nil
	case stateAborted:
		return nil, net.ErrClosed
	}
	return nil, nil
}

// release gives back the limiter slot, if held.
func (t *transport) release() {
	if t.has {
		t.has = false
		t.lim.release()
	}
}

func (t *transport) Read(b []byte) (int, error) {
	if t.state.Load() != stateData {
		nc, err := t.handshakeConn()
		if err != nil {
			return 0, err
		}
		if nc != nil {
			// Waiting for the peer holds no slot: only computing does, so
			// a slow peer does not keep others' handshakes waiting.
			t.release()
			n, err := nc.Read(b)
			if err == nil && t.lim != nil {
				if err = t.lim.acquire(t.deadline); err == nil {
					t.has = true
				}
			}
			return n, err
		}
	}
	if t.drained {
		// A short read emptied the socket during this Read: a stream
		// socket has nothing more until the next edge (the read(2) the
		// plaintext path saves too).
		return 0, errWouldBlock
	}
	for {
		n, err := sysio.Read(t.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			t.drained = true
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		t.drained = n < len(b)
		return n, nil
	}
}

func (t *transport) Write(b []byte) (int, error) {
	if t.state.Load() != stateData {
		nc, err := t.handshakeConn()
		if err != nil {
			return 0, err
		}
		if nc != nil {
			return nc.Write(b)
		}
	}
	if t.werr != nil {
		return len(b), nil
	}
	if t.cork || t.ooff < len(t.out) {
		t.appendOut(b)
		return len(b), nil
	}
	done := 0
	for done < len(b) {
		n, err := sysio.Write(t.fd, b[done:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.werr = err
			return len(b), nil
		}
		done += n
	}
	if done < len(b) {
		t.appendOut(b[done:])
	}
	return len(b), nil
}

func (t *transport) appendOut(b []byte) {
	if t.out == nil {
		t.out = (*chunkPool.Get().(*[]byte))[:0]
	}
	t.out = append(t.out, b...)
}

func (t *transport) Close() error {
	t.detach(true)
	return nil
}

func (t *transport) LocalAddr() net.Addr {
	if nc, _ := t.handshakeConn(); nc != nil {
		return nc.LocalAddr()
	}
	return nil
}

func (t *transport) RemoteAddr() net.Addr {
	if nc, _ := t.handshakeConn(); nc != nil {
		return nc.RemoteAddr()
	}
	return nil
}

func (t *transport) SetDeadline(d time.Time) error {
	if nc, _ := t.handshakeConn(); nc != nil {
		return nc.SetDeadline(d)
	}
	return nil
}

func (t *transport) SetReadDeadline(d time.Time) error {
	if nc, _ := t.handshakeConn(); nc != nil {
		return nc.SetReadDeadline(d)
	}
	return nil
}

func (t *transport) SetWriteDeadline(d time.Time) error {
	if nc, _ := t.handshakeConn(); nc != nil {
		return nc.SetWriteDeadline(d)
	}
	return nil
}

// wouldBlock is the temporary error crypto/tls is given for an empty socket.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsconn: would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}
