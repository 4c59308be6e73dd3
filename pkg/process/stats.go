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

// statsPoll is how often the master asks its workers for their counters.
var statsPoll = time.Second

// statsService is the master's side of observability: it sums the
// workers' counters and serves them on the twemproxy-compatible stats port
// and the Prometheus endpoint. Its listeners use SO_REUSEPORT so that a new
// master (binary upgrade) can bind them while the old one still serves.
type statsService struct {
	log     *logrus.Entry
	agg     *stats.Aggregator
	started time.Time
	source  string

	mu       sync.Mutex
	cfg      *config.Config
	workers  []stats.WorkerInfo
	statsLn  net.Listener
	statsAt  string
	metricLn net.Listener
	metricAt string
}

func newStatsService(log *logrus.Entry) *statsService {
	host, _ := os.Hostname()
	return &statsService{log: log, agg: stats.NewAggregator(), started: time.Now(), source: host}
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

func (s *statsService) render() []byte {
	total := s.agg.Total()
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	listeners := 0
	if cfg != nil {
		listeners = len(cfg.Pools)
	}
	tc, cc := stats.Connections(total, listeners)
	return stats.TwemproxyJSON(total, stats.Info{
		Service: stats.DefaultService, Source: s.source, Version: proxy.Version,
		Uptime: time.Since(s.started), Timestamp: time.Now(),
		TotalConnections: tc, CurrConnections: cc, Config: cfg,
	})
}

func (s *statsService) collect() (proxy.Snapshot, []stats.WorkerInfo) {
	s.mu.Lock()
	w := append([]stats.WorkerInfo(nil), s.workers...)
	s.mu.Unlock()
	return s.agg.Total(), w
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

// update records a worker's counters.
func (s *statsService) update(w *workerState, raw json.RawMessage) {
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
	s.agg.Update(workerID(w), snap)
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

// requestsPerSecond estimates the request rate since the last call.
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
