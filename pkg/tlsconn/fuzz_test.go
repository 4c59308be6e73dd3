package tlsconn

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzTransport feeds what a peer may send to a server connection: as the
// handshake (data[0] even) or, after a real handshake, as records in data
// mode (data[0] odd). Nothing may panic or hang; data mode reads end in
// plaintext, EAGAIN, EOF or an error, and an error stays.
func FuzzTransport(f *testing.F) {
	f.Add([]byte{0, 0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Add([]byte{1, 0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{1, 0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00})
	f.Add([]byte{0, '*', '1', '\r', '\n', '$', '4', '\r', '\n', 'P', 'I', 'N', 'G', '\r', '\n'})
	s, _ := serverTLS(f, false)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 1<<16 {
			return
		}
		fd, nc := pair(t)
		c, err := Accept(fd, s.Config(), NewLimiter(1, 1))
		if err != nil {
			t.Fatal(err)
		}
		if data[0]%2 == 0 {
			go func() { nc.Write(data[1:]); nc.(*net.UnixConn).CloseWrite() }()
			if err := c.Handshake(500 * time.Millisecond); err == nil {
				t.Fatal("a handshake from fuzz bytes succeeded")
			}
			return
		}
		cl := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
		go cl.Handshake()
		if err := c.Handshake(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		// The raw bytes go under the client's records.
		nc.Write(data[1:])
		buf := make([]byte, 4096)
		var last error
		for i := 0; i < 64; i++ {
			n, err := c.Read(buf)
			if n > len(buf) {
				t.Fatalf("read %d into %d", n, len(buf))
			}
			if err == unix.EAGAIN {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				if last != nil && err.Error() != last.Error() {
					t.Fatalf("error changed: %v then %v", last, err)
				}
				last = err
			}
			if n == 0 && err == nil {
				return // EOF
			}
		}
	})
}
