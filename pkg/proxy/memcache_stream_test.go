package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func mcSet(t testing.TB, addr, key, value string) {
	t.Helper()
	c, r := dialProxy(t, addr)
	defer c.Close()
	fmt.Fprintf(c, "set %s 0 0 %d\r\n%s\r\n", key, len(value), value)
	if line, err := r.ReadString('\n'); err != nil || line != "STORED\r\n" {
		t.Fatalf("set %s: %q %v", key, line, err)
	}
}

// readSlowly reads total bytes in small pieces, slowly at first.
func readSlowly(t testing.TB, r *bufio.Reader, total int) []byte {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, 128<<10)
	for got.Len() < total {
		n, err := r.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got.Len(), total, err)
		}
		got.Write(buf[:n])
		if got.Len() < 2<<20 {
			time.Sleep(time.Millisecond)
		}
	}
	return got.Bytes()
}

// Large memcached values stream as Redis bulks do: a client pipelining
// retrievals of several 1 MiB values (one key or many per request, hits
// and misses, coalesced into one get line or not) and reading nothing
// makes the proxy hold about a window, and then, reading slowly, gets
// every reply whole and in order.
func TestMemcacheStreamOrder(t *testing.T) {
	for _, coalesce := range []bool{true, false} {
		t.Run(fmt.Sprintf("coalesce_gets=%v", coalesce), func(t *testing.T) {
			tp := startTestProxy(t, "memcache", 1, fmt.Sprintf("coalesce_gets = %v", coalesce))
			vals := map[string]string{"small": "s"}
			for i := 0; i < 6; i++ {
				k := fmt.Sprintf("v%d", i)
				vals[k] = randValue(int64(10+i), 1<<20-i*7)
				mcSet(t, tp.addr, k, vals[k])
			}
			mcSet(t, tp.addr, "small", "s")
			reqs := [][]string{{"small"}, {"v0", "missing", "v1", "small", "v2"}, {"small", "v3"}, {"missing"},
				{"v4"}, {"v0", "v5"}, {"small"}}
			var in, want strings.Builder
			for _, keys := range reqs {
				in.WriteString("get " + strings.Join(keys, " ") + "\r\n")
				for _, k := range keys {
					if v, ok := vals[k]; ok {
						fmt.Fprintf(&want, "VALUE %s 0 %d\r\n%s\r\n", k, len(v), v)
					}
				}
				want.WriteString("END\r\n")
			}
			c, r := dialProxy(t, tp.addr)
			c.(*net.TCPConn).SetReadBuffer(64 << 10)
			io.WriteString(c, in.String())
			waitFor(t, "a paused stream", func() bool { _, _, p := tp.loopState(); return p > 0 })
			time.Sleep(50 * time.Millisecond)
			if held, _, _ := tp.loopState(); held > 2*streamWindow+2<<20 {
				t.Errorf("the proxy holds %d KiB for a client that does not read", held>>10)
			}
			got := readSlowly(t, r, want.Len())
			if string(got) != want.String() {
				g, w := string(got), want.String()
				i := 0
				for i < len(g) && i < len(w) && g[i] == w[i] {
					i++
				}
				t.Fatalf("replies differ at byte %d of %d: got %q, want %q", i, len(w), g[i:min(len(g), i+40)], w[i:min(len(w), i+40)])
			}
			waitFor(t, "the streams to end", func() bool { h, s, _ := tp.loopState(); return s == 0 && h == 0 })
			tp.checkServes(t, "memcache")
		})
	}
}

// Coalesced gets of several clients: each gets exactly its own values
// while one of them, not reading, holds a stream paused; and a client
// that goes away in the middle of a value leaves the link serving.
func TestMemcacheStreamCoalescedClients(t *testing.T) {
	tp := startTestProxy(t, "memcache", 1, "")
	big := randValue(20, 1<<20)
	mcSet(t, tp.addr, "big", big)
	mcSet(t, tp.addr, "small", "s")
	slow, _ := dialProxy(t, tp.addr)
	slow.(*net.TCPConn).SetReadBuffer(16 << 10)
	io.WriteString(slow, strings.Repeat("get big\r\n", 8))
	waitFor(t, "a paused stream", func() bool { _, _, p := tp.loopState(); return p > 0 })
	wantBig := fmt.Sprintf("VALUE big 0 %d\r\n%s\r\nEND\r\n", len(big), big)
	for i := 0; i < 20; i++ {
		c, r := dialProxy(t, tp.addr)
		t0 := time.Now()
		io.WriteString(c, "get small\r\nget big small\r\nget nothing\r\n")
		want := "VALUE small 0 1\r\ns\r\nEND\r\n" + wantBig[:len(wantBig)-5] + "VALUE small 0 1\r\ns\r\nEND\r\nEND\r\n"
		got := make([]byte, len(want))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
			t.Fatalf("client %d: %d bytes, %v", i, len(got), err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("client %d waited %v behind a paused stream", i, d)
		}
		c.Close()
	}
	slow.Close()
	waitFor(t, "the stream to be discarded", func() bool { h, s, _ := tp.loopState(); return s == 0 && h == 0 })
	tp.checkServes(t, "memcache")
}

// A server that dies while a coalesced retrieval streams: the client
// that had part of a value is closed, the others get the error or their
// values, never a cut value taken as whole.
func TestMemcacheStreamServerFails(t *testing.T) {
	tp := startTestProxy(t, "memcache", 1, "")
	big := randValue(21, 1<<20)
	mcSet(t, tp.addr, "big", big)
	c, r := dialProxy(t, tp.addr)
	c.(*net.TCPConn).SetReadBuffer(16 << 10)
	io.WriteString(c, strings.Repeat("get big\r\n", 8)+"quit\r\n")
	waitFor(t, "a paused stream", func() bool { _, _, p := tp.loopState(); return p > 0 })
	tp.backends[0].Stop()
	// Every request is answered (or the client closed): never a wait.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(r)
	if err != nil && !isReset(err) {
		t.Fatalf("after %d bytes: %v", len(got), err)
	}
	whole := fmt.Sprintf("VALUE big 0 %d\r\n%s\r\nEND\r\n", len(big), big)
	// Whole values, then (if the server went before sending them all)
	// error lines or the end of the connection within a value.
	rest := string(got)
	for strings.HasPrefix(rest, whole) {
		rest = rest[len(whole):]
	}
	for strings.HasPrefix(rest, "SERVER_ERROR ") {
		i := strings.Index(rest, "\r\n")
		rest = rest[i+2:]
	}
	if rest != "" && (!strings.HasPrefix(whole, rest) || len(rest) == len(whole)) {
		t.Fatalf("after the whole replies, %d bytes: %q", len(rest), rest[:min(40, len(rest))])
	}
	waitFor(t, "the stream to end", func() bool { h, s, _ := tp.loopState(); return s == 0 && h == 0 })
}
