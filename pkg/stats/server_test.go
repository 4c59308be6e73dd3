package stats

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func startStats(t *testing.T, render func() []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeStats(ln, render) }()
	t.Cleanup(func() {
		ln.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeStats: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeStats did not return after the listener closed")
		}
	})
	return ln.Addr().String()
}

func TestServeStatsWritesAndCloses(t *testing.T) {
	var n atomic.Int64
	addr := startStats(t, func() []byte {
		n.Add(1)
		return []byte("{\"a\":1}\n")
	})
	for range 3 {
		if got := readStats(t, addr); string(got) != "{\"a\":1}\n" {
			t.Fatalf("got %q", got)
		}
	}
	if n.Load() != 3 {
		t.Errorf("render called %d times, want once per connection", n.Load())
	}
}

// A client that writes something first (echo stats | nc) still gets the
// whole document rather than a reset.
func TestServeStatsClientThatWrites(t *testing.T) {
	doc := bytes.Repeat([]byte("x"), 1<<20)
	addr := startStats(t, func() []byte { return doc })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(bytes.Repeat([]byte("stats\n"), 1000)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the server finish writing first
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(doc) {
		t.Errorf("read %d bytes, want %d", len(got), len(doc))
	}
}

// A client that never reads does not hold up the others.
func TestServeStatsSlowClient(t *testing.T) {
	doc := bytes.Repeat([]byte("y"), 16<<20) // more than the socket buffers hold
	addr := startStats(t, func() []byte { return doc })
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != len(doc) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("second client waited %v", d)
	}
}
