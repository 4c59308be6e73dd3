package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
	"github.com/nuthatch-proxy/nuthatch/pkg/stats"
)

func init() {
	// Another test file of this package may define -update already.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if updating() {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

const statsPools = `
pool "alpha" {
  listen   = "127.0.0.1:1"
  protocol = "redis"
  server "127.0.0.1:6379" {}
  server "cache-b" {
    address = "127.0.0.1:6380"
  }
}
pool "beta" {
  listen   = "127.0.0.1:2"
  protocol = "memcache"
  server "127.0.0.1:11211" {}
}
`

// snapAt is a worker report after n rounds of traffic: n requests to
// every server, latencies of 1ms (and every tenth of 25ms).
func snapAt(n uint64) proxy.Snapshot {
	h := func() proxy.HistogramSnapshot {
		c := make([]uint64, len(proxy.LatencyBounds)+1)
		c[4], c[8] = n-n/10, n/10
		return proxy.HistogramSnapshot{Counts: c, SumUs: 1000 * n}
	}
	srv := func(name string, k uint64) proxy.ServerSnapshot {
		return proxy.ServerSnapshot{Name: name, ServerConnections: 1, Requests: k * n, Responses: k * n,
			ServerTimedout: n / 50, InQueue: 2, OutQueue: 3, ServerLatency: h()}
	}
	return proxy.Snapshot{Pools: []proxy.PoolSnapshot{
		{Name: "alpha", ClientConnections: 4, ClientErr: n / 100, ServerEjects: 1, RequestLatency: h(),
			Servers: []proxy.ServerSnapshot{srv("127.0.0.1:6379", 1), srv("cache-b", 2)}},
		{Name: "beta", ClientConnections: 1, RequestLatency: h(),
			Servers: []proxy.ServerSnapshot{srv("127.0.0.1:11211", 3)}},
	}}
}

type fixture struct {
	cfg *config.Config
	agg *stats.Aggregator
	reg *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	cfg, err := config.Parse([]byte(statsPools), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{cfg: cfg, agg: stats.NewAggregator(), reg: prometheus.NewRegistry()}
	f.agg.SetConfig(cfg)
	f.reg.MustRegister(stats.NewCollector(func() (proxy.Snapshot, []stats.WorkerInfo) { return f.agg.Total(), nil }))
	return f
}

func (f *fixture) render(ts int64) []byte {
	return stats.TwemproxyJSON(f.agg.Total(), stats.Info{Source: "host-1", Version: "1.2.3",
		Uptime: time.Duration(ts-1700000000+100) * time.Second, Timestamp: time.Unix(ts, 0), Config: f.cfg})
}

func (f *fixture) doc(t *testing.T, ts int64) (*stats.Document, []byte) {
	t.Helper()
	raw := f.render(ts)
	d, err := stats.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return d, raw
}

func (f *fixture) latency(t *testing.T) latencies {
	srv := httptest.NewServer(stats.MetricsHandler(f.reg))
	defer srv.Close()
	l := fetchLatency(strings.TrimPrefix(srv.URL, "http://"))
	if l == nil {
		t.Fatal("no latencies")
	}
	return l
}

func TestStatsTableGolden(t *testing.T) {
	f := newFixture(t)
	f.agg.Update("0", snapAt(100))
	prev, _ := f.doc(t, 1700000000)
	prevLat := f.latency(t)
	s := snapAt(300)
	s.Pools[0].Servers[1].ServerEjectedAt = (1700000002 - 90) * 1_000_000
	f.agg.Update("0", s)
	cur, _ := f.doc(t, 1700000002)
	curLat := f.latency(t)

	var out bytes.Buffer
	err := renderTable(&out, tableInput{Addr: "127.0.0.1:22222", Config: f.cfg, Interval: 30 * time.Second,
		Prev: prev, Cur: cur, Elapsed: 2 * time.Second, PrevLat: prevLat, CurLat: curLat})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "stats_table.golden", out.Bytes())

	out.Reset()
	renderTable(&out, tableInput{Addr: "127.0.0.1:22222", Config: f.cfg, Cur: cur})
	checkGolden(t, "stats_table_once.golden", out.Bytes())

	// Two identical reads within the refresh interval get a hint.
	out.Reset()
	renderTable(&out, tableInput{Addr: "a", Interval: 30 * time.Second, Prev: cur, Cur: cur, Elapsed: time.Second})
	if !strings.Contains(out.String(), "note: no counter moved") {
		t.Errorf("no hint:\n%s", out.String())
	}
}

func TestP99(t *testing.T) {
	f := newFixture(t)
	f.agg.Update("0", snapAt(1000))
	l1 := f.latency(t)
	if got, _ := p99(nil, l1["alpha"]); got != "25ms" {
		t.Errorf("lifetime p99 = %s, want 25ms", got)
	}
	// Only 1ms requests since: the window's p99 is 1ms.
	s := snapAt(1000)
	for i := range s.Pools {
		s.Pools[i].RequestLatency.Counts[4] += 5000
	}
	f.agg.Update("0", s)
	l2 := f.latency(t)
	if got, _ := p99(l1["alpha"], l2["alpha"]); got != "1ms" {
		t.Errorf("window p99 = %s, want 1ms", got)
	}
	if _, ok := p99(l2["alpha"], l2["alpha"]); ok {
		t.Error("p99 of an empty window")
	}
	for s, want := range map[float64]string{5e-5: "50us", 0.0025: "2.5ms", 10: "10s"} {
		if got := formatSeconds(s); got != want {
			t.Errorf("formatSeconds(%v) = %s, want %s", s, got, want)
		}
	}
}

// TestStatsCmd runs the command against a stats listener and a metrics
// listener serving an aggregator.
func TestStatsCmd(t *testing.T) {
	f := newFixture(t)
	f.agg.Update("0", snapAt(100))
	var mu sync.Mutex
	var last []byte
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go stats.ServeStats(ln, func() []byte {
		raw := f.render(time.Now().Unix())
		mu.Lock()
		last = raw
		mu.Unlock()
		return raw
	})
	t.Cleanup(func() { ln.Close() })
	metrics := httptest.NewServer(stats.MetricsHandler(f.reg))
	t.Cleanup(metrics.Close)

	dir := t.TempDir()
	file := filepath.Join(dir, "nuthatch.hcl")
	src := fmt.Sprintf("stats {\n  listen = %q\n}\nmetrics {\n  listen = %q\n}\n%s",
		ln.Addr().String(), strings.TrimPrefix(metrics.URL, "http://"), statsPools)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if code := statsCmd([]string{"-c", file, "-json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	mu.Lock()
	if !bytes.Equal(stdout.Bytes(), last) {
		t.Errorf("-json printed %q, want %q", stdout.String(), last)
	}
	mu.Unlock()

	stdout.Reset()
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.agg.Update("0", snapAt(200))
	}()
	if code := statsCmd([]string{"-c", file, "-i", "300ms"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"POOL/SERVER", "P99", "\nalpha ", "\n  cache-b ", "\n  127.0.0.1 "} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-c", filepath.Join(dir, "missing.hcl")}, 1, "missing.hcl"},
		{[]string{"-c", file, "extra"}, 2, "unexpected argument"},
		{[]string{"-c", file, "-i", "0s"}, 2, "-i must be positive"},
	} {
		stderr.Reset()
		if code := statsCmd(tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.msg)
		}
	}

	// A closed stats listener is an error, not a hang.
	ln.Close()
	stderr.Reset()
	if code := statsCmd([]string{"-c", file, "-once"}, &stdout, &stderr); code != 1 {
		t.Errorf("exit %d with the listener closed: %s", code, stderr.String())
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:22222":   "127.0.0.1:22222",
		":22222":          "127.0.0.1:22222",
		"[::]:22222":      "[::1]:22222",
		"10.0.0.1:22222":  "10.0.0.1:22222",
		"[fe80::1]:22222": "[fe80::1]:22222",
	} {
		if got := dialAddr(in); got != want {
			t.Errorf("dialAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
