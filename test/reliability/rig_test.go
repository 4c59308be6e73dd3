// Package reliability tests what happens to nuthatch when clients, backends
// and processes misbehave: limits, fault injection, disconnects, process
// faults under load, secrets. The heavy soak test runs only with
// NUTHATCH_SOAK=1 (make soak).
package reliability

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
)

// rig is an in-process proxy serving pool "p" in front of fake backends.
type rig struct {
	proto    string
	px       *proxy.Proxy
	addr     string
	cfg      *config.Pool
	backends []*fakeserver.Server
	ring     *hashkit.Ring
	hash     hashkit.HashFunc
	logs     *logSink
}

// logSink keeps the proxy's log lines at warning level and above.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (s *logSink) Fire(e *logrus.Entry) error {
	line, _ := e.String()
	s.mu.Lock()
	s.lines = append(s.lines, line)
	s.mu.Unlock()
	return nil
}

func (s *logSink) grep(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func newRig(t testing.TB, proto string, n int, attrs string) *rig {
	t.Helper()
	fp := fakeserver.Redis
	if proto == "memcache" {
		fp = fakeserver.Memcache
	}
	r := &rig{proto: proto, logs: &logSink{}}
	var b strings.Builder
	fmt.Fprintf(&b, "pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = %q\n%s\n", proto, attrs)
	for i := 0; i < n; i++ {
		be := fakeserver.New(t, fp)
		r.backends = append(r.backends, be)
		fmt.Fprintf(&b, "  server %q {}\n", be.Addr())
	}
	b.WriteString("}\n")
	cfg, err := config.Parse([]byte(b.String()), "rig.hcl")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	r.cfg = cfg.Pools[0]
	var nodes []hashkit.Node
	for _, s := range r.cfg.Servers {
		nodes = append(nodes, hashkit.Node{Name: s.PlacementName(), Weight: s.Weight})
	}
	if r.ring, err = hashkit.Build(r.cfg.Distribution, nodes, nil); err != nil {
		t.Fatal(err)
	}
	if r.hash, err = hashkit.Hash(r.cfg.Hash); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.AddHook(r.logs)
	r.px, err = proxy.New(cfg, logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.px.Start()
	if err := r.px.Serve("p", ln); err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	t.Cleanup(r.px.Close)
	return r
}

// owner is the index of the backend that owns key with every server live.
func (r *rig) owner(key string) int { return r.ring.Pick(r.hash([]byte(key))) }

// keyOn returns a key with the given prefix owned by backend i.
func (r *rig) keyOn(prefix string, i int) string {
	for n := 0; ; n++ {
		k := fmt.Sprintf("%s%d", prefix, n)
		if r.owner(k) == i {
			return k
		}
	}
}

func (r *rig) dial(t testing.TB) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

// waitIdle waits until the proxy has no client and no request queued.
func (r *rig) waitIdle(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := r.px.Snapshot().Pools[0]
		var q int64
		for _, sv := range s.Servers {
			q += sv.InQueue + sv.OutQueue
		}
		if s.ClientConnections == 0 && q == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not idle: client_connections %d, queued %d", s.ClientConnections, q)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// client is a raw protocol client.
type client struct {
	net.Conn
	r *bufio.Reader
}

func (c *client) send(t testing.TB, s string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// redisReply reads one RESP reply (bulk, status, error, integer, or an
// array of those) as raw bytes.
func (c *client) redisReply() (string, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out bytes.Buffer
	if err := readRESP(c.r, &out); err != nil {
		return out.String(), err
	}
	return out.String(), nil
}

func readRESP(r *bufio.Reader, out *bytes.Buffer) error {
	line, err := r.ReadString('\n')
	out.WriteString(line)
	if err != nil {
		return err
	}
	if len(line) < 3 {
		return fmt.Errorf("short line %q", line)
	}
	var n int
	switch line[0] {
	case '$':
		fmt.Sscanf(line[1:], "%d", &n)
		if n < 0 {
			return nil
		}
		b := make([]byte, n+2)
		_, err := io.ReadFull(r, b)
		out.Write(b)
		return err
	case '*':
		fmt.Sscanf(line[1:], "%d", &n)
		for i := 0; i < n; i++ {
			if err := readRESP(r, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// mcReply reads one memcached reply: a line, or VALUE blocks up to END.
func (c *client) mcReply() (string, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		out.WriteString(line)
		if err != nil {
			return out.String(), err
		}
		if !strings.HasPrefix(line, "VALUE ") {
			return out.String(), nil
		}
		f := strings.Fields(line)
		var n int
		fmt.Sscanf(f[3], "%d", &n)
		b := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, b); err != nil {
			return out.String(), err
		}
		out.Write(b)
	}
}

func (c *client) reply(proto string) (string, error) {
	if proto == "memcache" {
		return c.mcReply()
	}
	return c.redisReply()
}

func redisCmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

// echoGet is a GET of an echo key and the reply it must get.
func echoGet(proto, key string) (req, want string) {
	if proto == "memcache" {
		return "get " + key + "\r\n", fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\nEND\r\n", key, len(key), key)
	}
	return redisCmd("GET", key), bulk(key)
}

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// latency measures n sequential echo GETs on a fresh connection and
// returns the p50 and p99.
func (r *rig) latency(t testing.TB, n int) (p50, p99 time.Duration) {
	t.Helper()
	c := r.dial(t)
	defer c.Close()
	d := make([]time.Duration, n)
	for i := range d {
		req, want := echoGet(r.proto, fmt.Sprintf("echo:lat:%d", i))
		start := time.Now()
		c.send(t, req)
		got, err := c.reply(r.proto)
		d[i] = time.Since(start)
		if err != nil || got != want {
			t.Fatalf("well-behaved client: %q, %v (want %q)", got, err, want)
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[n/2], d[n*99/100]
}

// goroutinesBack waits until the goroutine count is at most base.
func goroutinesBack(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, baseline %d:\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
