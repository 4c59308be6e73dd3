package stats

import (
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// WorkerInfo describes one live worker for the metrics.
type WorkerInfo struct {
	ID         string // stable worker slot, the "worker" label
	Pid        int    // its process id; its /proc figures are read at scrape time
	Generation int    // configuration generation it runs (reload count)
	Clients    int64  // connected clients
	Goroutines int    // 0 when unknown
}

// metricsNamespace prefixes every metric name.
const metricsNamespace = "nuthatch"

type poolMetric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	val  func(*proxy.PoolSnapshot) float64
}

type serverMetric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	val  func(*proxy.ServerSnapshot) float64
}

type procMetric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	val  func(*ProcStats) (float64, bool)
}

type collector struct {
	get      func() (proxy.Snapshot, []WorkerInfo)
	readProc func(pid int) (ProcStats, error)

	pool          []poolMetric
	server        []serverMetric
	proc          []procMetric
	commands      *prometheus.Desc
	poolLatency   *prometheus.Desc
	serverLatency *prometheus.Desc
	workers       *prometheus.Desc
	workerInfo    *prometheus.Desc
	workerClients *prometheus.Desc
	workerGorout  *prometheus.Desc
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(metricsNamespace+"_"+name, help, labels, nil)
}

// NewCollector exports what get returns at every scrape: the pool and
// server counters (names as in twemproxy's stats, with Prometheus
// suffixes), latency histograms, and per-worker figures including each
// worker's /proc resource usage.
func NewCollector(get func() (proxy.Snapshot, []WorkerInfo)) prometheus.Collector {
	return newCollector(get, ReadProcStats)
}

