package proxy

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/sysio"
	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn"
)

// TLS sits at the narrowest seam of the engine: where a client or a link
// reads and writes its socket. A connection with a tlsconn.Conn reads and
// writes through it (read(2)/write(2) semantics, EAGAIN included), so the
// parsing, routing and back-pressure code is that of plaintext. The
// handshake runs on a goroutine before the descriptor joins the loop.

// Bounds of one loop's handshakes: at most maxPendingHandshakes in
// progress (more are closed on accept), and one fewer computing at once
// than the worker has Ps, so that a reconnect storm never takes the P the
// loop needs: measured in-process with 8 slots, 1,000 handshakes starved
// plaintext clients of the same loop (p99 0.25 ms -> 920 ms). Workers are
// one per core, so the storm still gets every core.
func handshakeSlots() int { return max(1, runtime.GOMAXPROCS(0)-1) }

const maxPendingHandshakes = 1024

// setupTLS loads the pool's TLS material (validated by the configuration,
// read again here).
func (p *pool) setupTLS() error {
	if t := p.cfg.TLS; t != nil {
		s, err := tlsconn.NewServer(tlsconn.ServerFiles{Read: filesOf(p.tlsFiles), Cert: t.Cert, Key: t.Key, ClientCA: t.ClientCA, MinVersion: t.MinVersion})
		if err != nil {
			return err
		}
		p.tlsServer = s
		if p.lp.handshakes == nil {
			p.lp.handshakes = tlsconn.NewLimiter(handshakeSlots(), maxPendingHandshakes)
			p.lp.tlsScratch = make([]byte, 0, tlsconn.ChunkSize)
		}
	}
	if t := p.cfg.ServerTLS; t != nil {
		c, err := tlsconn.NewClient(tlsconn.ClientFiles{Read: filesOf(p.tlsFiles), CA: t.CA, Cert: t.Cert, Key: t.Key, ServerName: t.ServerName, MinVersion: t.MinVersion})
		if err != nil {
			return err
		}
		p.tlsClient = c
	}
	return nil
}

// acceptTLS starts the handshake of a new client; the descriptor joins the
// loop once it is done.
func (p *pool) acceptTLS(c *clientConn) bool {
	lim := p.lp.handshakes
	if !lim.Begin() {
		p.stats.TLSHandshakeFailed.Add(1)
		if p.limitLog.allow(p.lp.now) {
			p.log.WithField("pending", lim.Pending()).Warn("too many TLS handshakes in progress, refusing a client")
		}
		return false
	}
	tc, err := tlsconn.Accept(c.fd, p.tlsServer.Config(), lim)
	if err != nil {
		lim.End()
		p.log.WithError(err).Warn("accept failed")
		return false
	}
	c.tls, c.handshaking = tc, true
	timeout := p.cfg.TLS.HandshakeTimeout
	go func() {
		err := tc.Handshake(timeout)
		lim.End()
		if !p.lp.post(func() { c.handshaken(err) }) {
			tc.Abort()
		}
	}()
	return true
}

// handshaken: the client's handshake ended; on the loop.
func (c *clientConn) handshaken(err error) {
	if c.closed {
		return
	}
	p := c.pool
	c.handshaking = false
	if err != nil {
		p.stats.TLSHandshakeFailed.Add(1)
		p.log.WithField("client", c.remoteAddr()).WithError(err).Debug("TLS handshake failed")
		c.tls = nil // nothing to say to it in TLS
		c.close()
		return
	}
	p.stats.TLSHandshakes.Add(1)
	if err := c.lp.register(c.fd, c); err != nil {
		c.close()
		return
	}
	// Bytes that came with the handshake's last flight may be buffered in
	// the tls.Conn already: read as if an edge said so.
	c.readable = true
	c.serve()
}

// isTLS reports a client that speaks TLS: its connection state lives in
// this process (a tls.Conn) and cannot be handed to another.
func (c *clientConn) isTLS() bool { return c.tls != nil }

