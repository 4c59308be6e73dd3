package tlsconn

import (
	"sync/atomic"
	"time"
)

// Limiter bounds the handshakes of one event loop: at most pending are in
// progress (Begin refuses more), and at most concurrent compute at once
// (a handshake waiting for its peer holds no slot). A reconnect storm of
// thousands of clients costs milliseconds of CPU each on these slots, not
// on the loop.
type Limiter struct {
	slots   chan struct{}
	pending atomic.Int64
	max     int64
}

// NewLimiter returns a limiter of concurrent computing and pending
// handshakes.
func NewLimiter(concurrent, pending int) *Limiter {
	return &Limiter{slots: make(chan struct{}, max(1, concurrent)), max: int64(max(1, pending))}
}

// Begin counts a handshake in; false over the pending limit.
func (l *Limiter) Begin() bool {
	if l.pending.Add(1) > l.max {
		l.pending.Add(-1)
		return false
	}
	return true
}

// End counts a handshake out.
func (l *Limiter) End() { l.pending.Add(-1) }

// Pending is the number of handshakes in progress.
func (l *Limiter) Pending() int64 { return l.pending.Load() }

func (l *Limiter) acquire(deadline time.Time) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	if deadline.IsZero() {
		l.slots <- struct{}{}
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return errHandshakeTimeout
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-t.C:
		return errHandshakeTimeout
	}
}

func (l *Limiter) release() { <-l.slots }

type handshakeTimeout struct{}

func (handshakeTimeout) Error() string   { return "tlsconn: handshake timed out waiting for a slot" }
func (handshakeTimeout) Timeout() bool   { return true }
func (handshakeTimeout) Temporary() bool { return false }

var errHandshakeTimeout error = handshakeTimeout{}
