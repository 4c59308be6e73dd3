package tlsconn

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
)

// pair is a non-blocking server descriptor and a blocking client conn.
func pair(t testing.TB) (int, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fds[0], true)
	f := os.NewFile(uintptr(fds[1]), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); nc.Close() })
	return fds[0], nc
}

func serverTLS(t testing.TB, clientCA bool) (*Server, *tlstest.CA) {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	leaf := ca.Leaf(t, "server", "localhost")
	f := ServerFiles{Cert: leaf.CertFile, Key: leaf.KeyFile, MinVersion: tls.VersionTLS12}
	if clientCA {
		f.ClientCA = ca.File
	}
	s, err := NewServer(f)
	if err != nil {
		t.Fatal(err)
	}
	return s, ca
}

// readAll reads the loop side until want bytes came, polling.
func readAll(t *testing.T, c *Conn, fd int, want int) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want {
		n, err := c.Read(buf)
		if err == unix.EAGAIN {
			if time.Now().After(deadline) {
				t.Fatalf("timed out with %d of %d bytes", len(got), want)
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			unix.Poll(pfd, 100)
			continue
		}
		if err != nil || n == 0 {
			t.Fatalf("read: %d %v", n, err)
		}
		got = append(got, buf[:n]...)
	}
	return got
}

