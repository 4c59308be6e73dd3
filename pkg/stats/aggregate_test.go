package stats

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

func mustConfig(t testing.TB, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(src), "test.hcl")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

const twoPools = `
pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {}
  server "cache-b" {
    address = "127.0.0.1:6380"
  }
}
pool "beta" {
  listen   = "127.0.0.1:22122"
  protocol = "memcache"
  server "127.0.0.1:11211" {}
}
`

// workerSnap is a worker's report: n requests on every server, n of most
// pool counters, and gauges of 1.
func workerSnap(n uint64, pools ...string) proxy.Snapshot {
	servers := map[string][]string{
		"alpha": {"127.0.0.1:6379", "cache-b"},
		"beta":  {"127.0.0.1:11211"},
		"gamma": {"127.0.0.1:7000"},
	}
	var s proxy.Snapshot
	for _, name := range pools {
		p := proxy.PoolSnapshot{
			Name: name, ClientEOF: n, ClientErr: n, ClientConnections: 1, ServerEjects: n,
			ForwardError: n, Fragments: n, ClientAccepted: n, ClientRejected: n, AuthAttempts: n,
			RequestLatency: hist(n), Commands: map[string]uint64{"get": 2 * n, "set": n},
		}
		for _, sv := range servers[name] {
			p.Servers = append(p.Servers, proxy.ServerSnapshot{
				Name: sv, ServerEOF: n, ServerErr: n, ServerTimedout: n, ServerConnections: 1,
				Requests: n, RequestBytes: 10 * n, Responses: n, ResponseBytes: 20 * n,
				InQueue: 1, InQueueBytes: 1, OutQueue: 1, ServerLatency: hist(n),
			})
		}
		s.Pools = append(s.Pools, p)
	}
	return s
}

// hist puts n observations in the 1ms bucket.
func hist(n uint64) proxy.HistogramSnapshot {
	h := proxy.HistogramSnapshot{Counts: make([]uint64, len(proxy.LatencyBounds)+1), SumUs: 1000 * n}
	h.Counts[4] = n
	return h
}

func poolOf(t *testing.T, s proxy.Snapshot, name string) *proxy.PoolSnapshot {
	t.Helper()
	for i := range s.Pools {
		if s.Pools[i].Name == name {
			return &s.Pools[i]
		}
	}
	t.Fatalf("no pool %q in %+v", name, names(s))
	return nil
}

func serverOf(t *testing.T, p *proxy.PoolSnapshot, name string) *proxy.ServerSnapshot {
	t.Helper()
	for i := range p.Servers {
		if p.Servers[i].Name == name {
			return &p.Servers[i]
		}
	}
	t.Fatalf("no server %q in pool %q", name, p.Name)
	return nil
}

// names lists "pool" and "pool/server" in order.
func names(s proxy.Snapshot) []string {
	var out []string
	for _, p := range s.Pools {
		out = append(out, p.Name)
		for _, sv := range p.Servers {
			out = append(out, p.Name+"/"+sv.Name)
		}
	}
	return out
}

func TestAggregatorSumsLiveWorkers(t *testing.T) {
	a := NewAggregator()
	a.SetConfig(mustConfig(t, twoPools))
	a.Update("0", workerSnap(3, "alpha", "beta"))
	a.Update("1", workerSnap(4, "alpha", "beta"))
	tot := a.Total()
	alpha := poolOf(t, tot, "alpha")
	if alpha.ClientEOF != 7 || alpha.ClientConnections != 2 || alpha.Fragments != 7 || alpha.AuthAttempts != 7 {
		t.Errorf("alpha = %+v, want counters 7 and 2 connections", alpha)
	}
	s := serverOf(t, alpha, "cache-b")
	if s.Requests != 7 || s.RequestBytes != 70 || s.ResponseBytes != 140 || s.InQueue != 2 || s.ServerConnections != 2 {
		t.Errorf("cache-b = %+v", s)
	}
	if got := s.ServerLatency.Count(); got != 7 {
		t.Errorf("latency count = %d, want 7", got)
	}
	if got := alpha.RequestLatency.SumUs; got != 7000 {
		t.Errorf("latency sum = %d, want 7000", got)
	}
}

