package process

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/listener"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
	"github.com/nuthatch-proxy/nuthatch/pkg/stats"
)

// statsFloor is the shortest period at which the master asks its workers
// for their counters, whatever stats.interval says. A poll costs nothing
// per request (the counters are kept anyway), but per worker it wakes the
// event loop, which encodes a snapshot (pools, servers, histograms) that
// the master decodes and sums: 40 µs for 1 pool of 2 servers, 0.8 ms for
// 4 pools of 16 (BenchmarkStatsPoll), so 0.4% and 8% of a CPU per worker
// at 10 ms. Below it the master would spend more on counting than on
// supervising, for figures no collector reads that often.
const statsFloor = 10 * time.Millisecond

// statsPeriod is how often the master polls its workers under cfg.
func statsPeriod(cfg *config.Config) time.Duration {
	return max(cfg.Stats.Interval, statsFloor)
}

// statsService is the master's side of observability: it sums the
// workers' counters and serves them on the twemproxy-compatible stats port
// and the Prometheus endpoint. Its listeners use SO_REUSEPORT so that a new
// master (binary upgrade) can bind them while the old one still serves.
type statsService struct {
	log     *logrus.Entry
	agg     *stats.Aggregator
	started time.Time
	source  string
	// reach reports each Sentinel pool's sentinels known and reachable.
	reach func() map[string][2]int

	mu sync.Mutex
	// asOf is when the newest counters in agg were asked for: the
	// document's timestamp and uptime describe the counters it carries,
	// not the moment it was read (which is up to one interval later).
	asOf     time.Time
	cfg      *config.Config
	workers  []stats.WorkerInfo
	statsLn  net.Listener
	statsAt  string
	metricLn net.Listener
	metricAt string
}

func newStatsService(log *logrus.Entry) *statsService {
	host, _ := os.Hostname()
	now := time.Now()
	return &statsService{log: log, agg: stats.NewAggregator(), started: now, asOf: now, source: host}
}

// configure reports cfg's pools and (re)binds the listeners it names.
func (s *statsService) configure(cfg *config.Config) {
	s.agg.SetConfig(cfg)
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	if cfg.Stats.Listen != s.statsAt {
		if s.statsLn != nil {
			s.statsLn.Close()
			s.statsLn = nil
		}
		s.statsAt = cfg.Stats.Listen
		if ln := s.listen("stats", cfg.Stats.Listen); ln != nil {
			s.statsLn = ln
			go stats.ServeStats(ln, s.render)
		}
	}
	if cfg.Metrics.Listen != s.metricAt {
		if s.metricLn != nil {
			s.metricLn.Close()
			s.metricLn = nil
		}
		s.metricAt = cfg.Metrics.Listen
		if ln := s.listen("metrics", cfg.Metrics.Listen); ln != nil {
			s.metricLn = ln
			reg := stats.NewRegistry(stats.NewCollector(s.collect))
			srv := &http.Server{Handler: stats.MetricsHandler(reg), ReadHeaderTimeout: 5 * time.Second}
			go srv.Serve(ln)
		}
	}
}

func (s *statsService) listen(what, addr string) net.Listener {
	if addr == "" {
		return nil
	}
	f, err := listener.Open(config.Address{Network: "tcp", Addr: addr}, listener.Options{Backlog: 64, ReusePort: true})
	if err != nil {
		s.log.WithError(err).WithField("listen", addr).Error("cannot open the " + what + " listener")
		return nil
	}
	defer f.Close()
	ln, err := listener.FromFile(f)
	if err != nil {
		s.log.WithError(err).Error("cannot open the " + what + " listener")
		return nil
	}
	return ln
}

// withSentinels adds what the master knows of each Sentinel pool's
// sentinels to total.
func (s *statsService) withSentinels(total proxy.Snapshot) proxy.Snapshot {
	if s.reach == nil {
		return total
	}
	r := s.reach()
	for i := range total.Pools {
		if v, ok := r[total.Pools[i].Name]; ok {
			total.Pools[i].SentinelsKnown, total.Pools[i].SentinelsReachable = int64(v[0]), int64(v[1])
		}
	}
	return total
}

func (s *statsService) render() []byte {
	total := s.withSentinels(s.agg.Total())
	s.mu.Lock()
	cfg, asOf := s.cfg, s.asOf
	s.mu.Unlock()
	listeners := 0
	if cfg != nil {
		listeners = len(cfg.Pools)
	}
	tc, cc := stats.Connections(total, listeners)
	return stats.TwemproxyJSON(total, stats.Info{
		Service: stats.DefaultService, Source: s.source, Version: proxy.Version,
		Uptime: asOf.Sub(s.started), Timestamp: asOf,
		TotalConnections: tc, CurrConnections: cc, Config: cfg,
	})
}

func (s *statsService) collect() (proxy.Snapshot, []stats.WorkerInfo) {
	s.mu.Lock()
	w := append([]stats.WorkerInfo(nil), s.workers...)
	s.mu.Unlock()
	return s.withSentinels(s.agg.Total()), w
}

// setWorkers records the live workers for the per-worker metrics.
func (s *statsService) setWorkers(ws map[*workerState]struct{}) {
	var out []stats.WorkerInfo
	for w := range ws {
		if w.exited {
			continue
		}
		out = append(out, stats.WorkerInfo{ID: strconv.Itoa(w.slot), Pid: w.proc.Pid(), Generation: int(w.gen.id), Clients: w.clients})
	}
	s.mu.Lock()
	s.workers = out
	s.mu.Unlock()
}

// aggregatedAt is when the newest counters were asked for.
func (s *statsService) aggregatedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asOf
}

// update records a worker's counters, which it was asked for at at.
func (s *statsService) update(w *workerState, raw json.RawMessage, at time.Time) {
	var snap proxy.Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		s.log.WithError(err).Warn("unreadable stats from a worker")
		return
	}
	var clients int64
	for _, p := range snap.Pools {
		clients += p.ClientConnections
	}
	w.clients = clients
	w.relayed = 0
	s.agg.Update(workerID(w), snap)
	s.mu.Lock()
	if at.After(s.asOf) {
		s.asOf = at
	}
	s.mu.Unlock()
}

func workerID(w *workerState) string { return strconv.Itoa(w.proc.Pid()) }

func (s *statsService) close() {
	if s.statsLn != nil {
		s.statsLn.Close()
	}
	if s.metricLn != nil {
		s.metricLn.Close()
	}
}

// rateMeter estimates the request rate between two aggregates; now is the
// aggregate's time, so that a sample of an unchanged aggregate keeps the
// last rate instead of reporting zero.
type rateMeter struct {
	last  uint64
	at    time.Time
	value float64
}

func (r *rateMeter) sample(total proxy.Snapshot, now time.Time) float64 {
	var n uint64
	for _, p := range total.Pools {
		for _, sv := range p.Servers {
			n += sv.Requests
		}
	}
	if !r.at.IsZero() && now.After(r.at) && n >= r.last {
		r.value = float64(n-r.last) / now.Sub(r.at).Seconds()
	}
	r.last, r.at = n, now
	return r.value
}
