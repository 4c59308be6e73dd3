package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is what one run of one target measured.
type sample struct {
	rps            float64
	p50, p99, p999 time.Duration
	cpuUS          float64 // proxy CPU µs per request; -1: not a proxy
	sysUS          float64 // of cpuUS, the kernel's (stime); -1: not measured
	rssKB          int64   // peak RSS of the proxy's processes in the window
	errors, misses uint64
	lag99          time.Duration // fixed rate: the generator's schedule lag
	// count latencies recorded, slow of them ≥ slowLatency, max the largest.
	count, slow uint64
	max         time.Duration
	// coreBusy is, in the pinned group, the busy share of CPU 0 (the
	// proxy's) and CPU 1 (the generator's and backends'); -1 elsewhere.
	coreBusy [2]float64
	// backendUS and genUS are the CPU µs per request of all backends and
	// of the load generator (this process); machineBusy the busy share of
	// all CPUs. Together with cpuUS they are where the machine's CPU went.
	backendUS, genUS, machineBusy float64
}

// slowLatency is where delayed-ACK stalls show up: Linux delays an ACK by
// at least 40 ms (TCP_DELACK_MIN), so a request caught behind one takes
// about that long.
const slowLatency = 40 * time.Millisecond

// outlierSum is a target's slow requests over all its rounds: rare events
// are summed, not medianed.
type outlierSum struct {
	requests, slow uint64
	perMillion     float64
	max            time.Duration
}

func outliers(ss []sample) outlierSum {
	var o outlierSum
	for _, s := range ss {
		o.requests += s.count
		o.slow += s.slow
		o.max = max(o.max, s.max)
	}
	if o.requests > 0 {
		o.perMillion = float64(o.slow) / float64(o.requests) * 1e6
	}
	return o
}

// cpuTimes is one cpuN line of /proc/stat, in clock ticks.
type cpuTimes struct{ busy, total uint64 }

// parseCPUStat reads the per-CPU lines of /proc/stat: "cpuN user nice
// system idle iowait irq softirq steal …"; idle and iowait are not busy.
func parseCPUStat(s string) map[string]cpuTimes {
	out := map[string]cpuTimes{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var c cpuTimes
		for i, v := range f[1:9] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				break
			}
			c.total += n
			if i != 3 && i != 4 {
				c.busy += n
			}
		}
		out[f[0]] = c
	}
	return out
}

// machineBusy is the busy share of all CPUs between two readings; -1
// without them.
func machineBusy(a, b map[string]cpuTimes) float64 {
	var busy, total uint64
	for cpu, c := range a {
		l, ok := b[cpu]
		if !ok || l.total < c.total {
			return -1
		}
		busy += l.busy - c.busy
		total += l.total - c.total
	}
	if total == 0 {
		return -1
	}
	return float64(busy) / float64(total)
}

// busyUntil is the busy share of the CPU between c and a later reading.
func (c cpuTimes) busyUntil(later cpuTimes) float64 {
	if later.total <= c.total {
		return -1
	}
	return float64(later.busy-c.busy) / float64(later.total-c.total)
}

type scenarioResult struct {
	sc      scenario
	samples map[string][]sample
	errs    map[string]string
	loadAvg string
	// base is, for a RESP3 scenario, its RESP2 half: the same load on the
	// same targets in the same rounds.
	base *scenarioResult
}

func (r *scenarioResult) record(target string, m sample) {
	r.samples[target] = append(r.samples[target], m)
}

func (r *scenarioResult) failed(target string, err error) { r.errs[target] = err.Error() }