func TestAggregatorRetireKeepsCountersNotGauges(t *testing.T) {
	a := NewAggregator()
	a.SetConfig(mustConfig(t, twoPools))
	a.Update("0", workerSnap(5, "alpha", "beta"))
	a.Update("1", workerSnap(2, "alpha", "beta"))
	a.Retire("0")
	a.Retire("0") // twice is harmless
	a.Retire("nope")
	tot := a.Total()
	beta := poolOf(t, tot, "beta")
	if beta.ClientEOF != 7 || beta.ClientConnections != 1 {
		t.Errorf("beta eof=%d conns=%d, want 7 and 1", beta.ClientEOF, beta.ClientConnections)
	}
	s := serverOf(t, beta, "127.0.0.1:11211")
	if s.Requests != 7 || s.ServerConnections != 1 || s.InQueue != 1 || s.OutQueue != 1 || s.InQueueBytes != 1 {
		t.Errorf("server = %+v", s)
	}
	a.Retire("1")
	tot = a.Total()
	beta = poolOf(t, tot, "beta")
	s = serverOf(t, beta, "127.0.0.1:11211")
	if beta.ClientEOF != 7 || beta.ClientConnections != 0 || s.ServerConnections != 0 || s.InQueue != 0 || s.Requests != 7 {
		t.Errorf("after all retired: pool %+v server %+v", beta, s)
	}
	if got := a.Workers(); len(got) != 0 {
		t.Errorf("workers = %v", got)
	}
}

func TestAggregatorRestartUnderSameID(t *testing.T) {
	a := NewAggregator()
	a.Update("0", workerSnap(10, "alpha"))
	a.Update("0", workerSnap(12, "alpha")) // grew: replaces
	a.Update("0", workerSnap(1, "alpha"))  // went back: a new process
	if got := poolOf(t, a.Total(), "alpha").ClientEOF; got != 13 {
		t.Errorf("client_eof = %d, want 12 + 1", got)
	}
}

func TestAggregatorEjectedAtIsLatest(t *testing.T) {
	a := NewAggregator()
	s1, s2 := workerSnap(1, "beta"), workerSnap(1, "beta")
	s1.Pools[0].Servers[0].ServerEjectedAt = 100
	s2.Pools[0].Servers[0].ServerEjectedAt = 50
	a.Update("0", s1)
	a.Update("1", s2)
	a.Retire("0")
	if got := poolOf(t, a.Total(), "beta").Servers[0].ServerEjectedAt; got != 100 {
		t.Errorf("ejected_at = %d, want 100", got)
	}
}

func TestAggregatorConfigOrderAndReload(t *testing.T) {
	a := NewAggregator()
	// Without a configuration: everything, in the order first seen.
	a.Update("0", workerSnap(1, "beta", "gamma"))
	a.Update("1", workerSnap(1, "alpha"))
	want := []string{"beta", "beta/127.0.0.1:11211", "gamma", "gamma/127.0.0.1:7000",
		"alpha", "alpha/127.0.0.1:6379", "alpha/cache-b"}
	if got := names(a.Total()); !reflect.DeepEqual(got, want) {
		t.Errorf("unconfigured names = %v, want %v", got, want)
	}
	a.Retire("0")

	// The configuration decides: gamma is gone, alpha comes first, and a
	// configured pool nobody reported is there with zeros.
	a.SetConfig(mustConfig(t, twoPools))
	want = []string{"alpha", "alpha/127.0.0.1:6379", "alpha/cache-b", "beta", "beta/127.0.0.1:11211"}
	if got := names(a.Total()); !reflect.DeepEqual(got, want) {
		t.Errorf("configured names = %v, want %v", got, want)
	}
	if got := poolOf(t, a.Total(), "beta").ClientEOF; got != 1 {
		t.Errorf("beta kept %d, want 1", got)
	}

	// A worker still on the old configuration reports gamma: ignored.
	a.Update("2", workerSnap(5, "gamma", "beta"))
	if got := poolOf(t, a.Total(), "beta").ClientEOF; got != 6 {
		t.Errorf("beta = %d, want 6", got)
	}
	a.Retire("2")

	// Reload without beta, then with it again: beta starts from zero.
	a.SetConfig(mustConfig(t, `
pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}`))
	if got := names(a.Total()); !reflect.DeepEqual(got, []string{"alpha", "alpha/127.0.0.1:6379"}) {
		t.Errorf("after removing beta: %v", got)
	}
	a.SetConfig(mustConfig(t, twoPools))
	if got := poolOf(t, a.Total(), "beta").ClientEOF; got != 0 {
		t.Errorf("re-added beta = %d, want 0", got)
	}
	if got := poolOf(t, a.Total(), "alpha").ClientEOF; got != 1 {
		t.Errorf("alpha = %d, want 1 kept through reloads", got)
	}
}

