package proxy

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// A length the peer declared is a promise, not data: the buffer grows with
// what actually arrived (at most doubling), never to the declared size at
// once. Before the fix want(500 MB) allocated 500 MB for a 20-byte header.
func TestReadBufWantGrowsWithData(t *testing.T) {
	const limit = 512 << 20
	for _, tc := range []struct {
		name     string
		buffered int
		need     int
		maxCap   int
	}{
		{"huge declared bulk", 20, 500 << 20, readBufInitial},
		{"declared just over the buffer", readBufInitial, readBufInitial + 10, 2 * readBufInitial},
		{"large buffered data", 1 << 20, 400 << 20, 2 << 20},
		{"need below the buffer", 100, 200, readBufInitial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newReadBuf(limit)
			b.buf = make([]byte, max(readBufInitial, tc.buffered))
			b.w = tc.buffered
			if err := b.want(tc.need, limit); err != nil {
				t.Fatal(err)
			}
			if cap(b.buf) > tc.maxCap {
				t.Fatalf("want(%d) with %d bytes buffered grew the buffer to %d bytes, want at most %d",
					tc.need, tc.buffered, cap(b.buf), tc.maxCap)
			}
			if b.len() != tc.buffered {
				t.Fatalf("buffered bytes %d after want, want %d", b.len(), tc.buffered)
			}
		})
	}
}

func TestReadBufWantRefusesOverLimit(t *testing.T) {
	b := newReadBuf(1 << 20)
	if err := b.want(2<<20, 1<<20); err != errTooLarge {
		t.Fatalf("want over the limit: %v", err)
	}
}

// A message larger than the initial buffer is still read whole, by
// successive doublings as the bytes arrive.
func TestReadBufReadsLargeMessage(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB
	a, b := net.Pipe()
	go func() {
		for p := msg; len(p) > 0; p = p[min(len(p), 7000):] {
			a.Write(p[:min(len(p), 7000)])
		}
		a.Close()
	}()
	rb := newReadBuf(8 << 20)
	for rb.len() < len(msg) {
		if err := rb.want(len(msg), 8<<20); err != nil {
			t.Fatal(err)
		}
		if err := rb.fill(b); err != nil {
			if err == io.EOF {
				break
			}
			t.Fatal(err)
		}
	}
	if !bytes.Equal(rb.bytes(), msg) {
		t.Fatalf("read %d bytes, want %d", rb.len(), len(msg))
	}
	if cap(rb.buf) > 2*len(msg) {
		t.Fatalf("buffer of %d bytes for a %d-byte message", cap(rb.buf), len(msg))
	}
}

// A parser that only knows "one more byte" (an unterminated line) must not
// make the buffer grow byte by byte: reading a 100 KiB line took thousands
// of one-byte reads before this was geometric.
func TestReadBufWantGrowsGeometrically(t *testing.T) {
	b := newReadBuf(1 << 20)
	b.buf = make([]byte, readBufInitial)
	b.w = len(b.buf) // full of one unterminated line
	grows := 0
	for b.len() < 200<<10 {
		before := len(b.buf)
		if err := b.want(b.len()+1, 1<<20); err != nil {
			t.Fatal(err)
		}
		if len(b.buf) <= b.len() {
			t.Fatalf("no room made: buf %d, data %d", len(b.buf), b.len())
		}
		if len(b.buf) != before {
			grows++
		}
		b.w = len(b.buf) // the next read fills it
	}
	if grows > 6 {
		t.Fatalf("%d reallocations to reach 200 KiB", grows)
	}
}

// A client's buffer starts small, doubles while reads keep filling it (a
// pipelining client is read in bigger chunks), and shrinks back after a run
// of small reads, so that an idle client holds little.
func TestClientReadBufAdapts(t *testing.T) {
	srv, cli := net.Pipe()
	defer srv.Close()
	defer cli.Close()
	b := newClientReadBuf(1 << 20)
	// send writes n bytes (n < 0: exactly the room the next read has) and
	// lets the buffer read and consume them in one read.
	send := func(n int) {
		if n < 0 {
			n = nextRoom(&b)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			cli.Write(make([]byte, n))
		}()
		if err := b.fill(srv); err != nil {
			t.Fatal(err)
		}
		<-done
		b.consume(b.len())
	}
	send(1) // allocates the small buffer
	if len(b.buf) != clientReadBuf {
		t.Fatalf("starts at %d bytes", len(b.buf))
	}
	for i := 0; i < 6; i++ {
		send(-1) // fills all the room: the peer sends faster than we read
	}
	if len(b.buf) < 64<<10 {
		t.Fatalf("busy client still reads into %d bytes", len(b.buf))
	}
	for i := 0; i < calmReads; i++ {
		send(10)
	}
	if len(b.buf) != clientReadBuf {
		t.Fatalf("calm client keeps %d bytes", len(b.buf))
	}
}

// nextRoom is the room the next fill of b will read into.
func nextRoom(b *readBuf) int {
	size := len(b.buf)
	if b.lastFull && size < hotReadBuf {
		size *= 2
	}
	return size - b.len()
}

// fill reads once from conn the way the loop reads a socket: make room,
// read, record how full the read was.
func (b *readBuf) fill(conn net.Conn) error {
	if err := b.makeRoom(); err != nil {
		return err
	}
	room := len(b.buf) - b.w
	n, err := conn.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		b.filled(n, room)
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}
