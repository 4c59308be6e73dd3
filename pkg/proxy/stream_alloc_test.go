package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
)

// The bytes allocated in the process for one GET of a 64 MiB value
// through the proxy, once the fake server's buffer for the proxy's link is
// warm: an upper bound of the proxy's buffers for the value. Framed whole
// in the link's read buffer and then copied into the reply (before
// streaming) it was 6.4 bytes per byte of the value; streaming, it is the
// 1 MiB window (0.016).
func TestLargeReplyAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB")
	}
	tp := startTestProxy(t, "redis", 1, "")
	val := strings.Repeat("x", 64<<20)
	mustSet(t, tp.addr, "big", val)
	buf := make([]byte, 1<<20)
	get := func(addr string) uint64 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReaderSize(c, 64<<10)
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		io.WriteString(c, respCmd("GET", "big"))
		line, _ := r.ReadString('\n')
		if _, err := io.CopyBuffer(io.Discard, io.LimitReader(r, int64(len(val)+2)), buf); err != nil || line != "$67108864\r\n" {
			t.Fatalf("%q %v", line, err)
		}
		runtime.ReadMemStats(&ms)
		return ms.TotalAlloc - before
	}
	get(tp.addr)
	proxied := get(tp.addr)
	per := float64(proxied) / float64(len(val))
	t.Logf("GET of a 64 MiB value: %d KiB allocated (%.3f bytes per byte of the value)", proxied>>10, per)
	if per > 0.1 {
		t.Errorf("the proxy allocated %.2f bytes per byte of a large value", per)
	}
}

// copiesPerByte is what the proxy copied in user space of one reply of
// size bytes to req (reply bytes from a link's read buffer into msgs, and
// within or between read buffers), per byte of the reply. The kernel's
// copies (the server socket into the proxy, the proxy into the client
// socket) are not counted.
func (tp *testProxy) copiesPerByte(t *testing.T, req string, size int, read func(r *bufio.Reader) error) float64 {
	t.Helper()
	count := func() (n int) {
		tp.px.lp.do(func() {
			n = tp.px.lp.copied
			for _, p := range tp.px.order {
				for _, s := range p.servers {
					s.eachConn(func(sc *serverConn) {
						if l := sc.current(); l != nil {
							n += l.rb.moved
						}
					})
				}
			}
		})
		return n
	}
	c, r := dialProxy(t, tp.addr)
	defer c.Close()
	before := count()
	io.WriteString(c, req)
	if err := read(r); err != nil {
		t.Fatal(err)
	}
	return float64(count()-before) / float64(size)
}

// Copies per byte of a 64 MiB value on its way through (issue #23: at
// most one): streamed, the value is read from the server socket into the
// window its client's write takes it from, so only what arrived with its
// header is copied (from the link's read buffer). A 256 KiB value, under
// the streaming threshold, is framed in the read buffer and copied once
// into its msg (plus the read buffer's growth).
func TestLargeReplyCopies(t *testing.T) {
	const size = 64 << 20
	val := strings.Repeat("y", size)
	readN := func(n int) func(r *bufio.Reader) error {
		return func(r *bufio.Reader) error {
			_, err := io.CopyN(io.Discard, r, int64(n))
			return err
		}
	}
	t.Run("redis", func(t *testing.T) {
		tp := startTestProxy(t, "redis", 1, "")
		mustSet(t, tp.addr, "big", val)
		mustSet(t, tp.addr, "mid", val[:256<<10])
		tp.copiesPerByte(t, respCmd("GET", "mid"), 256<<10, readN(len("$262144\r\n")+256<<10+2)) // warm the link
		big := tp.copiesPerByte(t, respCmd("GET", "big"), size, readN(len("$67108864\r\n")+size+2))
		mid := tp.copiesPerByte(t, respCmd("GET", "mid"), 256<<10, readN(len("$262144\r\n")+256<<10+2))
		t.Logf("redis GET: 64 MiB value %.4f copies per byte, 256 KiB value %.2f", big, mid)
		if big > 0.01 || mid > 4 {
			t.Errorf("copies per byte: %.4f (64 MiB), %.2f (256 KiB)", big, mid)
		}
	})
	t.Run("memcache", func(t *testing.T) {
		for _, coalesce := range []bool{true, false} {
			tp := startTestProxy(t, "memcache", 1, fmt.Sprintf("coalesce_gets = %v", coalesce))
			fc, fr := dialProxy(t, tp.backends[0].Addr()) // past the proxy's 1 MiB item limit
			fmt.Fprintf(fc, "set big 0 0 %d\r\n%s\r\n", size, val)
			if line, err := fr.ReadString('\n'); err != nil || line != "STORED\r\n" {
				t.Fatalf("%q %v", line, err)
			}
			reply := len(fmt.Sprintf("VALUE big 0 %d\r\n", size)) + size + 2 + 5
			tp.copiesPerByte(t, "get big\r\n", size, readN(reply)) // warm the link
			one := tp.copiesPerByte(t, "get big\r\n", size, readN(reply))
			two := tp.copiesPerByte(t, "get big\r\nget big\r\n", 2*size, readN(2*reply))
			t.Logf("memcache get (coalesce_gets = %v): 64 MiB value %.4f copies per byte; two gets pipelined %.4f", coalesce, one, two)
			if one > 0.01 || two > 0.01 {
				t.Errorf("copies per byte: %.4f, %.4f", one, two)
			}
		}
	})
}