func (c *clientConn) read(b []byte) (int, error) {
	if c.tls != nil {
		return c.tls.Read(b)
	}
	return sysio.Read(c.fd, b)
}

func (c *clientConn) write(b []byte) (int, error) {
	if c.tls != nil {
		return c.tls.Write(b)
	}
	return sysio.Write(c.fd, b)
}

func (c *clientConn) writev(bufs [][]byte, iov []unix.Iovec) (int, error) {
	if c.tls != nil {
		return c.tls.Writev(bufs, c.lp.tlsScratch)
	}
	return sysio.Writev(c.fd, bufs, iov)
}

// tlsBlocked flushes the ciphertext a full socket left over; true while
// some is still waiting (the caller waits for EPOLLOUT).
func (c *clientConn) tlsBlocked() (blocked bool, err error) {
	if c.tls == nil || !c.tls.Pending() {
		return false, nil
	}
	if err := c.tls.Flush(); err != nil && !isAgain(err) {
		return false, err
	}
	return c.tls.Pending(), nil
}

// closeTLS ends the client's TLS session before its descriptor closes.
func (c *clientConn) closeTLS() {
	if c.tls == nil {
		return
	}
	if c.handshaking {
		c.tls.Abort()
	} else {
		c.tls.CloseNotify()
	}
}

// dialTLS runs the handshake of a new link on its dialer goroutine and
// returns the loop's descriptor of it.
func (l *link) dialTLS(conn net.Conn, addr string) (*tlsconn.Conn, error) {
	p := l.sc.srv.pool
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	tc := tlsconn.Connect(conn, p.tlsClient.Config(host))
	timeout := p.cfg.Timeout
	if timeout <= 0 {
		timeout = linkHandshakeTimeout
	}
	if err := tc.Handshake(timeout); err != nil {
		return nil, err
	}
	return tc, nil
}

// linkHandshakeTimeout bounds a backend handshake in a pool without a
// timeout.
const linkHandshakeTimeout = 10 * time.Second

func (l *link) sysRead(b []byte) (int, error) {
	if l.tls != nil {
		return l.tls.Read(b)
	}
	return sysio.Read(l.fd, b)
}

func (l *link) sysWrite(b []byte) (int, error) {
	if l.tls != nil {
		return l.tls.Write(b)
	}
	return sysio.Write(l.fd, b)
}

// tlsPending: ciphertext waits for the socket.
func (l *link) tlsPending() bool { return l.tls != nil && l.tls.Pending() }

// filesOf reads from the contents the configuration was checked with;
// a file not among them is read from disk.
func filesOf(files map[string][]byte) tlsconn.ReadFunc {
	return func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return os.ReadFile(name)
	}
}

// ReloadTLS builds every pool's TLS material again from files (contents
// by path, read by the master; missing ones from disk): handshakes that
// start afterwards use the new material, open connections keep theirs. A
// pool whose files fail keeps its material, and the first error is
// returned.
func (px *Proxy) ReloadTLS(files map[string][]byte) error {
	var first error
	read := filesOf(files)
	for _, p := range px.order {
		if p.tlsServer != nil {
			if err := p.tlsServer.Reload(read); err != nil && first == nil {
				first = fmt.Errorf("proxy: pool %s: %w", p.cfg.Name, err)
			}
		}
		if p.tlsClient != nil {
			if err := p.tlsClient.Reload(read); err != nil && first == nil {
				first = fmt.Errorf("proxy: pool %s: %w", p.cfg.Name, err)
			}
		}
	}
	return first
}

// SetSessionTicketKeys gives every TLS pool the keys its session tickets
// are sealed with (the first) and opened with (all): workers given the
// same keys resume each other's sessions.
func (px *Proxy) SetSessionTicketKeys(keys [][32]byte) {
	for _, p := range px.order {
		if p.tlsServer != nil {
			p.tlsServer.SetSessionTicketKeys(keys)
		}
	}
}
