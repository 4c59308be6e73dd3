package listener

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

func TestTCPReusePort(t *testing.T) {
	a, err := Open(config.Address{Network: "tcp", Addr: "127.0.0.1:0"}, Options{Backlog: 16, ReusePort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ln, err := FromFile(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	// A second SO_REUSEPORT socket on the same port: one per worker.
	b, err := Open(config.Address{Network: "tcp", Addr: addr}, Options{ReusePort: true})
	if err != nil {
		t.Fatalf("second reuseport socket on %s: %v", addr, err)
	}
	b.Close()
	// Without SO_REUSEPORT the port is taken.
	if c, err := Open(config.Address{Network: "tcp", Addr: addr}, Options{}); err == nil {
		c.Close()
		t.Fatal("a plain socket bound a port in use")
	}
	if v, err := unix.GetsockoptInt(int(a.Fd()), unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil || v != 1 {
		t.Fatalf("SO_REUSEPORT = %d, %v", v, err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestUnixSocketModeAndStaleFile(t *testing.T) {
	dir, err := os.MkdirTemp("", "ls") // sun_path is short
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")
	addr := config.Address{Network: "unix", Addr: path, Perm: 0o660}
	f, err := Open(addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, %v", fi.Mode().Perm(), err)
	}
	// In use: refused.
	ln, _ := FromFile(f)
	if g, err := Open(addr, Options{}); err == nil {
		g.Close()
		t.Fatal("bound a unix socket that is in use")
	}
	ln.Close()
	f.Close()
	// Stale (nobody listens): replaced.
	g, err := Open(addr, Options{})
	if err != nil {
		t.Fatalf("stale socket file not replaced: %v", err)
	}
	g.Close()
}

func TestBadAddresses(t *testing.T) {
	for _, a := range []config.Address{
		{Network: "tcp", Addr: "127.0.0.1"},
		{Network: "tcp", Addr: "127.0.0.1:99999"},
		{Network: "sctp", Addr: "127.0.0.1:1"},
	} {
		if f, err := Open(a, Options{}); err == nil {
			f.Close()
			t.Errorf("%v accepted", a)
		}
	}
}