func TestAggregatorMatchesPlacementName(t *testing.T) {
	a := NewAggregator()
	a.SetConfig(mustConfig(t, twoPools))
	s := workerSnap(3, "beta")
	s.Pools[0].Servers[0].Name = "127.0.0.1" // the placement name of 127.0.0.1:11211
	a.Update("0", s)
	if got := serverOf(t, poolOf(t, a.Total(), "beta"), "127.0.0.1:11211").Requests; got != 3 {
		t.Errorf("requests = %d, want 3", got)
	}
}

func TestAggregatorStateHandOver(t *testing.T) {
	cfg := mustConfig(t, twoPools)
	old := NewAggregator()
	old.SetConfig(cfg)
	old.Update("0", workerSnap(5, "alpha", "beta"))
	old.Update("1", workerSnap(6, "alpha", "beta"))
	old.Retire("1")
	state := old.MarshalState()

	next := NewAggregator()
	next.SetConfig(cfg)
	next.Update("0", workerSnap(1, "alpha"))
	if err := next.LoadState(state); err != nil {
		t.Fatal(err)
	}
	tot := next.Total()
	alpha := poolOf(t, tot, "alpha")
	if alpha.ClientEOF != 12 || alpha.ClientConnections != 1 {
		t.Errorf("alpha eof=%d conns=%d, want 12 and 1 (gauges are not handed over)", alpha.ClientEOF, alpha.ClientConnections)
	}
	s := serverOf(t, alpha, "cache-b")
	if s.Requests != 12 || s.ServerLatency.Count() != 12 || s.ServerConnections != 1 {
		t.Errorf("cache-b = %+v", s)
	}
	if beta := poolOf(t, tot, "beta"); beta.Fragments != 11 || beta.ClientConnections != 0 {
		t.Errorf("beta = %+v", beta)
	}
}

func TestAggregatorLoadStateRejects(t *testing.T) {
	long := make([]string, len(proxy.LatencyBounds)+2)
	for i := range long {
		long[i] = "0"
	}
	tests := []struct{ name, doc string }{
		{"not json", `{`},
		{"wrong format", `{"format":"other","version":1,"pools":[]}`},
		{"wrong version", `{"format":"nuthatch-stats-state","version":2,"pools":[]}`},
		{"unnamed pool", `{"format":"nuthatch-stats-state","version":1,"pools":[{"name":""}]}`},
		{"unnamed server", `{"format":"nuthatch-stats-state","version":1,"pools":[{"name":"a","servers":[{"name":""}]}]}`},
		{"negative counter", `{"format":"nuthatch-stats-state","version":1,"pools":[{"name":"a","client_eof":-1}]}`},
		{"too many buckets", fmt.Sprintf(`{"format":"nuthatch-stats-state","version":1,"pools":[{"name":"a","request_latency":{"counts":[%s]}}]}`,
			joinComma(long))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAggregator()
			err := a.LoadState([]byte(tt.doc))
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("err = %v, want ErrBadState", err)
			}
			if len(a.Total().Pools) != 0 {
				t.Error("a rejected state changed the totals")
			}
		})
	}
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

