// Package stats turns the engine's counters into what operators read: the
// master's running totals over every worker (Aggregator), twemproxy's
// stats-port JSON (TwemproxyJSON, ServeStats, Parse), and Prometheus
// metrics (NewCollector, MetricsHandler, ReadProcStats).
//
// Every worker reports a proxy.Snapshot; the master keeps the last one per
// worker and sums them. Counters of workers that exited are folded into a
// retired base so that totals never go backwards across worker restarts,
// reloads and binary upgrades. Gauges (connections, queues) describe live
// workers only.
package stats