func TestServerDataMode(t *testing.T) {
	s, ca := serverTLS(t, false)
	fd, nc := pair(t)
	c, err := Accept(fd, s.Config(), NewLimiter(2, 8))
	if err != nil {
		t.Fatal(err)
	}
	cl := tls.Client(nc, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
	errc := make(chan error, 1)
	go func() { errc <- cl.Handshake() }()
	if err := c.Handshake(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Nothing sent: would block, and again (not sticky).
	for i := 0; i < 3; i++ {
		if _, err := c.Read(make([]byte, 16)); err != unix.EAGAIN {
			t.Fatalf("empty read: %v", err)
		}
	}
	// Large and small, both ways.
	big := bytes.Repeat([]byte("x"), 300<<10)
	go cl.Write(big)
	if got := readAll(t, c, fd, len(big)); !bytes.Equal(got, big) {
		t.Fatal("large request garbled")
	}
	go func() {
		b := make([]byte, len(big)+10)
		io.ReadFull(cl, b)
		errc <- nil
		if !bytes.Equal(b[:5], []byte("+OK\r\n")) || !bytes.Equal(b[10:], big) {
			errc <- errors.New("reply garbled")
		}
		errc <- nil
	}()
	bufs := [][]byte{[]byte("+OK\r\n"), []byte("+OK\r\n"), big}
	sent := 0
	total := 10 + len(big)
	for sent < total {
		var rest [][]byte
		skip := sent
		for _, b := range bufs {
			if skip >= len(b) {
				skip -= len(b)
				continue
			}
			rest = append(rest, b[skip:])
			skip = 0
		}
		n, err := c.Writev(rest, nil)
		if err != nil && err != unix.EAGAIN {
			t.Fatal(err)
		}
		sent += n
		for c.Pending() {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			unix.Poll(pfd, 100)
			if err := c.Flush(); err != nil && err != unix.EAGAIN {
				t.Fatal(err)
			}
		}
	}
	<-errc
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// The peer's close_notify reads as EOF.
	cl.Close()
	buf := make([]byte, 16)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := c.Read(buf)
		if err == unix.EAGAIN && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if n != 0 || err != nil {
			t.Fatalf("after close_notify: %d %v", n, err)
		}
		break
	}
}

func TestHandshakeTimeout(t *testing.T) {
	s, _ := serverTLS(t, false)
	fd, nc := pair(t)
	c, err := Accept(fd, s.Config(), NewLimiter(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	nc.Write([]byte{0x16, 0x03}) // the start of a ClientHello, then nothing
	start := time.Now()
	err = c.Handshake(200 * time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("want a timeout, got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

func TestHandshakeGarbage(t *testing.T) {
	s, _ := serverTLS(t, false)
	fd, nc := pair(t)
	c, err := Accept(fd, s.Config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	go nc.Write([]byte("GET / HTTP/1.1\r\n\r\n*1\r\n$4\r\nPING\r\n"))
	if err := c.Handshake(2 * time.Second); err == nil {
		t.Fatal("garbage handshake succeeded")
	}
}

func TestAbortHandshake(t *testing.T) {
	s, _ := serverTLS(t, false)
	fd, _ := pair(t)
	c, err := Accept(fd, s.Config(), NewLimiter(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Handshake(10 * time.Second) }()
	time.Sleep(50 * time.Millisecond)
	c.Abort()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("aborted handshake succeeded")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("abort did not end the handshake")
	}
}

func TestMutualTLS(t *testing.T) {
	s, ca := serverTLS(t, true)
	client := ca.Leaf(t, "client", "app")
	for _, withCert := range []bool{true, false} {
		fd, nc := pair(t)
		c, err := Accept(fd, s.Config(), nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}
		if withCert {
			cfg.Certificates = []tls.Certificate{client.TLS}
		}
		cl := tls.Client(nc, cfg)
		go func() { cl.Handshake(); cl.Read(make([]byte, 1)) }()
		err = c.Handshake(5 * time.Second)
		if withCert && err != nil {
			t.Fatalf("with a client certificate: %v", err)
		}
		if !withCert && err == nil {
			t.Fatal("without a client certificate the handshake succeeded")
		}
		if withCert && c.State().PeerCertificates[0].Subject.CommonName != "app" {
			t.Fatal("peer certificate not seen")
		}
	}
}

func TestReloadSwapsCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	leaf := ca.Leaf(t, "server", "one")
	s, err := NewServer(ServerFiles{Cert: leaf.CertFile, Key: leaf.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		fd, nc := pair(t)
		c, _ := Accept(fd, s.Config(), nil)
		cl := tls.Client(nc, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
		go c.Handshake(5 * time.Second)
		if err := cl.Handshake(); err != nil {
			t.Fatal(err)
		}
		return cl.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := cn(); got != "one" {
		t.Fatalf("first cert %q", got)
	}
	ca.Leaf(t, "server", "two")
	if err := s.Reload(nil); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "two" {
		t.Fatalf("after reload %q", got)
	}
	// A broken key is refused and the material in use stays.
	os.WriteFile(leaf.KeyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	if err := s.Reload(nil); err == nil || !strings.Contains(err.Error(), leaf.KeyFile) {
		t.Fatalf("broken key: %v", err)
	}
	if got := cn(); got != "two" {
		t.Fatalf("after a failed reload %q", got)
	}
}

func TestLoadErrorsNameFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	a := ca.Leaf(t, "a", "a")
	b := ca.Leaf(t, "b", "b")
	if _, err := LoadKeyPair(a.CertFile, b.KeyFile); err == nil || !strings.Contains(err.Error(), a.CertFile) {
		t.Fatalf("mismatched pair: %v", err)
	}
	if _, err := LoadKeyPair(dir+"/none.crt", a.KeyFile); err == nil || !strings.Contains(err.Error(), "none.crt") {
		t.Fatalf("missing cert: %v", err)
	}
	if _, err := LoadCAs(a.KeyFile); err == nil || !strings.Contains(err.Error(), a.KeyFile) {
		t.Fatalf("key as CA: %v", err)
	}
	rsaLeaf := ca.Leaf(t, "r", "r", tlstest.Options{RSA: true})
	if _, err := LoadKeyPair(rsaLeaf.CertFile, rsaLeaf.KeyFile); err != nil {
		t.Fatalf("RSA: %v", err)
	}
}

func TestClientReloadSwapsCA(t *testing.T) {
	dir := t.TempDir()
	a := tlstest.NewCA(t, dir, "ca")
	leaf := a.Leaf(t, "client", "app")
	c, err := NewClient(ClientFiles{CA: a.File, Cert: leaf.CertFile, Key: leaf.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Config("h").RootCAs.Equal(a.Pool) || c.Config("h").ServerName != "h" {
		t.Fatal("first CA not in use")
	}
	b := tlstest.NewCA(t, dir, "ca") // same file, a new CA
	if err := c.Reload(nil); err != nil {
		t.Fatal(err)
	}
	if !c.Config("h").RootCAs.Equal(b.Pool) {
		t.Fatal("reloaded CA not in use")
	}
	os.WriteFile(a.File, []byte("junk"), 0o644)
	if err := c.Reload(nil); err == nil {
		t.Fatal("a broken CA was accepted")
	}
	if !c.Config("h").RootCAs.Equal(b.Pool) {
		t.Fatal("a failed reload changed the CA")
	}
	got, _ := c.Config("h").GetClientCertificate(nil)
	if got == nil || got.Leaf.Subject.CommonName != "app" {
		t.Fatal("client certificate lost")
	}
}
