package proxy

import (
	"errors"
	"io"
	"net"
)

const (
	readBufInitial = 16 << 10
	// readBufKeep is the largest buffer kept after a big message has been
	// consumed; larger ones go back to the garbage collector.
	readBufKeep = 64 << 10
)

var errTooLarge = errors.New("proxy: message exceeds the size limit")

// readBuf is a connection's read buffer: data lives in buf[r:w].
type readBuf struct {
	buf   []byte
	r, w  int
	limit int // largest buffer allowed
}

func newReadBuf(limit int) *readBuf { return &readBuf{limit: limit} }

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
	size := min(max(2*b.len(), readBufInitial), limit)
	if size <= len(b.buf) {
		if b.r > 0 {
			b.w = copy(b.buf, b.bytes())
			b.r = 0
		}
		return nil
	}
	nb := make([]byte, size)
	b.w = copy(nb, b.bytes())
	b.r = 0
	b.buf = nb
	return nil
}

// fill reads once from conn, compacting or growing the buffer first.
func (b *readBuf) fill(conn net.Conn) error {
	if b.buf == nil {
		b.buf = make([]byte, readBufInitial)
	}
	if b.w == len(b.buf) {
		if b.r > 0 {
			b.w = copy(b.buf, b.bytes())
			b.r = 0
		} else {
			if len(b.buf) >= b.limit {
				return errTooLarge
			}
			nb := make([]byte, min(2*len(b.buf), b.limit))
			copy(nb, b.buf[:b.w])
			b.buf = nb
		}
	}
	n, err := conn.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
