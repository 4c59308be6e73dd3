package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// Hostile use of the stateful commands (issue #21), through the binary
// against a real redis-server: more blockers than max_pinned_links, a
// subscriber that never reads under a flood of publishes, clients that
// leave in the middle of MULTI. Each checks the worker's memory (VmRSS).

// hostileRig is one nuthatch worker over one redis-server, with /metrics.
type hostileRig struct {
	proc    *harness.Proc
	backend *harness.Proc
	addr    string
	metrics string
}

func startHostile(t *testing.T, attrs string) *hostileRig {
	t.Helper()
	harness.Need(t, "redis-server")
	be := harness.Redis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes = 1
stats {
  listen   = ""
  interval = "100ms"
}
metrics {
  listen = %q
}
pool "h" {
  listen   = %q
  protocol = "redis"
  hash_tag = "{}"
  timeout  = "2s"
%s
  server "s0" { address = %q }
}
`, metrics, addr, attrs, be.Addr)
	p := harness.Nuthatch(t, hcl, addr, metrics)
	t.Cleanup(func() {
		if p.Exited() {
			t.Errorf("nuthatch died during the test; log:\n%s", p.Output())
		}
	})
	return &hostileRig{proc: p, backend: be, addr: addr, metrics: metrics}
}

// workerRSS is the resident memory of the only worker, in bytes.
func (h *hostileRig) workerRSS(t *testing.T) int64 {
	t.Helper()
	kids := harness.Children(h.proc.Cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("%d workers", len(kids))
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", kids[0]))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in %s", b)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// metric reads one sample of the pool's /metrics, -1 when absent.
func (h *hostileRig) metric(t *testing.T, name string) int64 {
	t.Helper()
	r, err := http.Get("http://" + h.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	m := regexp.MustCompile(`(?m)^` + name + `\{pool="h"[^}]*\} (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return int64(v)
}

// waitMetric waits until the metric is as wanted (the master polls the
// worker every 100 ms).
func (h *hostileRig) waitMetric(t *testing.T, name string, ok func(int64) bool) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := h.metric(t, name)
		if ok(v) || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replyConn is a connection read a reply at a time.
type replyConn struct {
	c   net.Conn
	buf []byte
}

// tryReply returns one reply if it arrives by the deadline; "" on a
// timeout, an error on EOF or a reset.
func (r *replyConn) tryReply(d time.Duration) (string, error) {
	rd := make([]byte, 512)
	r.c.SetReadDeadline(time.Now().Add(d))
	for {
		if n, _, err := resp.ReplyLen(r.buf, resp.DefaultLimits()); err != nil {
			return "", err
		} else if n > 0 {
			out := string(r.buf[:n])
			r.buf = r.buf[n:]
			return out, nil
		}
		n, err := r.c.Read(rd)
		r.buf = append(r.buf, rd[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "", nil
			}
			return "", err
		}
	}
}

func hostileCmd(args ...string) []byte {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return resp.AppendCommand(nil, bs)
}