func median[T int64 | float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// median is the per-field median of a target's rounds, and the spread of
// their throughput ((max-min)/median).
func (r *scenarioResult) median(target string) (sample, float64, bool) {
	ss := r.samples[target]
	if len(ss) == 0 {
		return sample{}, 0, false
	}
	field := func(f func(sample) float64) []float64 {
		out := make([]float64, len(ss))
		for i, s := range ss {
			out[i] = f(s)
		}
		return out
	}
	dur := func(f func(sample) time.Duration) time.Duration {
		out := make([]time.Duration, len(ss))
		for i, s := range ss {
			out[i] = f(s)
		}
		return median(out)
	}
	rps := field(func(s sample) float64 { return s.rps })
	m := sample{
		rps:   median(rps),
		p50:   dur(func(s sample) time.Duration { return s.p50 }),
		p99:   dur(func(s sample) time.Duration { return s.p99 }),
		p999:  dur(func(s sample) time.Duration { return s.p999 }),
		lag99: dur(func(s sample) time.Duration { return s.lag99 }),
		cpuUS: median(field(func(s sample) float64 { return s.cpuUS })),
		sysUS: median(field(func(s sample) float64 { return s.sysUS })),
		rssKB: int64(median(field(func(s sample) float64 { return float64(s.rssKB) }))),
		coreBusy: [2]float64{median(field(func(s sample) float64 { return s.coreBusy[0] })),
			median(field(func(s sample) float64 { return s.coreBusy[1] }))},
		backendUS:   median(field(func(s sample) float64 { return s.backendUS })),
		genUS:       median(field(func(s sample) float64 { return s.genUS })),
		machineBusy: median(field(func(s sample) float64 { return s.machineBusy })),
	}
	for _, s := range ss {
		m.errors += s.errors
		m.misses += s.misses
	}
	spread := 0.0
	if m.rps > 0 {
		spread = (slices.Max(rps) - slices.Min(rps)) / m.rps
	}
	return m, spread, true
}

// pairedRange is the lowest and highest throughput ratio a to b within
// one round: rounds alternate, so the two runs of a round met the same
// machine, and the range shows how far one round can be trusted.
func (r *scenarioResult) pairedRange(a, b string) (lo, hi float64, ok bool) {
	return pairedRange(r.samples[a], r.samples[b])
}

// pairedRange is the range of as[i].rps / bs[i].rps over the rounds i.
func pairedRange(as, bs []sample) (lo, hi float64, ok bool) {
	for i := range min(len(as), len(bs)) {
		if bs[i].rps <= 0 {
			continue
		}
		q := as[i].rps / bs[i].rps
		if !ok {
			lo, hi, ok = q, q, true
		}
		lo, hi = min(lo, q), max(hi, q)
	}
	return lo, hi, ok && len(as) > 1
}

func (r *scenarioResult) summary(targets []*target) string {
	var b strings.Builder
	for _, t := range targets {
		if m, _, ok := r.median(t.name); ok {
			fmt.Fprintf(&b, " %s %.0f", t.name, m.rps)
		}
	}
	return strings.TrimSpace(b.String())
}

type idleResult struct {
	clients   int
	perClient [2]float64 // bytes per client: connected; after one GET
	rssKB     [2]int64
	err       error
}

type idleRow struct {
	target string
	res    idleResult
}

type report struct {
	header   string
	targets  []*target
	notes    []string
	clkTck   int64
	results  []*scenarioResult
	idle     []idleRow
	rb       []rbRow
	rbFailed []string
	sys      []syscallResult
	scale    []scaleRow
	pubsub   []pubsubRow
	// The cluster group (cluster.go): its results, its targets in table
	// order, notes on them, and its redis-benchmark rows.
	cluster         []*scenarioResult
	clusterTargets  []string
	clusterNotes    []string
	clusterClients  int
	clusterRB       []rbRow
	clusterRBFailed []string
	clusterProfile  string
}

func (r *report) add(sc scenario) *scenarioResult {
	rs := &scenarioResult{sc: sc, samples: map[string][]sample{}, errs: map[string]string{}}
	r.results = append(r.results, rs)
	return rs
}

func (r *report) find(name string) *scenarioResult {
	for _, rs := range r.results {
		if rs.sc.name == name {
			return rs
		}
	}
	return nil
}

// fixedRate is half the slowest proxy's unpipelined GET 100 B throughput:
// a load every proxy sustains, so that the tail reflects the proxy and
// not a queue that grows without bound.
func (r *report) fixedRate() float64 {
	rate := 0.0
	if rs := r.find("redis GET 100B"); rs != nil {
		for _, t := range r.targets {
			if t.proc == nil {
				continue
			}
			if m, _, ok := rs.median(t.name); ok && (rate == 0 || m.rps < rate) {
				rate = m.rps
			}
		}
	}
	if rate == 0 {
		return 20000
	}
	if half := rate / 2; half < 2000 {
		return half
	}
	return float64(int(rate/2/1000) * 1000)
}

// nutcrackerRate is nutcracker's unpipelined GET 100 B throughput in this
// run (20,000 when it did not run), what the latency scenarios' rates are
// shares of.
func (r *report) nutcrackerRate() float64 {
	if rs := r.find("redis GET 100B"); rs != nil {
		if m, _, ok := rs.median("nutcracker"); ok && m.rps > 0 {
			return float64(int(m.rps/100) * 100)
		}
	}
	return 20000
}

// writeOutliers is the fixed-rate runs' count of requests that took
// slowLatency or more, all rounds together, per target.
func (r *report) writeOutliers(w io.Writer, rs *scenarioResult) {
	fmt.Fprintf(w, "\n%s: requests of %v or more (delayed-ACK stalls show up at about 40 ms), all rounds together:\n\n", rs.sc.name, slowLatency)
	fmt.Fprintln(w, "| target | requests | ≥ 40 ms | per million | max ms |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, t := range r.targets {
		ss := rs.samples[t.name]
		if len(ss) == 0 {
			continue
		}
		o := outliers(ss)
		fmt.Fprintf(w, "| %s | %d | %d | %.1f | %.1f |\n", t.name, o.requests, o.slow, o.perMillion, float64(o.max)/1e6)
	}
}

// writeBusy shows how busy CPU 0 (the proxy) and CPU 1 (the generator and
// backends) were: a core near 100 % was the limit.
func (r *report) writeBusy(w io.Writer, rs *scenarioResult) {
	var parts []string
	for _, t := range r.targets {
		if m, _, ok := rs.median(t.name); ok && m.coreBusy[0] >= 0 && m.coreBusy[1] >= 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f%% / %.0f%%", t.name, m.coreBusy[0]*100, m.coreBusy[1]*100))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "\n%s: CPU 0 (proxy) / CPU 1 (generator, backends) busy, from /proc/stat: %s.\n", rs.sc.name, strings.Join(parts, ", "))
	}
}

// writeBudget shows where the machine's CPU went in each run: the
// generator and backends share the CPUs with the proxy, so a proxy's
// throughput depends on what it costs them as well as on its own cost.
// The proxy's kernel share bounds what a proxy can gain by its own code:
// the ceiling is the throughput ratio to nutcracker had the proxy's user
// time been zero and everything else the same (kernelCeiling).
func (r *report) writeBudget(w io.Writer) {
	var b strings.Builder
	for _, rs := range r.results {
		if rs.sc.pinned || rs.sc.rate {
			continue
		}
		nc, _, _ := rs.median("nutcracker") // zero without one: no ceiling
		for _, t := range r.targets {
			m, _, ok := rs.median(t.name)
			if !ok || m.backendUS < 0 || m.genUS < 0 || m.machineBusy < 0 {
				continue
			}
			proxy, kernel, ceiling, total := "—", "—", "—", m.backendUS+m.genUS
			if m.cpuUS >= 0 {
				proxy = fmt.Sprintf("%.2f", m.cpuUS)
				total += m.cpuUS
			}
			if m.sysUS > 0 && m.sysUS <= m.cpuUS {
				kernel = fmt.Sprintf("%.2f", m.sysUS)
			}
			if c, ok := kernelCeiling(m, nc); ok && t.name != "nutcracker" {
				ceiling = fmt.Sprintf("%.2f×", c)
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %.2f | %.2f | %.2f | %.0f%% | %s |\n",
				rs.sc.name, t.name, m.rps, proxy, kernel, m.backendUS, m.genUS, total, m.machineBusy*100, ceiling)
		}
	}
	if b.Len() == 0 {
		return
	}
	fmt.Fprint(w, "\n## Where the CPU went (µs per request, medians)\n\n")
	fmt.Fprint(w, "Backends: all redis-servers and memcacheds; generator: the driver process. Kernel: the proxy's stime, its system calls and, on loopback, the delivery of what it sends up to waking the receiver. Machine busy: all CPUs, from /proc/stat, interrupts included; the rest was idle. Ceiling: the throughput × nutcracker had the proxy's own code (its user time) cost nothing and the rest stayed the same, the most any change of the proxy's code alone can give with its system calls as they are.\n\n")
	fmt.Fprintln(w, "| scenario | target | req/s | proxy | of it kernel | backends | generator | total | machine busy | ceiling × nutcracker |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	io.WriteString(w, b.String())
}

// kernelCeiling is m's throughput ratio to nc scaled by what removing
// m's user time would save of the machine's CPU per request:
// rps/rps_nc × total / (total - user), total being the proxy, backends
// and generator together.
func kernelCeiling(m, nc sample) (float64, bool) {
	if nc.rps <= 0 || m.rps <= 0 || m.sysUS <= 0 || m.sysUS > m.cpuUS || m.backendUS < 0 || m.genUS < 0 {
		return 0, false
	}
	total := m.cpuUS + m.backendUS + m.genUS
	user := m.cpuUS - m.sysUS
	if total-user <= 0 {
		return 0, false
	}
	return m.rps / nc.rps * total / (total - user), true
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/1e3) }

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "# nuthatch benchmark results\n\n%s\n\n", r.header)
	fmt.Fprintln(w, "Targets:")
	for _, t := range r.targets {
		note := ""
		if t.note != "" {
			note = " (" + t.note + ")"
		}
		fmt.Fprintf(w, "- %s%s\n", t.name, note)
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "- note: %s\n", n)
	}
	r.writeShipped(w)
	fmt.Fprintln(w, "\nMedians over the rounds. spread = (max-min)/median of the rounds' throughput. CPU = utime+stime of all the proxy's processes over the window, per completed request. RSS = peak summed RSS of the proxy's processes during the window. × columns are throughput ratios.")
	var groups []string
	for _, rs := range r.results {
		if !slices.Contains(groups, rs.sc.group) {
			groups = append(groups, rs.sc.group)
		}
	}
	for _, g := range groups {
		fmt.Fprintf(w, "\n## %s\n\n", g)
		if g == groupRESP3 {
			r.writeRESP3(w)
			continue
		}
		fmt.Fprintln(w, "| scenario | target | req/s | spread | p50 µs | p99 µs | p99.9 µs | CPU µs/req | peak RSS MB | × nutcracker | × predixy | × direct |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		// Text after a scenario's rows waits for the end of the table, which
		// a paragraph would cut in two.
		var after strings.Builder
		for _, rs := range r.results {
			if rs.sc.group != g {
				continue
			}
			nc, _, _ := rs.median("nutcracker")
			pd, _, _ := rs.median("predixy")
			dr, _, _ := rs.median("direct")
			for _, t := range r.targets {
				name := t.name
				m, spread, ok := rs.median(t.name)
				if !ok {
					if e, failed := rs.errs[t.name]; failed {
						fmt.Fprintf(w, "| %s | %s | failed: %s |||||||||\n", rs.sc.name, name, e)
					}
					continue
				}
				if m.errors > 0 {
					name += fmt.Sprintf(" (%d error replies)", m.errors)
				}
				if m.misses > 0 && rs.sc.op != "set" {
					name += fmt.Sprintf(" (%d misses)", m.misses)
				}
				cpu, rss := "—", "—"
				if m.cpuUS >= 0 {
					cpu = fmt.Sprintf("%.2f", m.cpuUS)
					rss = fmt.Sprintf("%.1f", float64(m.rssKB)/1024)
				}
				fmt.Fprintf(w, "| %s | %s | %.0f | %.0f%% | %s | %s | %s | %s | %s | %s | %s | %s |\n",
					rs.sc.name, name, m.rps, spread*100, us(m.p50), us(m.p99), us(m.p999), cpu, rss,
					ratio(m.rps, nc.rps), ratio(m.rps, pd.rps), ratio(m.rps, dr.rps))
			}
			if rs.sc.loadOf > 0 {
				fmt.Fprintf(&after, "\n%s: %.0f req/s.\n", rs.sc.name, rs.sc.rateRPS)
			} else if rs.sc.rate {
				if dr, _, ok := rs.median("direct"); ok {
					fmt.Fprintf(&after, "\nRate %.0f req/s (half the slowest proxy's unpipelined GET). The generator's own schedule lag p99: %s µs (direct run).\n", rs.sc.rateRPS, us(dr.lag99))
				}
				r.writeOutliers(&after, rs)
			}
			if rs.sc.pinned {
				r.writeBusy(&after, rs)
			}
		}
		io.WriteString(w, after.String())
		for _, rs := range r.results {
			if rs.sc.group == g && rs.loadAvg != "" {
				fmt.Fprintf(w, "\nLoad average after the group's last scenario: %s\n", rs.loadAvg)
				break
			}
		}
	}
	r.writeBudget(w)
	if len(r.idle) > 0 {
		fmt.Fprintf(w, "\n## Idle clients (Redis pool)\n\n| target | clients | RSS after, MB | bytes per client (connected) | bytes per client (after one GET) |\n|---|---:|---:|---:|---:|\n")
		for _, row := range r.idle {
			if row.res.err != nil {
				fmt.Fprintf(w, "| %s | failed: %v ||||\n", row.target, row.res.err)
				continue
			}
			fmt.Fprintf(w, "| %s | %d | %.1f | %.0f | %.0f |\n", row.target, row.res.clients,
				float64(row.res.rssKB[1])/1024, row.res.perClient[0], row.res.perClient[1])
		}
		fmt.Fprintln(w, "\n(direct: the two redis-servers' own RSS per client.)")
	}
	r.writeScale(w)
	r.writePubSub(w)
	r.writeCluster(w)
	r.writeClusterProfile(w)
	if len(r.rb) > 0 || len(r.rbFailed) > 0 {
		rows := rbMedians(r.rb)
		rounds := 0
		for _, row := range rows {
			rounds = max(rounds, row.rounds)
		}
		fmt.Fprintf(w, "\n## redis-benchmark (GET/SET 100 B, 50 clients, medians of %d alternating rounds)\n\n", rounds)
		if slices.ContainsFunc(rows, func(row rbRow) bool { return row.resp3 }) {
			fmt.Fprint(w, "RESP3 rows: redis-benchmark -3 (HELLO 3 on each connection), against the targets that speak RESP3 (not nutcracker or predixy, which close the connection on HELLO 3), each run back to back with its RESP2 row; × RESP2 is RESP3 ÷ RESP2 of the same target, for req/s and for CPU µs/req.\n\n")
		}
		fmt.Fprint(w, "| test | target | req/s | p50 ms | p99 ms | CPU µs/req (GET+SET) | × nutcracker | × predixy | × RESP2 | CPU × RESP2 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, row := range rows {
			cpu := "—"
			if row.cpuUS >= 0 {
				cpu = fmt.Sprintf("%.2f", row.cpuUS)
			}
			test := fmt.Sprintf("%s P%d", row.test, row.depth)
			vs2, cpu2 := "—", "—"
			if row.resp3 {
				test += " RESP3"
				if b, ok := rbFind(rows, row.target, row, false); ok {
					vs2, cpu2 = ratio(row.rps, b.rps), ratio(row.cpuUS, b.cpuUS)
				}
			}
			nc, _ := rbFind(rows, "nutcracker", row, false)
			pd, _ := rbFind(rows, "predixy", row, false)
			fmt.Fprintf(w, "| %s | %s | %.0f | %.3f | %.3f | %s | %s | %s | %s | %s |\n", test, row.target, row.rps, row.p50, row.p99, cpu,
				ratio(row.rps, nc.rps), ratio(row.rps, pd.rps), vs2, cpu2)
		}
		for _, f := range r.rbFailed {
			fmt.Fprintf(w, "\nfailed: %s\n", f)
		}
	}
	if len(r.sys) > 0 {
		fmt.Fprintf(w, "\n## System calls and context switches per request (perf stat, 50 clients)\n\n")
		fmt.Fprintf(w, "Backends: the system calls of the servers behind the proxy (the Redis servers, or the memcacheds), per request; how a proxy batches its writes to them decides how often they wake.\n\n")
		fmt.Fprintf(w, "| scenario | target | syscalls per request | per request | backends |\n|---|---|---:|---|---:|\n")
		for _, s := range r.sys {
			if s.err != nil {
				fmt.Fprintf(w, "| %s | %s | failed: %v | | |\n", s.scenario, s.target, s.err)
				continue
			}
			var parts []string
			for _, row := range s.rows {
				if row.count >= 0.005 {
					parts = append(parts, fmt.Sprintf("%s %.2f", row.name, row.count))
				}
			}
			fmt.Fprintf(w, "| %s | %s | %.2f | %s | %.2f |\n", s.scenario, s.target, s.total, strings.Join(parts, ", "), s.backends)
		}
	}
	r.writeGoals(w)
}

