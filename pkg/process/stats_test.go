package process

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
	"github.com/nuthatch-proxy/nuthatch/pkg/stats"
)

// pollGap waits for n+1 stats requests to w after the first one (whose
// timing depends on when w became ready) and returns the median gap.
func pollGap(t *testing.T, w *fakeWorker, n int) time.Duration {
	t.Helper()
	var at []time.Time
	deadline := time.After(10 * time.Second)
	for len(at) < n+2 {
		select {
		case p := <-w.polls:
			at = append(at, p)
		case <-deadline:
			t.Fatalf("worker %d got %d stats requests, want %d", w.pid, len(at), n+2)
		}
	}
	var gaps []time.Duration
	for i := 2; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

// The master asks for counters every stats.interval, not on its 100 ms
// deadline tick nor a fixed second, never faster than statsFloor, and a
// reload that changes the interval changes the period.
func TestMasterStatsPollFollowsInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nuthatch.hcl")
	writeConfigStats(t, path, 1, "30ms", "a")
	r := runMaster(t, path, io.Discard)
	w := r.sp.wait(t)
	r.expectNote(t, "READY=1")
	if g := pollGap(t, w, 8); g < 24*time.Millisecond || g > 60*time.Millisecond {
		t.Fatalf("stats.interval 30ms: polled every %v", g)
	}

	writeConfigStats(t, path, 1, "250ms", "a")
	r.sigs <- syscall.SIGHUP
	nw := r.sp.wait(t)
	r.expectNote(t, "READY=1")
	if g := pollGap(t, nw, 4); g < 200*time.Millisecond || g > 500*time.Millisecond {
		t.Fatalf("after a reload to stats.interval 250ms: polled every %v", g)
	}

	writeConfigStats(t, path, 1, "1ms", "a")
	r.sigs <- syscall.SIGHUP
	fw := r.sp.wait(t)
	r.expectNote(t, "READY=1")
	if g := pollGap(t, fw, 8); g < statsFloor-time.Millisecond || g > 4*statsFloor {
		t.Fatalf("stats.interval 1ms: polled every %v, want the %v floor", g, statsFloor)
	}
}

// The stats document's timestamp and uptime are those of the counters it
// carries (when they were asked for), not of the read.
func TestStatsDocumentDescribesTheAggregate(t *testing.T) {
	cfg, err := config.Parse([]byte("stats {\n  listen = \"\"\n}\npool \"a\" {\n  listen = \"127.0.0.1:30000\"\n  protocol = \"redis\"\n  server \"127.0.0.1:6379\" {}\n}\n"), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := newStatsService(logrus.NewEntry(log))
	s.configure(cfg)
	s.started = time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	s.asOf = s.started

	read := func() *stats.Document {
		d, err := stats.Parse(s.render())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := read(); d.Timestamp != s.started.Unix() || d.Uptime != 0 {
		t.Fatalf("before any report: timestamp %d uptime %d, want %d and 0", d.Timestamp, d.Uptime, s.started.Unix())
	}
	at := s.started.Add(time.Hour)
	w := &workerState{proc: &fakeWorker{pid: 42}}
	s.update(w, []byte(`{"pools":[{"name":"a","servers":[{"name":"127.0.0.1:6379","requests":7,"responses":7}]}]}`), at)
	d := read()
	if d.Timestamp != at.Unix() || d.Uptime != 3600 {
		t.Fatalf("timestamp %d uptime %d, want %d and 3600", d.Timestamp, d.Uptime, at.Unix())
	}
	if req, _ := poolRequests(d, "a"); req != 7 {
		t.Fatalf("requests %d, want 7", req)
	}
	// A late answer to an older request does not move the time back.
	s.update(w, []byte(`{"pools":[{"name":"a","servers":[{"name":"127.0.0.1:6379","requests":8,"responses":8}]}]}`), at.Add(-time.Minute))
	if d := read(); d.Timestamp != at.Unix() {
		t.Fatalf("timestamp went back to %d", d.Timestamp)
	}
}

func poolRequests(d *stats.Document, pool string) (req, resp int64) {
	p := d.Pool(pool)
	if p == nil {
		return -1, -1
	}
	for _, sv := range p.Servers {
		req += sv.Get("requests")
		resp += sv.Get("responses")
	}
	return
}

// BenchmarkStatsPoll measures what one poll of one worker costs, the
// figures behind statsFloor: the worker encodes its snapshot, the master
// decodes it and adds it to the totals.
func BenchmarkStatsPoll(b *testing.B) {
	for _, size := range [][2]int{{1, 2}, {4, 16}} {
		pools, servers := size[0], size[1]
		b.Run(fmt.Sprintf("%dpools-%dservers", pools, servers), func(b *testing.B) {
			var snap proxy.Snapshot
			for p := range pools {
				ps := proxy.PoolSnapshot{Name: fmt.Sprintf("p%d", p), ClientEOF: 123456,
					RequestLatency: proxy.HistogramSnapshot{Counts: make([]uint64, 18), SumUs: 99999},
					Commands:       map[string]uint64{"get": 1234567, "set": 7654321, "mget": 55555, "del": 4444}}
				for i := range servers {
					ps.Servers = append(ps.Servers, proxy.ServerSnapshot{Name: fmt.Sprintf("10.0.0.%d:6379", i),
						Requests: 12345678, RequestBytes: 987654321, Responses: 12345678, ResponseBytes: 87654321,
						ServerLatency: proxy.HistogramSnapshot{Counts: make([]uint64, 18), SumUs: 123456789}})
				}
				snap.Pools = append(snap.Pools, ps)
			}
			agg := stats.NewAggregator()
			for b.Loop() {
				raw, _ := json.Marshal(snap)
				var got proxy.Snapshot
				if err := json.Unmarshal(raw, &got); err != nil {
					b.Fatal(err)
				}
				agg.Update("1", got)
			}
		})
	}
}