// 10,000 clients block in BLPOP at once with max_pinned_links = 1000: the
// 9,000 past the limit get the limit's error at once, the 1,000 blocked
// are all woken by pushes from another client, the worker's memory stays
// bounded, and every link is given back.
func TestHostileTenThousandBlockers(t *testing.T) {
	const clients, limit = 10000, 1000
	h := startHostile(t, fmt.Sprintf("max_pinned_links = %d", limit))
	rss0 := h.workerRSS(t)
	conns := make([]*replyConn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		conns[i] = &replyConn{c: c}
		if _, err := c.Write(hostileCmd("BLPOP", fmt.Sprintf("q:%d", i), "0")); err != nil {
			t.Fatal(err)
		}
	}
	want := fmt.Sprintf("-ERR nuthatch: too many pinned connections (max_pinned_links %d)\r\n", limit)
	refused := map[int]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for len(refused) < clients-limit && time.Now().Before(deadline) {
		for i, rc := range conns {
			if refused[i] {
				continue
			}
			got, err := rc.tryReply(time.Millisecond)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if got == "" {
				continue
			}
			if got != want {
				t.Fatalf("client %d before any push: %q", i, got)
			}
			refused[i] = true
		}
	}
	if len(refused) != clients-limit {
		t.Fatalf("%d clients refused, want %d", len(refused), clients-limit)
	}
	rss := h.workerRSS(t)
	t.Logf("worker RSS: %d MiB idle, %d MiB with %d clients (%d blocked)", rss0>>20, rss>>20, clients, limit)
	if rss > 128<<20 {
		t.Errorf("worker RSS %d MiB with %d clients", rss>>20, clients)
	}
	if v := h.waitMetric(t, "nuthatch_pool_pinned_lent", func(v int64) bool { return v == limit }); v != limit {
		t.Errorf("pinned links lent: %d, want %d", v, limit)
	}
	if v := h.waitMetric(t, "nuthatch_pool_pinned_refused_total", func(v int64) bool { return v == clients-limit }); v != clients-limit {
		t.Errorf("pinned_refused: %d, want %d", v, clients-limit)
	}
	// Wake every blocked client from one pipelining client.
	pusher, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pusher.Close()
	var batch []byte
	for i := range conns {
		if !refused[i] {
			batch = append(batch, hostileCmd("RPUSH", fmt.Sprintf("q:%d", i), fmt.Sprintf("v%d", i))...)
		}
	}
	if _, err := pusher.Write(batch); err != nil {
		t.Fatal(err)
	}
	pr := &replyConn{c: pusher}
	for n := 0; n < limit; n++ {
		if got, err := pr.tryReply(10 * time.Second); err != nil || !strings.HasPrefix(got, ":") {
			t.Fatalf("RPUSH %d: %q %v", n, got, err)
		}
	}
	for i, rc := range conns {
		if refused[i] {
			continue
		}
		k, v := fmt.Sprintf("q:%d", i), fmt.Sprintf("v%d", i)
		wantPop := fmt.Sprintf("*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
		if got, err := rc.tryReply(10 * time.Second); got != wantPop {
			t.Fatalf("blocked client %d: %q %v, want %q", i, got, err, wantPop)
		}
	}
	if v := h.waitMetric(t, "nuthatch_pool_pinned_lent", func(v int64) bool { return v == 0 }); v != 0 {
		t.Errorf("pinned links lent after every pop: %d", v)
	}
}

// A subscriber that never reads while others publish about 50 MB/s to its
// channel for 3 s is closed at the pub/sub output limit, logged and
// counted; the worker's memory stays bounded, and its pinned link closes.
func TestHostileSlowSubscriber(t *testing.T) {
	h := startHostile(t, "")
	sub, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.(*net.TCPConn).SetReadBuffer(4096)
	sc := &replyConn{c: sub}
	sub.Write(hostileCmd("SUBSCRIBE", "flood"))
	if got, err := sc.tryReply(5 * time.Second); err != nil || !strings.Contains(got, "subscribe") {
		t.Fatalf("SUBSCRIBE: %q %v", got, err)
	}
	// A second subscriber that reads keeps getting messages.
	good, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	gc := &replyConn{c: good}
	good.Write(hostileCmd("SUBSCRIBE", "flood"))
	gc.tryReply(5 * time.Second)
	goodGot := make(chan int64, 1)
	go func() {
		var n int64
		b := make([]byte, 1<<20)
		for {
			good.SetReadDeadline(time.Now().Add(3 * time.Second))
			k, err := good.Read(b)
			n += int64(k)
			if err != nil {
				goodGot <- n
				return
			}
		}
	}()

	pub, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pc := &replyConn{c: pub}
	msg := hostileCmd("PUBLISH", "flood", strings.Repeat("x", 64<<10))
	const rate = 50 << 20 // bytes per second
	start := time.Now()
	var sent, peak int64
	for time.Since(start) < 3*time.Second {
		// 16 publishes, then wait for their replies and for the pace.
		for i := 0; i < 16; i++ {
			pub.Write(msg)
		}
		for i := 0; i < 16; i++ {
			if got, err := pc.tryReply(5 * time.Second); err != nil || !strings.HasPrefix(got, ":") {
				t.Fatalf("PUBLISH: %q %v", got, err)
			}
		}
		sent += 16 * int64(len(msg))
		if ahead := time.Duration(float64(sent)/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
		if sent%(4<<20) < 16*int64(len(msg)) {
			peak = max(peak, h.workerRSS(t))
		}
	}
	elapsed := time.Since(start)
	peak = max(peak, h.workerRSS(t))
	t.Logf("published %d MiB in %v (%.0f MB/s); worker RSS peak %d MiB", sent>>20, elapsed.Round(time.Millisecond),
		float64(sent)/elapsed.Seconds()/1e6, peak>>20)
	if peak > 160<<20 {
		t.Errorf("worker RSS peaked at %d MiB (the pub/sub hard limit is 32 MiB)", peak>>20)
	}
	if n := <-goodGot; n < sent/2 {
		t.Errorf("the reading subscriber got %d of %d bytes", n, sent)
	}
	// The slow subscriber was closed: after what its socket holds, EOF.
	sub.(*net.TCPConn).SetReadBuffer(1 << 20)
	io.Copy(io.Discard, sub)
	if v := h.waitMetric(t, "nuthatch_pool_pubsub_output_closed_total", func(v int64) bool { return v == 1 }); v != 1 {
		t.Errorf("pubsub_output_closed: %d, want 1", v)
	}
	if !strings.Contains(h.proc.Output(), "limit=client_output_pubsub_hard_limit") {
		t.Errorf("no log line for the closed subscriber; log:\n%s", h.proc.Output())
	}
	if v := h.waitMetric(t, "nuthatch_pool_pinned_open", func(v int64) bool { return v == 1 }); v != 1 {
		t.Errorf("pinned links open: %d, want 1 (the reading subscriber's)", v)
	}
}

// 1,000 clients open a transaction, queue a command (which pins a link)
// and disconnect without EXEC: every link is given back after DISCARD, the
// server holds no transaction, and the next transactions on those links
// start clean.
func TestHostileAbandonedTransactions(t *testing.T) {
	const clients = 1000
	h := startHostile(t, "")
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		rc := &replyConn{c: c}
		c.Write(append(hostileCmd("MULTI"), hostileCmd("INCR", "abandoned")...))
		for _, want := range []string{"+OK\r\n", "+QUEUED\r\n"} {
			if got, err := rc.tryReply(5 * time.Second); got != want {
				t.Fatalf("client %d: %q %v, want %q", i, got, err, want)
			}
		}
	}
	if v := h.waitMetric(t, "nuthatch_pool_pinned_lent", func(v int64) bool { return v == clients }); v != clients {
		t.Errorf("pinned links lent to the clients in MULTI: %d, want %d", v, clients)
	}
	for i, c := range conns {
		if i%2 == 0 {
			c.(*net.TCPConn).SetLinger(0) // a reset, not a FIN, for half of them
		}
		c.Close()
	}
	if v := h.waitMetric(t, "nuthatch_pool_pinned_lent", func(v int64) bool { return v == 0 }); v != 0 {
		t.Errorf("pinned links lent after the clients left: %d", v)
	}
	// On the server no connection is in MULTI, and nothing ran.
	d, err := net.Dial("tcp", h.backend.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dc := &replyConn{c: d}
	d.Write(hostileCmd("CLIENT", "LIST"))
	list, _ := dc.tryReply(5 * time.Second)
	if n := strings.Count(list, "flags=x"); n != 0 {
		t.Errorf("%d server connections still in MULTI", n)
	}
	d.Write(hostileCmd("GET", "abandoned"))
	if got, _ := dc.tryReply(5 * time.Second); got != "$-1\r\n" {
		t.Errorf("an abandoned transaction ran: %q", got)
	}
	// The idle links are clean for the next clients.
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		rc := &replyConn{c: c}
		c.Write(append(append(hostileCmd("MULTI"), hostileCmd("INCR", "fresh")...), hostileCmd("EXEC")...))
		for _, want := range []string{"+OK\r\n", "+QUEUED\r\n", fmt.Sprintf("*1\r\n:%d\r\n", i+1)} {
			if got, err := rc.tryReply(5 * time.Second); got != want {
				t.Fatalf("fresh client %d: %q %v, want %q", i, got, err, want)
			}
		}
		c.Close()
	}
	if v := h.waitMetric(t, "nuthatch_pool_pinned_reused_total", func(v int64) bool { return v >= 50 }); v < 50 {
		t.Errorf("pinned_reused: %d, want the fresh transactions on the given-back links", v)
	}
	t.Logf("worker RSS after %d abandoned transactions: %d MiB", clients, h.workerRSS(t)>>20)
}