// writeGoals compares each nuthatch variant with the targets.
func (r *report) writeGoals(w io.Writer) {
	var variants []string
	for _, t := range r.targets {
		if t.nuthatch {
			variants = append(variants, t.name)
		}
	}
	if len(variants) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Against the targets (informational)\n\n| target | %s |\n|---|%s\n", strings.Join(variants, " | "), strings.Repeat("---|", len(variants)))
	row := func(label string, cell func(v string) (string, bool, bool)) {
		var cells []string
		any := false
		for _, v := range variants {
			s, ok, have := cell(v)
			if !have {
				cells = append(cells, "—")
				continue
			}
			any = true
			mark := "✗"
			if ok {
				mark = "✓"
			}
			cells = append(cells, s+" "+mark)
		}
		if any {
			fmt.Fprintf(w, "| %s | %s |\n", label, strings.Join(cells, " | "))
		}
	}
	vsNC := func(name string, min float64) func(string) (string, bool, bool) {
		return func(v string) (string, bool, bool) {
			rs := r.find(name)
			if rs == nil {
				return "", false, false
			}
			m, _, ok1 := rs.median(v)
			nc, _, ok2 := rs.median("nutcracker")
			if !ok1 || !ok2 {
				return "", false, false
			}
			cell := fmt.Sprintf("%.2f×", m.rps/nc.rps)
			if lo, hi, ok := rs.pairedRange(v, "nutcracker"); ok {
				cell += fmt.Sprintf(" (rounds %.2f–%.2f)", lo, hi)
			}
			return cell, m.rps >= min*nc.rps, true
		}
	}
	for _, rs := range r.results {
		if min, ok := ratioTarget(rs.sc); ok {
			row(fmt.Sprintf("%s ≥ %.2f× nutcracker", rs.sc.name, min), vsNC(rs.sc.name, min))
		}
	}
	for _, rs := range r.results {
		tol, ok := resp3Target(rs.sc)
		if !ok || rs.base == nil {
			continue
		}
		row(fmt.Sprintf("%s req/s within ±%.0f %% of RESP2", rs.sc.name, tol*100), func(v string) (string, bool, bool) {
			m3, _, ok3 := rs.median(v)
			m2, _, ok2 := rs.base.median(v)
			if !ok2 || !ok3 || m2.rps <= 0 {
				return "", false, false
			}
			q := m3.rps / m2.rps
			cell := fmt.Sprintf("%.2f×", q)
			if lo, hi, ok := pairedRange(rs.samples[v], rs.base.samples[v]); ok {
				cell += fmt.Sprintf(" (rounds %.2f–%.2f)", lo, hi)
			}
			return cell, within(q, tol), true
		})
		row(fmt.Sprintf("%s CPU/req within ±%.0f %% of RESP2", rs.sc.name, tol*100), func(v string) (string, bool, bool) {
			m3, _, ok3 := rs.median(v)
			m2, _, ok2 := rs.base.median(v)
			if !ok2 || !ok3 || m2.cpuUS <= 0 || m3.cpuUS < 0 {
				return "", false, false
			}
			q := m3.cpuUS / m2.cpuUS
			return fmt.Sprintf("%.2f× (%.2f vs %.2f µs)", q, m3.cpuUS, m2.cpuUS), within(q, tol), true
		})
	}
	// What the proxy may spend for a ratio target, given what this run's
	// backends and generator cost beside it: throughput is about machine
	// busy share / total CPU per request, so the target needs total ≤
	// busy × nutcracker's total / (nutcracker's busy × min).
	for _, rs := range r.results {
		min, ok := ratioTarget(rs.sc)
		if !ok {
			continue
		}
		row(fmt.Sprintf("%s: CPU budget for %.2f× (µs/req spent of budget)", rs.sc.name, min), func(v string) (string, bool, bool) {
			b, spent, ok := cpuBudget(rs, v, min)
			if !ok {
				return "", false, false
			}
			return fmt.Sprintf("%.2f of %.2f", spent, b), spent <= b, true
		})
	}
	rbRows := rbMedians(r.rb)
	for _, nc := range rbRows {
		if nc.target != "nutcracker" || nc.resp3 {
			continue
		}
		min := 1.15
		if nc.depth > 1 {
			min = 1.5
		}
		row(fmt.Sprintf("redis-benchmark %s P%d ≥ %.2f× nutcracker", nc.test, nc.depth, min), func(v string) (string, bool, bool) {
			for _, m := range rbRows {
				if m.target == v && m.test == nc.test && m.depth == nc.depth && !m.resp3 && nc.rps > 0 {
					return fmt.Sprintf("%.2f×", m.rps/nc.rps), m.rps >= min*nc.rps, true
				}
			}
			return "", false, false
		})
	}
	type rbTest struct {
		test  string
		depth int
	}
	var rb3 []rbTest
	for _, m := range rbRows {
		if k := (rbTest{m.test, m.depth}); m.resp3 && !slices.Contains(rb3, k) {
			rb3 = append(rb3, k)
		}
	}
	for _, k := range rb3 {
		tol := 0.05
		for _, cpu := range []bool{false, true} {
			what := "req/s"
			if cpu {
				what = "CPU/req"
			}
			row(fmt.Sprintf("redis-benchmark %s P%d RESP3 %s within ±%.0f %% of RESP2", k.test, k.depth, what, tol*100), func(v string) (string, bool, bool) {
				key := rbRow{test: k.test, depth: k.depth}
				m3, ok3 := rbFind(rbRows, v, key, true)
				m2, ok2 := rbFind(rbRows, v, key, false)
				a, b := m3.rps, m2.rps
				if cpu {
					a, b = m3.cpuUS, m2.cpuUS
				}
				if !ok2 || !ok3 || a < 0 || b <= 0 {
					return "", false, false
				}
				return fmt.Sprintf("%.2f×", a/b), within(a/b, tol), true
			})
		}
	}
	for _, rs := range r.results {
		if rs.sc.group != groupUnpipelined && !rs.sc.rate {
			continue
		}
		row(fmt.Sprintf("%s p99 ≤ nutcracker's", rs.sc.name), func(v string) (string, bool, bool) {
			m, _, ok1 := rs.median(v)
			nc, _, ok2 := rs.median("nutcracker")
			if !ok1 || !ok2 {
				return "", false, false
			}
			return fmt.Sprintf("%s vs %s µs", us(m.p99), us(nc.p99)), m.p99 <= nc.p99, true
		})
	}
	for _, rs := range r.results {
		limit := 0.0
		switch rs.sc.group {
		case groupUnpipelined:
			limit = 17
		case groupPipelined:
			limit = 1.7
		default:
			continue
		}
		row(fmt.Sprintf("%s CPU ≤ %.1f µs/req", rs.sc.name, limit), func(v string) (string, bool, bool) {
			m, _, ok := rs.median(v)
			if !ok {
				return "", false, false
			}
			return fmt.Sprintf("%.2f", m.cpuUS), m.cpuUS <= limit, true
		})
	}
	// The CPU target is "≤ predixy's"; its figures (17 and 1.7 µs)
	// were predixy's at 100 B on the reference machine.
	for _, rs := range r.results {
		pd, _, ok := rs.median("predixy")
		if !ok || pd.cpuUS < 0 || rs.sc.pinned || rs.sc.rate {
			continue
		}
		row(fmt.Sprintf("%s CPU ≤ predixy's", rs.sc.name), func(v string) (string, bool, bool) {
			m, _, ok := rs.median(v)
			if !ok {
				return "", false, false
			}
			return fmt.Sprintf("%.2f vs %.2f", m.cpuUS, pd.cpuUS), m.cpuUS <= pd.cpuUS, true
		})
	}
	row("idle client ≤ 4 KB RSS (after one GET)", func(v string) (string, bool, bool) {
		for _, i := range r.idle {
			if i.target == v && i.res.err == nil {
				return fmt.Sprintf("%.0f B", i.res.perClient[1]), i.res.perClient[1] <= 4096, true
			}
		}
		return "", false, false
	})
}