// TestAggregatorNeverGoesBackwards drives random worker lifecycles
// (growth, restarts under the same id, retirement, reloads) and checks
// that no counter of the total ever decreases.
func TestAggregatorNeverGoesBackwards(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cfg := mustConfig(t, twoPools)
	a := NewAggregator()
	a.SetConfig(cfg)
	counts := map[string]uint64{}
	prev := a.Total()
	for step := 0; step < 2000; step++ {
		id := fmt.Sprint(rng.IntN(4))
		switch r := rng.IntN(10); {
		case r < 6:
			counts[id] += uint64(rng.IntN(5))
			a.Update(id, workerSnap(counts[id], "alpha", "beta"))
		case r < 7:
			counts[id] = uint64(rng.IntN(3)) // restart under the same id
			a.Update(id, workerSnap(counts[id], "alpha", "beta"))
		case r < 9:
			a.Retire(id)
			delete(counts, id)
		default:
			a.SetConfig(cfg) // a reload to the same configuration
		}
		cur := a.Total()
		for i := range cur.Pools {
			c, p := &cur.Pools[i], &prev.Pools[i]
			if c.ClientEOF < p.ClientEOF || c.RequestLatency.Count() < p.RequestLatency.Count() {
				t.Fatalf("step %d: pool %s went back: %d < %d", step, c.Name, c.ClientEOF, p.ClientEOF)
			}
			for j := range c.Servers {
				if c.Servers[j].Requests < p.Servers[j].Requests {
					t.Fatalf("step %d: server %s went back", step, c.Servers[j].Name)
				}
			}
		}
		prev = cur
	}
}

func TestAggregatorConcurrent(t *testing.T) {
	a := NewAggregator()
	cfg := mustConfig(t, twoPools)
	a.SetConfig(cfg)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			id := fmt.Sprint(w)
			for i := range 200 {
				a.Update(id, workerSnap(uint64(i), "alpha", "beta"))
				if i%50 == 49 {
					a.Retire(id)
				}
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			a.Total()
			a.MarshalState()
			a.SetConfig(cfg)
		}
	})
	wg.Wait()
	// Every worker retired at i = 49, 99, 149, 199, having reported i.
	want := uint64(4 * (49 + 99 + 149 + 199))
	if got := poolOf(t, a.Total(), "alpha").ClientEOF; got != want {
		t.Errorf("client_eof = %d, want %d", got, want)
	}
}

func TestUpdateCopiesSnapshot(t *testing.T) {
	a := NewAggregator()
	s := workerSnap(2, "beta")
	a.Update("0", s)
	s.Pools[0].RequestLatency.Counts[4] = 100
	s.Pools[0].Servers[0].Requests = 100
	tot := a.Total()
	if got := poolOf(t, tot, "beta").RequestLatency.Count(); got != 2 {
		t.Errorf("latency count = %d; Update kept the caller's slice", got)
	}
	if got := tot.Pools[0].Servers[0].Requests; got != 2 {
		t.Errorf("requests = %d; Update kept the caller's slice", got)
	}
}

// BenchmarkTotalAndRender is one stats-port request on a large setup:
// 32 workers, 10 pools of 20 servers.
func BenchmarkTotalAndRender(b *testing.B) {
	src := ""
	for p := range 10 {
		src += fmt.Sprintf("pool \"p%d\" {\n  listen = \"127.0.0.1:%d\"\n  protocol = \"redis\"\n", p, 20000+p)
		for s := range 20 {
			src += fmt.Sprintf("  server \"10.0.%d.%d:6379\" {}\n", p, s)
		}
		src += "}\n"
	}
	cfg := mustConfig(b, src)
	a := NewAggregator()
	a.SetConfig(cfg)
	var snap proxy.Snapshot
	for _, p := range cfg.Pools {
		ps := proxy.PoolSnapshot{Name: p.Name, RequestLatency: hist(1)}
		for _, s := range p.Servers {
			ps.Servers = append(ps.Servers, proxy.ServerSnapshot{Name: s.Name, Requests: 1, ServerLatency: hist(1)})
		}
		snap.Pools = append(snap.Pools, ps)
	}
	for w := range 32 {
		a.Update(fmt.Sprint(w), snap)
	}
	b.ReportAllocs()
	for b.Loop() {
		TwemproxyJSON(a.Total(), Info{Config: cfg})
	}
}
