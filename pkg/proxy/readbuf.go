package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
)

const (
	readBufInitial = 16 << 10
	// readBufKeep is the largest buffer kept after a big message has been
	// consumed; larger ones go back to the garbage collector.
	readBufKeep = 256 << 10
	// clientReadBuf is where a client's buffer starts, and what it shrinks
	// back to when the client calms down: most clients send small requests
	// and sit idle in Read, where only this much is held for them.
	clientReadBuf = 4 << 10
	// hotReadBuf bounds the growth of a buffer whose reads keep filling it
	// (a client pipelining large requests), so that it reads bigger chunks.
	hotReadBuf = 256 << 10
	// calmReads small reads in a row shrink a big buffer back.
	calmReads = 8
)

var errTooLarge = errors.New("proxy: message exceeds the size limit")

// readBuf is a connection's read buffer: data lives in buf[r:w].
type readBuf struct {
	buf      []byte
	r, w     int
	limit    int  // largest buffer allowed
	small    int  // initial size, and what a cold buffer shrinks to
	lastFull bool // the last read filled all the room it had
	calm     int  // consecutive small reads while the buffer is big
	moved    int  // bytes copied within or between buffers (copies per byte, tests)
}

func newReadBuf(limit int) readBuf { return readBuf{limit: limit, small: readBufInitial} }

// newClientReadBuf starts small and adapts: it doubles while reads keep
// filling it and shrinks back once they do not.
func newClientReadBuf(limit int) readBuf {
	return readBuf{limit: limit, small: clientReadBuf}
}

func (b *readBuf) bytes() []byte { return b.buf[b.r:b.w] }
func (b *readBuf) len() int      { return b.w - b.r }

func (b *readBuf) consume(n int) {
	b.r += n
	if b.r == b.w {
		b.r, b.w = 0, 0
		if cap(b.buf) > readBufKeep {
			b.buf = nil
		}
	}
}

// want makes room for a message of need bytes (0 = unknown) at the read
// position, refusing sizes above limit. need is what the peer declared, not
// what it sent: the buffer grows towards it by at most doubling the bytes
// that arrived, so a header promising 500 MB costs nothing until the bytes
// come (fill keeps doubling as they do).
func (b *readBuf) want(need, limit int) error {
	if need > limit {
		return errTooLarge
	}
	if need <= len(b.buf)-b.r {
		return nil
	}
	// Geometric growth: a parser's need is often only a lower bound (one
	// more byte of an unterminated line), and growing to it exactly would
	// read a long line one byte at a time.
	size := min(max(2*b.len(), b.small), limit)
	if size <= len(b.buf) {
		if b.r > 0 {
			b.w = copy(b.buf, b.bytes())
			b.r = 0
			b.moved += b.w
		}
		return nil
	}
	nb := make([]byte, size)
	b.w = copy(nb, b.bytes())
	b.r = 0
	b.moved += b.w
	b.buf = nb
	return nil
}

// makeRoom prepares the buffer for a read: it compacts or grows it, and
// grows it faster while reads keep filling it (the peer sends faster than
// we take it). A full buffer at the limit is errTooLarge.
func (b *readBuf) makeRoom() error {
	if b.buf == nil {
		b.buf = getReadBuf(b.small)
	}
	switch {
	case b.lastFull && len(b.buf) < hotReadBuf && len(b.buf) < b.limit:
		b.grow(min(2*len(b.buf), b.limit))
	case b.w == len(b.buf) && b.r > 0:
		b.w = copy(b.buf, b.bytes())
		b.r = 0
		b.moved += b.w
	case b.w == len(b.buf):
		if len(b.buf) >= b.limit {
			return errTooLarge
		}
		b.grow(min(2*len(b.buf), b.limit))
	}
	return nil
}

// filled records a read of n bytes into room bytes of space; after a
// while of small reads a big buffer is given back.
func (b *readBuf) filled(n, room int) {
	b.lastFull = n == room
	if len(b.buf) > b.small && n < b.small/4 {
		b.calm++
	} else {
		b.calm = 0
	}
	if b.calm >= calmReads && b.len() <= b.small/2 {
		b.calm = 0
		nb := make([]byte, b.small)
		b.w = copy(nb, b.bytes())
		b.r = 0
		b.moved += b.w
		b.buf = nb
	}
}

// keep copies data, the unparsed tail of a read into a shared buffer, into
// this (empty) buffer.
func (b *readBuf) keep(data []byte) {
	if len(b.buf) < len(data) {
		b.release()
		b.buf = getReadBuf(max(b.small, 2*len(data)))
	}
	b.r, b.w = 0, copy(b.buf, data)
}

// release gives an empty buffer back, so that a connection between
// requests holds none.
func (b *readBuf) release() {
	if b.buf != nil && b.len() == 0 {
		putReadBuf(b.buf)
		b.buf = nil
		b.r, b.w = 0, 0
		b.lastFull, b.calm = false, 0
	}
}

// Buffers for partial requests are recycled by power-of-two size class,
// from clientReadBuf up to readBufKeep: clients pipelining large requests
// leave a partial one behind after most reads.
var readBufPools [bufClasses]sync.Pool

const (
	minBufShift = 12 // clientReadBuf
	bufClasses  = 7  // 4 KiB … 256 KiB (readBufKeep)
)

func bufClass(size int) int {
	c := 0
	for s := 1 << minBufShift; s < size; s <<= 1 {
		c++
	}
	return c
}

func getReadBuf(size int) []byte {
	c := bufClass(size)
	if c >= bufClasses {
		return make([]byte, size)
	}
	if v := readBufPools[c].Get(); v != nil {
		return *(v.(*[]byte))
	}
	return make([]byte, 1<<(minBufShift+c))
}

func putReadBuf(b []byte) {
	c := bufClass(len(b))
	if c < bufClasses && len(b) == 1<<(minBufShift+c) {
		readBufPools[c].Put(&b)
	}
}

// grow moves the unread bytes into a buffer of size.
func (b *readBuf) grow(size int) {
	nb := getReadBuf(size)
	b.w = copy(nb, b.bytes())
	b.r = 0
	b.moved += b.w
	putReadBuf(b.buf)
	b.buf = nb
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