// ratioTarget is the throughput target for sc against nutcracker:
// 1.15× unpipelined, 1.5× 16 deep, 1.3× for multi-key gets.
func ratioTarget(sc scenario) (float64, bool) {
	switch {
	case sc.group == groupUnpipelined:
		return 1.15, true
	case sc.group == groupPipelined:
		return 1.5, true
	case sc.op == "mget":
		return 1.3, true
	}
	return 0, false
}

// resp3Target is the target for a RESP3 scenario: throughput and
// CPU per request within ±5 % of the same target's RESP2 run.
func resp3Target(sc scenario) (float64, bool) {
	if sc.group == groupRESP3 && sc.resp3 {
		return 0.05, true
	}
	return 0, false
}

// within reports whether ratio q is within ±tol of 1 (a ratio that
// prints as 0.95 meets ±5 %, floating point notwithstanding).
func within(q, tol float64) bool { return math.Abs(q-1) <= tol+1e-9 }

// writeRESP3 is the RESP3 group's table: each RESP3 scenario beside its
// RESP2 half, per target, with the ratios of the two.
func (r *report) writeRESP3(w io.Writer) {
	fmt.Fprintln(w, "Each target in both protocol versions, the same load; within a round a target's RESP2 and RESP3 runs are back to back (RESP2 first in odd rounds, RESP3 first in even ones). RESP3 clients send HELLO 3 on each connection first; nuthatch sends their requests over its RESP3 server links and forwards the replies byte for byte. nutcracker and predixy are not in this group: they close the connection on HELLO 3. Ratios are RESP3 ÷ RESP2 of the same target's medians; [rounds] is the range of the per-round ratios. Backends: CPU µs/req of the redis-servers.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | target | RESP2 req/s | RESP3 req/s | req/s RESP3 ÷ RESP2 [rounds] | CPU µs/req RESP2 | CPU µs/req RESP3 | CPU RESP3 ÷ RESP2 | backends RESP3 ÷ RESP2 | p99 µs RESP2 / RESP3 |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, rs := range r.results {
		if rs.base == nil {
			continue
		}
		label := strings.TrimSpace(strings.TrimPrefix(rs.sc.name, "RESP3"))
		for _, t := range r.targets {
			m3, _, ok3 := rs.median(t.name)
			m2, _, ok2 := rs.base.median(t.name)
			if !ok2 || !ok3 {
				e, failed := rs.errs[t.name]
				if e2, failed2 := rs.base.errs[t.name]; failed2 && !failed {
					e, failed = "RESP2: "+e2, true
				}
				if failed {
					fmt.Fprintf(w, "| %s | %s | failed: %s ||||||||\n", label, t.name, e)
				}
				continue
			}
			name := t.name
			if n := m2.errors + m3.errors; n > 0 {
				name += fmt.Sprintf(" (%d error replies)", n)
			}
			if n := m2.misses + m3.misses; n > 0 && rs.sc.op != "set" {
				name += fmt.Sprintf(" (%d misses)", n)
			}
			rps := ratio(m3.rps, m2.rps)
			if lo, hi, ok := pairedRange(rs.samples[t.name], rs.base.samples[t.name]); ok && rps != "—" {
				rps += fmt.Sprintf(" [%.2f–%.2f]", lo, hi)
			}
			cpu2, cpu3 := "—", "—"
			if m2.cpuUS >= 0 && m3.cpuUS >= 0 {
				cpu2, cpu3 = fmt.Sprintf("%.2f", m2.cpuUS), fmt.Sprintf("%.2f", m3.cpuUS)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s / %s |\n",
				label, name, m2.rps, m3.rps, rps, cpu2, cpu3, ratio(m3.cpuUS, m2.cpuUS), ratio(m3.backendUS, m2.backendUS),
				us(m2.p99), us(m3.p99))
		}
	}
	last := ""
	for _, rs := range r.results {
		if rs.base != nil && rs.loadAvg != "" {
			last = rs.loadAvg
		}
	}
	if last != "" {
		fmt.Fprintf(w, "\nLoad average after the group's last scenario: %s\n", last)
	}
}

