package proxy

import (
	"bufio"
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
