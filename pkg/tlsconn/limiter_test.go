package tlsconn

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := NewLimiter(1, 2)
	if !l.Begin() || !l.Begin() || l.Begin() {
		t.Fatal("pending limit of 2 not kept")
	}
	l.End()
	if !l.Begin() || l.Pending() != 2 {
		t.Fatalf("after End: pending %d", l.Pending())
	}
	// One computing slot: a second acquire waits, and gives up at the
	// handshake's deadline.
	if err := l.acquire(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.acquire(time.Now().Add(50 * time.Millisecond)); err == nil {
		t.Fatal("a second slot was given")
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	l.release()
	if err := l.acquire(time.Now().Add(time.Second)); err != nil {
		t.Fatal("slot not given back")
	}
}