// cpuBudget is the CPU per request that variant v could have spent and
// still reached min × nutcracker's throughput, had the backends, the
// generator and the machine's busy share stayed as measured; spent is what
// it did spend.
func cpuBudget(rs *scenarioResult, v string, min float64) (budget, spent float64, ok bool) {
	m, _, ok1 := rs.median(v)
	nc, _, ok2 := rs.median("nutcracker")
	if !ok1 || !ok2 || m.cpuUS < 0 || nc.cpuUS < 0 || m.backendUS < 0 || nc.backendUS < 0 ||
		m.genUS < 0 || nc.genUS < 0 || m.machineBusy <= 0 || nc.machineBusy <= 0 {
		return 0, 0, false
	}
	ncTotal := nc.cpuUS + nc.backendUS + nc.genUS
	return m.machineBusy*ncTotal/(nc.machineBusy*min) - m.backendUS - m.genUS, m.cpuUS, true
}

// shipped is the target that runs the shipped configuration.
const shipped = "nuthatch-auto"

// writeShipped leads the report with what a user gets from the shipped
// configuration: its throughput against nutcracker (and predixy) with the
// project's generator and with redis-benchmark, and its CPU per request
// against one worker's, beside the targets.
func (r *report) writeShipped(w io.Writer) {
	var lines []string
	for _, rs := range r.results {
		min, ok := ratioTarget(rs.sc)
		if !ok || rs.sc.resp3 {
			continue
		}
		m, _, ok1 := rs.median(shipped)
		nc, _, ok2 := rs.median("nutcracker")
		if !ok1 || !ok2 || nc.rps <= 0 {
			continue
		}
		px := "—"
		if p, _, ok := rs.median("predixy"); ok && p.rps > 0 {
			px = fmt.Sprintf("%.2f×", m.rps/p.rps)
		}
		cpu1 := "—"
		if one, _, ok := rs.median("nuthatch-1"); ok && one.cpuUS > 0 && m.cpuUS > 0 {
			cpu1 = fmt.Sprintf("%.2f×", m.cpuUS/one.cpuUS)
		}
		mark := "✗"
		if m.rps >= min*nc.rps {
			mark = "✓"
		}
		lines = append(lines, fmt.Sprintf("| %s (generator) | %.0f | %.2f× %s (≥ %.2f×) | %s | %.2f | %s |",
			rs.sc.name, m.rps, m.rps/nc.rps, mark, min, px, m.cpuUS, cpu1))
	}
	rows := rbMedians(r.rb)
	for _, m := range rows {
		if m.target != shipped || m.resp3 {
			continue
		}
		nc, ok := rbFind(rows, "nutcracker", m, false)
		if !ok || nc.rps <= 0 {
			continue
		}
		min := 1.15
		if m.depth > 1 {
			min = 1.5
		}
		px := "—"
		if p, ok := rbFind(rows, "predixy", m, false); ok && p.rps > 0 {
			px = fmt.Sprintf("%.2f×", m.rps/p.rps)
		}
		cpu1 := "—"
		if one, ok := rbFind(rows, "nuthatch-1", m, false); ok && one.cpuUS > 0 && m.cpuUS > 0 {
			cpu1 = fmt.Sprintf("%.2f×", m.cpuUS/one.cpuUS)
		}
		mark := "✗"
		if m.rps >= min*nc.rps {
			mark = "✓"
		}
		lines = append(lines, fmt.Sprintf("| redis-benchmark %s P%d | %.0f | %.2f× %s (≥ %.2f×) | %s | %.2f | %s |",
			m.test, m.depth, m.rps, m.rps/nc.rps, mark, min, px, m.cpuUS, cpu1))
	}
	var lat []string
	for _, rs := range r.results {
		if rs.sc.loadOf == 0 {
			continue
		}
		m, _, ok1 := rs.median(shipped)
		nc, _, ok2 := rs.median("nutcracker")
		if !ok1 || !ok2 || nc.p50 <= 0 || nc.p99 <= 0 {
			continue
		}
		px := "—"
		if p, _, ok := rs.median("predixy"); ok {
			px = fmt.Sprintf("%s / %s / %s", us(p.p50), us(p.p99), us(p.p999))
		}
		q50, q99 := float64(m.p50)/float64(nc.p50), float64(m.p99)/float64(nc.p99)
		floor := "—"
		if d, _, ok := rs.median("direct"); ok && d.p50 > 0 && d.p99 > 0 {
			floor = fmt.Sprintf("%.2f× / %.2f×", float64(d.p50)/float64(nc.p50), float64(d.p99)/float64(nc.p99))
		}
		goal := "—"
		if rs.sc.loadOf >= 0.8 {
			goal = "✗"
			if q50 <= 0.5 && q99 <= 0.5 {
				goal = "✓"
			}
		}
		lat = append(lat, fmt.Sprintf("| %.0f %% (%.0f req/s) | %s / %s / %s | %s / %s / %s | %s | %.2f× / %.2f× | %s | %s |",
			rs.sc.loadOf*100, rs.sc.rateRPS, us(m.p50), us(m.p99), us(m.p999), us(nc.p50), us(nc.p99), us(nc.p999), px, q50, q99, floor, goal))
	}
	if len(lines) == 0 && len(lat) == 0 {
		return
	}
	note := ""
	for _, t := range r.targets {
		if t.name == shipped {
			note = t.note
		}
	}
	fmt.Fprintf(w, "\n## What you get with the shipped configuration\n\n%s. Medians of the rounds below; CPU is the proxy's, µs per request (redis-benchmark rows: GET and SET together).\n\n", note)
	fmt.Fprint(w, "| scenario | req/s | × nutcracker (target) | × predixy | CPU µs/req | CPU × 1 worker |\n|---|---:|---:|---:|---:|---:|\n")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if len(lat) > 0 {
		fmt.Fprint(w, "\nLatency, open loop at a share of nutcracker's unpipelined GET throughput (p50 / p99 / p99.9 µs from the intended send time; goal: p50 and p99 ≤ 0.5× nutcracker's at 80 and 95 %; direct ÷ nutcracker is the floor, the generator straight to the backends, which no proxy can beat):\n\n")
		fmt.Fprint(w, "| load | shipped | nutcracker | predixy | shipped ÷ nutcracker p50 / p99 | direct ÷ nutcracker p50 / p99 | goal |\n|---|---:|---:|---:|---:|---:|---|\n")
		for _, l := range lat {
			fmt.Fprintln(w, l)
		}
	}
}