func newCollector(get func() (proxy.Snapshot, []WorkerInfo), readProc func(int) (ProcStats, error)) *collector {
	pl := []string{"pool"}
	sl := []string{"pool", "server"}
	wl := []string{"worker"}
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	u := func(v uint64) float64 { return float64(v) }
	i := func(v int64) float64 { return float64(v) }
	c := &collector{get: get, readProc: readProc}
	c.pool = []poolMetric{
		{desc("pool_client_eof_total", "Client connections closed by the client (twemproxy client_eof).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ClientEOF) }},
		{desc("pool_client_err_total", "Client connections closed on an error (twemproxy client_err).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ClientErr) }},
		{desc("pool_client_connections", "Client connections open now (twemproxy client_connections).", pl...), gauge,
			func(p *proxy.PoolSnapshot) float64 { return i(p.ClientConnections) }},
		{desc("pool_client_accepted_total", "Client connections accepted.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ClientAccepted) }},
		{desc("pool_client_rejected_total", "Client connections refused by client_connections.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ClientRejected) }},
		{desc("pool_auth_attempts_total", "AUTH commands received from clients.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.AuthAttempts) }},
		{desc("pool_server_ejects_total", "Times a server of the pool was ejected (twemproxy server_ejects).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ServerEjects) }},
		{desc("pool_forward_error_total", "Requests that could not be forwarded (twemproxy forward_error).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ForwardError) }},
		{desc("pool_fragments_total", "Fragments created from multi-key requests (twemproxy fragments).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.Fragments) }},
		{desc("pool_auth_failures_total", "AUTH attempts refused: wrong password or rate-limited.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.AuthFailures) }},
		{desc("pool_client_idle_closed_total", "Clients closed by client_idle_timeout.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ClientIdleClosed) }},
		{desc("pool_client_handed_over_total", "Idle clients passed to the next generation's workers by a reload or upgrade.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ClientHandedOver) }},
		{desc("pool_client_adopted_total", "Clients taken over from the previous generation's workers.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ClientAdopted) }},
		{desc("pool_client_handover_refused_total", "Handed-over clients closed by the new worker: pool gone, listen moved, client_connections.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.HandoverRefused) }},
		{desc("pool_client_output_closed_total", "Clients closed by client_output_hard_limit or client_output_soft_limit.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ClientOutputClosed) }},
		{desc("pool_pubsub_output_closed_total", "Subscribers closed by client_output_pubsub_hard_limit or client_output_pubsub_soft_limit (also in pool_client_output_closed_total).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.PubSubOutputClosed) }},
		{desc("pool_pinned_opened_total", "Server links opened to be lent to a client (transactions, blocking calls, subscriptions).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.PinnedOpened) }},
		{desc("pool_pinned_reused_total", "Idle pinned links lent again.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.PinnedReused) }},
		{desc("pool_pinned_refused_total", "Stateful commands refused over max_pinned_links.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.PinnedRefused) }},
		{desc("pool_pinned_lent", "Pinned links lent to clients now.", pl...), gauge,
			func(p *proxy.PoolSnapshot) float64 { return i(p.PinnedLent) }},
		{desc("pool_pinned_open", "Pinned links open now, lent or idle.", pl...), gauge,
			func(p *proxy.PoolSnapshot) float64 { return i(p.PinnedOpen) }},
		{desc("pool_slow_requests_total", "Requests slower than slowlog_slower_than.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.SlowRequests) }},
		{desc("pool_sentinels_reachable", "Sentinels of a Sentinel pool that answered the last question (of pool_sentinels_known).", pl...), gauge,
			func(p *proxy.PoolSnapshot) float64 { return i(p.SentinelsReachable) }},
		{desc("pool_sentinels_known", "Sentinels a Sentinel pool is configured with.", pl...), gauge,
			func(p *proxy.PoolSnapshot) float64 { return i(p.SentinelsKnown) }},
		{desc("pool_replayed_total", "Requests sent again to a Sentinel server's master (never written, or provably not run, or read-only).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.Replayed) }},
		{desc("pool_outcome_unknown_total", "Writes failed because their master's connection died after they were sent.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.OutcomeUnknown) }},
		{desc("pool_cluster_moved_total", "MOVED replies followed (cluster pools).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.Moved) }},
		{desc("pool_cluster_ask_total", "ASK replies followed (cluster pools).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.Asked) }},
		{desc("pool_cluster_tryagain_total", "TRYAGAIN, CLUSTERDOWN and LOADING replies retried (cluster pools).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.TryAgain) }},
		{desc("pool_tls_handshakes_total", "TLS handshakes completed with clients.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.TLSHandshakes) }},
		{desc("pool_tls_handshake_failures_total", "TLS handshakes that failed, timed out or were refused (clients and servers).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.TLSHandshakeFailed) }},
		{desc("pool_tls_cert_not_after_seconds", "When the TLS listener's certificate expires (unix seconds; 0 without TLS).", pl...), gauge,
			func(p *proxy.PoolSnapshot) float64 { return i(p.TLSCertNotAfter) }},
		{desc("pool_acl_denied_command_total", "Requests refused with NOPERM because the user may not run the command.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ACLDeniedCommand) }},
		{desc("pool_acl_denied_key_total", "Requests refused with NOPERM because the user may not access one of their keys.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ACLDeniedKey) }},
		{desc("pool_acl_denied_channel_total", "Requests refused with NOPERM because the user may not access one of their channels.", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.ACLDeniedChannel) }},
		{desc("pool_cluster_redirects_exhausted_total", "Requests failed after max_redirects or failover_timeout (cluster pools).", pl...), counter,
			func(p *proxy.PoolSnapshot) float64 { return u(p.RedirectsExhausted) }},
	}
	c.server = []serverMetric{
		{desc("server_eof_total", "Server connections closed by the server (twemproxy server_eof).", sl...), counter,
			func(s *proxy.ServerSnapshot) float64 { return u(s.ServerEOF) }},
		{desc("server_err_total", "Server connections closed on an error (twemproxy server_err).", sl...), counter,
			func(s *proxy.ServerSnapshot) float64 { return u(s.ServerErr) }},
		{desc("server_timedout_total", "Requests that timed out on the server (twemproxy server_timedout).", sl...), counter,
			func(s *proxy.ServerSnapshot) float64 { return u(s.ServerTimedout) }},
		{desc("server_connections", "Server connections open now (twemproxy server_connections).", sl...), gauge,
			func(s *proxy.ServerSnapshot) float64 { return i(s.ServerConnections) }},
		{desc("server_last_ejection_timestamp_seconds", "When the server was last ejected, in unix seconds; 0 if never (twemproxy server_ejected_at).", sl...), gauge,
			func(s *proxy.ServerSnapshot) float64 { return float64(s.ServerEjectedAt) / 1e6 }},
		{desc("server_requests_total", "Requests sent to the server (twemproxy requests).", sl...), counter,
			func(s *proxy.ServerSnapshot) float64 { return u(s.Requests) }},
		{desc("server_request_bytes_total", "Request bytes sent to the server (twemproxy request_bytes).", sl...), counter,
			func(s *proxy.ServerSnapshot) float64 { return u(s.RequestBytes) }},
		{desc("server_responses_total", "Responses received from the server (twemproxy responses).", sl...), counter,
			func(s *proxy.ServerSnapshot) float64 { return u(s.Responses) }},
		{desc("server_response_bytes_total", "Response bytes received from the server (twemproxy response_bytes).", sl...), counter,
			func(s *proxy.ServerSnapshot) float64 { return u(s.ResponseBytes) }},
		{desc("server_in_queue", "Requests waiting to be sent to the server (twemproxy in_queue).", sl...), gauge,
			func(s *proxy.ServerSnapshot) float64 { return i(s.InQueue) }},
		{desc("server_in_queue_bytes", "Bytes waiting to be sent to the server (twemproxy in_queue_bytes).", sl...), gauge,
			func(s *proxy.ServerSnapshot) float64 { return i(s.InQueueBytes) }},
		{desc("server_out_queue", "Requests sent and awaiting a response (twemproxy out_queue).", sl...), gauge,
			func(s *proxy.ServerSnapshot) float64 { return i(s.OutQueue) }},
		{desc("server_master_switches_total", "Times a Sentinel server's master moved.", sl...), counter,
			func(s *proxy.ServerSnapshot) float64 { return u(s.Switches) }},
		{desc("server_waiting", "Requests waiting for a Sentinel server's master.", sl...), gauge,
			func(s *proxy.ServerSnapshot) float64 { return i(s.Waiting) }},
		{desc("server_cluster_slots", "Hash slots a cluster pool's node owns (0 for replicas).", sl...), gauge,
			func(s *proxy.ServerSnapshot) float64 { return i(s.Slots) }},
		{desc("server_master_switch_timestamp_seconds", "When a Sentinel server's master last moved, in unix seconds; 0 if never.", sl...), gauge,
			func(s *proxy.ServerSnapshot) float64 { return float64(s.SwitchedAt) / 1e6 }},
	}
	c.proc = []procMetric{
		{desc("worker_cpu_seconds_total", "User and system CPU time of the worker process.", wl...), counter,
			func(p *ProcStats) (float64, bool) { return p.CPUSeconds, true }},
		{desc("worker_resident_memory_bytes", "Resident memory of the worker process.", wl...), gauge,
			func(p *ProcStats) (float64, bool) { return float64(p.RSSBytes), true }},
		{desc("worker_virtual_memory_bytes", "Virtual memory of the worker process.", wl...), gauge,
			func(p *ProcStats) (float64, bool) { return float64(p.VirtualBytes), true }},
		{desc("worker_threads", "Threads of the worker process.", wl...), gauge,
			func(p *ProcStats) (float64, bool) { return float64(p.Threads), true }},
		{desc("worker_open_fds", "Open file descriptors of the worker process.", wl...), gauge,
			func(p *ProcStats) (float64, bool) { return float64(p.OpenFDs), p.OpenFDs >= 0 }},
		{desc("worker_max_fds", "Open file descriptor limit of the worker process.", wl...), gauge,
			func(p *ProcStats) (float64, bool) { return float64(p.MaxFDs), p.MaxFDs > 0 }},
		{desc("worker_start_time_seconds", "Start time of the worker process in unix seconds.", wl...), gauge,
			func(p *ProcStats) (float64, bool) {
				if p.StartTime.IsZero() {
					return 0, false
				}
				return float64(p.StartTime.Unix()) + float64(p.StartTime.Nanosecond())/1e9, true
			}},
	}
	c.commands = desc("pool_commands_total", "Requests by command.", "pool", "command")
	c.poolLatency = desc("pool_request_duration_seconds", "Time from reading a request to having its whole reply, per pool.", pl...)
	c.serverLatency = desc("server_request_duration_seconds", "Time from sending a request to a server to receiving its reply.", sl...)
	c.workers = desc("workers", "Live worker processes.")
	c.workerInfo = desc("worker_info", "One per live worker: its process id and configuration generation.", "worker", "pid", "generation")
	c.workerClients = desc("worker_clients", "Clients connected to the worker.", wl...)
	c.workerGorout = desc("worker_goroutines", "Goroutines of the worker process.", wl...)
	return c
}

// Describe sends every descriptor; the set is fixed.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.pool {
		ch <- m.desc
	}
	for _, m := range c.server {
		ch <- m.desc
	}
	for _, m := range c.proc {
		ch <- m.desc
	}
	for _, d := range []*prometheus.Desc{c.commands, c.poolLatency, c.serverLatency, c.workers, c.workerInfo, c.workerClients, c.workerGorout} {
		ch <- d
	}
}

// Collect sends the current figures.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap, workers := c.get()
	for pi := range snap.Pools {
		p := &snap.Pools[pi]
		for _, m := range c.pool {
			ch <- constMetric(m.desc, m.typ, m.val(p), p.Name)
		}
		for _, name := range slices.Sorted(maps.Keys(p.Commands)) {
			ch <- constMetric(c.commands, prometheus.CounterValue, float64(p.Commands[name]), p.Name, name)
		}
		ch <- histogram(c.poolLatency, p.RequestLatency, p.Name)
		for si := range p.Servers {
			s := &p.Servers[si]
			for _, m := range c.server {
				ch <- constMetric(m.desc, m.typ, m.val(s), p.Name, s.Name)
			}
			ch <- histogram(c.serverLatency, s.ServerLatency, p.Name, s.Name)
		}
	}
	ch <- constMetric(c.workers, prometheus.GaugeValue, float64(len(workers)))
	for _, w := range workers {
		ch <- constMetric(c.workerInfo, prometheus.GaugeValue, 1, w.ID, strconv.Itoa(w.Pid), strconv.Itoa(w.Generation))
		ch <- constMetric(c.workerClients, prometheus.GaugeValue, float64(w.Clients), w.ID)
		if w.Goroutines > 0 {
			ch <- constMetric(c.workerGorout, prometheus.GaugeValue, float64(w.Goroutines), w.ID)
		}
		if w.Pid <= 0 {
			continue
		}
		ps, err := c.readProc(w.Pid)
		if err != nil {
			// The worker may have exited since get; report nothing
			// rather than fail the whole scrape.
			continue
		}
		for _, m := range c.proc {
			if v, ok := m.val(&ps); ok {
				ch <- constMetric(m.desc, m.typ, v, w.ID)
			}
		}
	}
}

func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

// histogram converts a fixed-bucket latency histogram (microseconds,
// per-bucket counts) into a Prometheus one (seconds, cumulative counts).
// The overflow bucket only counts towards the total (+Inf).
func histogram(d *prometheus.Desc, h proxy.HistogramSnapshot, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(proxy.LatencyBounds))
	var cum uint64
	for i, bound := range proxy.LatencyBounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[float64(bound)/1e6] = cum
	}
	m, err := prometheus.NewConstHistogram(d, h.Count(), float64(h.SumUs)/1e6, buckets, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

// NewRegistry returns a registry holding c plus the master's own Go
// runtime and process metrics (go_*, process_*).
func NewRegistry(c prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsHandler serves reg's metrics at /metrics in the Prometheus text
// (or negotiated) format, and a short index at /.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("nuthatch metrics: /metrics\n"))
	})
	return mux
}
