package tlsconn

import (
	"crypto/tls"
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkServerRoundTrip is one small request read and one small reply
// written by the loop side, as an unpipelined GET is (the client side, a
// plain tls.Conn, is in the figure too).
func BenchmarkServerRoundTrip(b *testing.B) {
	s, ca := serverTLS(b, false)
	fd, nc := pair(b)
	c, err := Accept(fd, s.Config(), NewLimiter(1, 1))
	if err != nil {
		b.Fatal(err)
	}
	cl := tls.Client(nc, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
	go cl.Handshake()
	if err := c.Handshake(5 * time.Second); err != nil {
		b.Fatal(err)
	}
	req := []byte("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
	reply := []byte("$5\r\nvalue\r\n")
	buf := make([]byte, 16<<10)
	got := make([]byte, len(reply))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cl.Write(req)
		for {
			n, err := c.Read(buf)
			if err == unix.EAGAIN {
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				unix.Poll(pfd, 100)
				continue
			}
			if err != nil || n != len(req) {
				b.Fatalf("read %d %v", n, err)
			}
			break
		}
		if _, err := c.Write(reply); err != nil {
			b.Fatal(err)
		}
		io.ReadFull(cl, got)
	}
}
