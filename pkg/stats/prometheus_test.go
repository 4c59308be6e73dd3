package stats

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// testCollector reports a fixed snapshot and two workers, the second of
// which has exited (its /proc cannot be read).
func testCollector(t *testing.T) *collector {
	a := NewAggregator()
	a.SetConfig(mustConfig(t, twoPools))
	s := workerSnap(3, "alpha", "beta")
	s.Pools[0].Servers[1].ServerEjectedAt = 1700000000_500000
	// Spread the latencies: 2 at <= 50us, 1 at <= 1ms, 1 overflow.
	h := &s.Pools[0].RequestLatency
	h.Counts[0], h.Counts[17] = 2, 1
	h.SumUs = 3000 + 20_000_000
	a.Update("0", s)
	workers := []WorkerInfo{
		{ID: "0", Pid: 100, Generation: 2, Clients: 5, Goroutines: 40},
		{ID: "1", Pid: 101, Generation: 2, Clients: 0},
	}
	readProc := func(pid int) (ProcStats, error) {
		if pid != 100 {
			return ProcStats{}, os.ErrNotExist
		}
		return ProcStats{CPUSeconds: 1.5, RSSBytes: 10 << 20, VirtualBytes: 1 << 30, Threads: 8,
			OpenFDs: 12, MaxFDs: 1024, StartTime: time.Unix(1700000000, 250_000_000)}, nil
	}
	return newCollector(func() (proxy.Snapshot, []WorkerInfo) { return a.Total(), workers }, readProc)
}

func gatherText(t *testing.T, c prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestCollectorGolden(t *testing.T) {
	out := gatherText(t, testCollector(t))
	golden(t, "metrics.golden", out)
	for _, want := range []string{
		// cumulative buckets in seconds; the overflow only in +Inf and count
		`nuthatch_pool_request_duration_seconds_bucket{pool="alpha",le="5e-05"} 2`,
		`nuthatch_pool_request_duration_seconds_bucket{pool="alpha",le="0.001"} 5`,
		`nuthatch_pool_request_duration_seconds_bucket{pool="alpha",le="10"} 5`,
		`nuthatch_pool_request_duration_seconds_bucket{pool="alpha",le="+Inf"} 6`,
		`nuthatch_pool_request_duration_seconds_sum{pool="alpha"} 20.003`,
		`nuthatch_server_last_ejection_timestamp_seconds{pool="alpha",server="cache-b"} 1.7000000005e+09`,
		`nuthatch_worker_info{generation="2",pid="100",worker="0"} 1`,
		`nuthatch_worker_open_fds{worker="0"} 12`,
		`nuthatch_workers 2`,
	} {
		if !bytes.Contains(out, []byte(want+"\n")) {
			t.Errorf("missing %s", want)
		}
	}
	if bytes.Contains(out, []byte(`nuthatch_worker_cpu_seconds_total{worker="1"}`)) {
		t.Error("reported /proc figures of a worker whose /proc is gone")
	}
}

// TestCollectorPromtool runs the real `promtool check metrics` linter.
func TestCollectorPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool is not installed (Debian package prometheus)")
	}
	reg := NewRegistry(testCollector(t))
	srv := httptest.NewServer(MetricsHandler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("nuthatch_server_requests_total")) ||
		!bytes.Contains(body, []byte("process_cpu_seconds_total")) {
		t.Fatalf("status %d body %.300s", resp.StatusCode, body)
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestMetricsHandlerRoutes(t *testing.T) {
	h := MetricsHandler(prometheus.NewRegistry())
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/", 200},
		{"GET", "/metrics", 200},
		{"GET", "/nope", 404},
		{"POST", "/metrics", 405},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, rec.Code, tt.code)
		}
	}
}

func TestHistogramConversion(t *testing.T) {
	tests := []struct {
		name        string
		h           proxy.HistogramSnapshot
		count       uint64
		first, last uint64 // cumulative counts at the first and last bound
	}{
		{"empty", proxy.HistogramSnapshot{}, 0, 0, 0},
		{"short", proxy.HistogramSnapshot{Counts: []uint64{1, 2}, SumUs: 10}, 3, 1, 3},
		{"overflow", hist(0), 0, 0, 0},
	}
	tests[2].h.Counts[17] = 4
	tests[2].count = 4
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m dto.Metric
			if err := histogram(prometheus.NewDesc("x", "x", nil, nil), tt.h).Write(&m); err != nil {
				t.Fatal(err)
			}
			h := m.GetHistogram()
			b := h.GetBucket()
			if len(b) != len(proxy.LatencyBounds) {
				t.Fatalf("%d buckets", len(b))
			}
			if h.GetSampleCount() != tt.count || b[0].GetCumulativeCount() != tt.first || b[len(b)-1].GetCumulativeCount() != tt.last {
				t.Errorf("count %d first %d last %d", h.GetSampleCount(), b[0].GetCumulativeCount(), b[len(b)-1].GetCumulativeCount())
			}
			if b[len(b)-1].GetUpperBound() != 10 {
				t.Errorf("last bound %v, want 10 s", b[len(b)-1].GetUpperBound())
			}
		})
	}
}
