package main

import (
	"cmp"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nuthatch-proxy/nuthatch/test/bench/load"
)

type scenario struct {
	name     string
	group    string
	proto    load.Protocol
	op       load.Op
	size     int
	prefix   string
	pipeline int
	multi    int
	rate     bool
	rateRPS  float64
	// loadOf sets a fixed-rate scenario's rate to this share of
	// nutcracker's unpipelined GET 100 B throughput in the same run.
	loadOf float64
	// pinned scenarios run with each proxy on CPU 0 and the generator and
	// backends on CPU 1 (pin.go), over the pinnable targets only.
	pinned bool
	// resp3 scenarios send HELLO 3 on each connection first and so
	// receive RESP3 replies.
	resp3 bool
}

// quickackScenario is where the tcp_quickack target runs: the
// unpipelined GET/SET 100 B scenarios, where a delayed ACK can stall a
// lone request, and the fixed-rate ones, whose tail shows the stalls.
func quickackScenario(sc scenario) bool {
	if sc.pinned {
		return false
	}
	return (sc.rate && sc.loadOf == 0) || (sc.pipeline == 1 && sc.size == 100 && sc.multi == 0 && (sc.op == load.Get || sc.op == load.Set))
}

// Scenario groups, in report order.
const (
	groupUnpipelined = "Redis, unpipelined (50 clients)"
	groupPipelined   = "Redis, pipelined 16 deep (50 clients)"
	groupMulti       = "Redis MGET of 10 keys over both servers (50 clients, unpipelined)"
	groupMemcache    = "memcached (50 clients, unpipelined)"
	groupRate        = "Fixed rate, Redis GET 100 B (50 clients, open loop; latency from the intended send time)"
	groupLatency     = "Latency at 50, 80 and 95 % of nutcracker's capacity (Redis GET 100 B, 50 clients, open loop; latency from the intended send time)"
	groupPinned      = "Per core: each proxy pinned to CPU 0, generator and backends to CPU 1 (Redis, 50 clients)"
	groupRESP3       = "Redis RESP3 against RESP2 (50 clients)"
)

// resp3Scenarios is the RESP3 group: each scenario is the RESP3 half of a
// pair whose RESP2 half (resp2Of) runs the same load on the same targets
// in the same rounds. Only targets that speak RESP3 take part.
func resp3Scenarios() []scenario {
	var s []scenario
	for _, depth := range []int{1, 16} {
		suffix := ""
		if depth > 1 {
			suffix = " P16"
		}
		for _, op := range []load.Op{load.Get, load.Set} {
			s = append(s, scenario{
				name:  fmt.Sprintf("RESP3 %s 100B%s", strings.ToUpper(string(op)), suffix),
				group: groupRESP3, proto: load.Redis, op: op, size: 100, prefix: "k100:", pipeline: depth, resp3: true,
			})
		}
	}
	return s
}

// resp2Of is the RESP2 half of a RESP3 scenario's pair.
func resp2Of(sc scenario) scenario {
	sc.resp3 = false
	sc.name = "RESP2" + strings.TrimPrefix(sc.name, "RESP3")
	return sc
}

// resp3Group runs the RESP3 pairs that -only selects (by either half's
// name).
func (e *env) resp3Group(ctx context.Context, o options, rep *report) error {
	start := time.Now()
	ran := false
	for _, sc := range resp3Scenarios() {
		if o.only != nil && !o.only.MatchString(sc.name) && !o.only.MatchString(resp2Of(sc).name) {
			continue
		}
		if err := e.runPair(ctx, o, rep, sc); err != nil {
			return err
		}
		ran = true
	}
	if ran {
		logf("RESP3 group took %v", time.Since(start).Round(time.Second))
	}
	return nil
}

// runPair runs a RESP3 scenario and its RESP2 half in alternating rounds,
// each target's two runs back to back (RESP2 first in odd rounds, RESP3
// first in even ones), so that the ratio of a round compares two runs
// that met the same machine.
func (e *env) runPair(ctx context.Context, o options, rep *report, sc scenario) error {
	rs2 := rep.add(resp2Of(sc))
	rs3 := rep.add(sc)
	rs3.base = rs2
	for round := range o.rounds {
		for _, t := range rep.targets {
			addrs := t.addrs(true)
			if addrs == nil || !t.runs(sc) {
				continue
			}
			halves := []*scenarioResult{rs2, rs3}
			if round%2 == 1 {
				halves[0], halves[1] = rs3, rs2
			}
			for _, rs := range halves {
				m, err := e.measure(ctx, o, t, rs.sc, addrs)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					logf("%s round %d on %s: %v", rs.sc.name, round+1, t.name, err)
					rs.failed(t.name, err)
					continue
				}
				rs.record(t.name, m)
			}
		}
	}
	rs2.loadAvg, rs3.loadAvg = loadAvg(), loadAvg()
	var parts []string
	for _, t := range rep.targets {
		m3, _, ok3 := rs3.median(t.name)
		m2, _, ok2 := rs2.median(t.name)
		if ok2 && ok3 {
			parts = append(parts, fmt.Sprintf("%s %.0f/%.0f = %s", t.name, m3.rps, m2.rps, ratio(m3.rps, m2.rps)))
		}
	}
	logf("%-26s RESP3/RESP2 %s (load %s)", sc.name, strings.Join(parts, ", "), rs3.loadAvg)
	return nil
}

// pinnedScenarios is the per-core capacity group (pin.go).
func pinnedScenarios() []scenario {
	return []scenario{
		{name: "pinned redis GET 100B", group: groupPinned, proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", pipeline: 1, pinned: true},
		{name: "pinned redis GET 100B P16", group: groupPinned, proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", pipeline: 16, pinned: true},
	}
}

func scenarios() []scenario {
	var s []scenario
	for _, depth := range []int{1, 16} {
		group, suffix := groupUnpipelined, ""
		if depth > 1 {
			group, suffix = groupPipelined, " P16"
		}
		for _, v := range []struct {
			size   int
			label  string
			prefix string
		}{{100, "100B", "k100:"}, {4096, "4KB", "k4k:"}} {
			for _, op := range []load.Op{load.Get, load.Set} {
				s = append(s, scenario{
					name:  fmt.Sprintf("redis %s %s%s", strings.ToUpper(string(op)), v.label, suffix),
					group: group, proto: load.Redis, op: op, size: v.size, prefix: v.prefix, pipeline: depth,
				})
			}
		}
	}
	s = append(s,
		scenario{name: "redis MGET 10x100B", group: groupMulti, proto: load.Redis, op: load.MGet, size: 100, prefix: "k100:", pipeline: 1, multi: 10},
		scenario{name: "mc get 100B", group: groupMemcache, proto: load.Memcache, op: load.Get, size: 100, prefix: "m100:", pipeline: 1},
		scenario{name: "mc set 100B", group: groupMemcache, proto: load.Memcache, op: load.Set, size: 100, prefix: "m100:", pipeline: 1},
		scenario{name: "mc get 10 keys", group: groupMemcache, proto: load.Memcache, op: load.MGet, size: 100, prefix: "m100:", pipeline: 1, multi: 10},
		scenario{name: "redis GET 100B fixed-rate", group: groupRate, proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", rate: true},
	)
	for _, pct := range []int{50, 80, 95} {
		s = append(s, scenario{name: fmt.Sprintf("redis GET 100B at %d%% of nutcracker", pct), group: groupLatency, proto: load.Redis,
			op: load.Get, size: 100, prefix: "k100:", rate: true, loadOf: float64(pct) / 100})
	}
	return s
}

func (e *env) runScenario(ctx context.Context, o options, rep *report, sc scenario) error {
	rs := rep.add(sc)
	for round := range o.rounds {
		for _, t := range rep.targets {
			addrs := t.addrs(sc.proto == load.Redis)
			if addrs == nil || !t.runs(sc) {
				continue
			}
			m, err := e.measure(ctx, o, t, sc, addrs)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				logf("%s round %d on %s: %v", sc.name, round+1, t.name, err)
				rs.failed(t.name, err)
				continue
			}
			rs.record(t.name, m)
		}
	}
	rs.loadAvg = loadAvg()
	logf("%-26s %s (load %s)", sc.name, rs.summary(rep.targets), rs.loadAvg)
	return nil
}

func (e *env) measure(ctx context.Context, o options, t *target, sc scenario, addrs []string) (sample, error) {
	pids := tree(t.pid())
	backends := e.pidsOf(isBackend)
	if t.backendPids != nil {
		backends = t.backendPids
	}
	self := []int{os.Getpid()}
	var (
		c0, c1 int64
		k0, k1 int64 // the proxy's stime
		b0, b1 int64 // backends
		g0, g1 int64 // this process: the load generator
		s0, s1 map[string]cpuTimes
		rss    *rssSampler
		peak   int64
	)
	// How busy each core was (interrupts included, which no process is
	// charged for): in the pinned group it says which side was the limit,
	// elsewhere whether the machine had CPU to spare.
	stat := func() map[string]cpuTimes {
		b, _ := os.ReadFile("/proc/stat")
		return parseCPUStat(string(b))
	}
	ticks := func() (int64, int64, int64, int64, map[string]cpuTimes) {
		u, s := cpuSplit(pids)
		return u + s, s, cpuTicks(backends), cpuTicks(self), stat()
	}
	spec := load.Spec{
		Protocol: sc.proto, Op: sc.op, Addrs: addrs, Clients: o.clients, Pipeline: sc.pipeline,
		Rate: sc.rateRPS, ValueSize: sc.size, Keys: o.keys, KeyPrefix: sc.prefix, MultiKeys: sc.multi,
		Threads: o.threads, RESP3: sc.resp3,
		Warmup: o.warmup, Duration: o.duration,
		OnStart: func() { c0, k0, b0, g0, s0 = ticks(); rss = sampleRSS(t.pid()) },
		OnStop:  func() { c1, k1, b1, g1, s1 = ticks(); peak = rss.finish() },
	}
	if sc.rate {
		spec.Duration = o.rateDuration
	}
	res, err := load.Run(ctx, spec)
	if err != nil {
		return sample{}, err
	}
	m := sample{
		rps: res.Throughput(), p50: res.Latency.Quantile(0.5), p99: res.Latency.Quantile(0.99),
		p999: res.Latency.Quantile(0.999), errors: res.Errors, misses: res.Misses, cpuUS: -1, sysUS: -1, rssKB: peak,
	}
	perReq := func(ticks int64) float64 {
		return float64(ticks) / float64(e.clkTck) * 1e6 / float64(res.Requests)
	}
	m.backendUS, m.genUS = -1, -1
	if res.Requests > 0 {
		if t.proc != nil {
			m.cpuUS, m.sysUS = perReq(c1-c0), perReq(k1-k0)
		}
		m.backendUS, m.genUS = perReq(b1-b0), perReq(g1-g0)
	}
	m.machineBusy = machineBusy(s0, s1)
	if res.Lag != nil {
		m.lag99 = res.Lag.Quantile(0.99)
	}
	m.count, m.slow, m.max = res.Latency.Count(), res.Latency.CountAtLeast(slowLatency), res.Latency.Max()
	m.coreBusy = [2]float64{-1, -1}
	for i, cpu := range []string{"cpu" + proxyCPU, "cpu" + loadCPU} {
		if a, ok := s0[cpu]; ok && sc.pinned {
			m.coreBusy[i] = a.busyUntil(s1[cpu])
		}
	}
	return m, nil
}

// idle opens o.idle client connections to each target and reports the
// growth of the target's RSS per client: once only connected, once after
// each client sent one GET. Each measure starts from a freshly started
// proxy, so that memory kept from earlier runs does not hide the cost.
func (e *env) idle(ctx context.Context, o options, rep *report) error {
	for _, t := range rep.targets {
		if t.redis == nil || t.only != nil {
			continue
		}
		var r idleResult
		for i, warm := range []bool{false, true} {
			if err := e.restart(ctx, t); err != nil {
				return fmt.Errorf("restart %s: %w", t.name, err)
			}
			time.Sleep(300 * time.Millisecond) // let a master start its workers' runtimes
			pids := tree(t.pid())
			if t.proc == nil {
				pids = e.pidsOf(isRedis)
			}
			before := rssKB(pids)
			var sets []*load.IdleSet
			var err error
			per := o.idle / len(t.redis)
			for _, a := range t.redis {
				var s *load.IdleSet
				if s, err = load.OpenIdle(ctx, load.Redis, a, "k100:", per, warm); err != nil {
					break
				}
				sets = append(sets, s)
			}
			if err == nil {
				time.Sleep(500 * time.Millisecond) // let the proxy settle (lazy buffers)
				after := rssKB(pids)
				r.perClient[i] = float64(after-before) * 1024 / float64(per*len(t.redis))
				r.rssKB[i] = after
			}
			for _, s := range sets {
				s.Close()
			}
			time.Sleep(500 * time.Millisecond) // let it close them
			if err != nil {
				logf("idle on %s: %v", t.name, err)
				r.err = err
				break
			}
		}
		r.clients = o.idle
		rep.idle = append(rep.idle, idleRow{target: t.name, res: r})
		logf("idle %-14s %6.0f B/client connected, %6.0f B/client after one GET", t.name, r.perClient[0], r.perClient[1])
	}
	return nil
}

func isBackend(name string) bool {
	return strings.HasPrefix(name, "redis-") || strings.HasPrefix(name, "memcached-")
}

func isRedis(name string) bool { return strings.HasPrefix(name, "redis-") }

// pidsOf is the pids of the processes the driver started whose name
// passes keep: isBackend for what all backends cost per request, isRedis
// for the Redis servers alone.
func (e *env) pidsOf(keep func(name string) bool) []int {
	var pids []int
	e.procs.mu.Lock()
	defer e.procs.mu.Unlock()
	for _, p := range e.procs.procs {
		if keep(p.name) {
			pids = append(pids, p.pid())
		}
	}
	return pids
}

// redisBenchmark runs redis-benchmark GET/SET 100 B against every Redis
// target, unpipelined and 16 deep, as a cross-check of the Go generator;
// against the targets that speak RESP3 also with -3 (RESP3), back to back
// with the RESP2 run. -only "redis-benchmark RESP3" (or anything that
// matches that and not "redis-benchmark", such as "RESP3") runs only the
// RESP3 targets, in both versions.
func (e *env) redisBenchmark(ctx context.Context, o options, rep *report) error {
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		rep.notes = append(rep.notes, "redis-benchmark cross-check skipped: not installed")
		return nil
	}
	all := o.only == nil || o.only.MatchString("redis-benchmark")
	resp3 := o.only == nil || o.only.MatchString("redis-benchmark RESP3")
	var resp3Time time.Duration
	// Alternating rounds, as the other scenarios: one redis-benchmark
	// run is at the mercy of whatever else the machine did during it, and
	// its runs are short: at least 5 rounds by default.
	for round := range max(o.rounds, o.rbRounds) {
		for _, depth := range []int{1, 16} {
			n := 100000
			if depth > 1 {
				n = 400000
			}
			for _, t := range rep.targets {
				if t.redis == nil || t.only != nil {
					continue
				}
				var versions []bool
				if all || resp3 && t.resp3 {
					versions = append(versions, false)
				}
				if resp3 && t.resp3 {
					versions = append(versions, true)
				}
				if round%2 == 1 {
					slices.Reverse(versions)
				}
				for _, v3 := range versions {
					start := time.Now()
					err := e.redisBenchmarkRun(ctx, rep, t, round, depth, n, o, v3)
					if v3 {
						resp3Time += time.Since(start)
					}
					if err != nil {
						return err
					}
				}
			}
		}
	}
	logf("redis-benchmark cross-check done, RESP3 runs %v (load %s)", resp3Time.Round(time.Second), loadAvg())
	return nil
}

// redisBenchmarkRun is one redis-benchmark invocation (GET and SET)
// against t; only a cancelled context is an error, a failed run is
// recorded in the report.
func (e *env) redisBenchmarkRun(ctx context.Context, rep *report, t *target, round, depth, n int, o options, resp3 bool) error {
	pids := tree(t.pid())
	c0 := cpuTicks(pids)
	rows, err := runRedisBenchmark(ctx, t.redis, o.clients, n, depth, o.keys, resp3)
	c1 := cpuTicks(pids)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	proto := ""
	if resp3 {
		proto = " RESP3"
	}
	if err != nil {
		logf("redis-benchmark%s round %d on %s: %v", proto, round+1, t.name, err)
		rep.rbFailed = append(rep.rbFailed, fmt.Sprintf("%s P%d%s: %v", t.name, depth, proto, err))
		return nil
	}
	cpu := -1.0
	if t.proc != nil {
		cpu = float64(c1-c0) / float64(e.clkTck) * 1e6 / float64(2*n)
	}
	var parts []string
	for _, r := range rows {
		r.target, r.depth, r.cpuUS, r.resp3 = t.name, depth, cpu, resp3
		rep.rb = append(rep.rb, r)
		parts = append(parts, fmt.Sprintf("%s %.0f", r.test, r.rps))
	}
	logf("redis-benchmark P%d%s round %d %-14s %s, %.2f µs/req", depth, proto, round+1, t.name, strings.Join(parts, " "), cpu)
	return nil
}

type rbRow struct {
	target   string
	test     string
	depth    int
	resp3    bool // redis-benchmark -3
	rps      float64
	p50, p99 float64 // ms
	cpuUS    float64 // for the whole invocation (GET and SET)
	// clientUS and nodeUS (cluster group) are redis-benchmark's own CPU
	// and the cluster nodes' per request.
	clientUS, nodeUS float64
	instances        int
	rounds           int // of a median row: how many rounds it summarises
}

// rbMedians folds the rounds of each (target, test, depth) into one row
// of per-field medians, in the order the rows first appeared.
func rbMedians(rows []rbRow) []rbRow {
	type key struct {
		target, test string
		depth        int
		resp3        bool
	}
	var order []key
	groups := map[key][]rbRow{}
	for _, r := range rows {
		k := key{r.target, r.test, r.depth, r.resp3}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]rbRow, 0, len(order))
	for _, k := range order {
		g := groups[k]
		field := func(f func(rbRow) float64) float64 {
			v := make([]float64, len(g))
			for i, r := range g {
				v[i] = f(r)
			}
			return median(v)
		}
		out = append(out, rbRow{target: k.target, test: k.test, depth: k.depth, resp3: k.resp3, instances: g[0].instances, rounds: len(g),
			rps:      field(func(r rbRow) float64 { return r.rps }),
			p50:      field(func(r rbRow) float64 { return r.p50 }),
			p99:      field(func(r rbRow) float64 { return r.p99 }),
			cpuUS:    field(func(r rbRow) float64 { return r.cpuUS }),
			clientUS: field(func(r rbRow) float64 { return r.clientUS }),
			nodeUS:   field(func(r rbRow) float64 { return r.nodeUS })})
	}
	return out
}

// rbFind is the median row of target for like's test and depth, in RESP3
// or RESP2.
func rbFind(rows []rbRow, target string, like rbRow, resp3 bool) (rbRow, bool) {
	for _, o := range rows {
		if o.target == target && o.test == like.test && o.depth == like.depth && o.resp3 == resp3 {
			return o, true
		}
	}
	return rbRow{}, false
}

// runRedisBenchmark runs one redis-benchmark per address (clients split
// between them) at once and sums their throughput.
func runRedisBenchmark(ctx context.Context, addrs []string, clients, n, depth, keys int, resp3 bool) ([]rbRow, error) {
	type out struct {
		rows []rbRow
		err  error
	}
	outs := make([]out, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		host, port, _ := strings.Cut(a, ":")
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"-h", host, "-p", port,
				"-c", strconv.Itoa(clients / len(addrs)), "-n", strconv.Itoa(n / len(addrs)), "-P", strconv.Itoa(depth),
				"-r", strconv.Itoa(keys), "-d", "100", "-t", "get,set", "--csv"}
			if resp3 {
				args = append(args, "-3")
			}
			b, err := exec.CommandContext(ctx, "redis-benchmark", args...).Output()
			if err != nil {
				outs[i].err = fmt.Errorf("redis-benchmark: %w", err)
				return
			}
			outs[i].rows, outs[i].err = parseRBCSV(string(b))
		}()
	}
	wg.Wait()
	var rows []rbRow
	for i, o := range outs {
		if o.err != nil {
			return nil, o.err
		}
		for _, r := range o.rows {
			if i == 0 {
				r.instances = 1
				rows = append(rows, r)
				continue
			}
			for j := range rows {
				if rows[j].test == r.test {
					rows[j].rps += r.rps
					rows[j].p50 = max(rows[j].p50, r.p50)
					rows[j].p99 = max(rows[j].p99, r.p99)
					rows[j].instances++
				}
			}
		}
	}
	return rows, nil
}

// parseRBCSV reads redis-benchmark --csv: a header
// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
// "p95_latency_ms","p99_latency_ms","max_latency_ms", then one row a test.
func parseRBCSV(s string) ([]rbRow, error) {
	recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil || len(recs) < 2 {
		return nil, fmt.Errorf("redis-benchmark: unexpected output %q", s)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"test", "rps", "p50_latency_ms", "p99_latency_ms"} {
		if _, ok := col[h]; !ok {
			return nil, fmt.Errorf("redis-benchmark: no %q column in %q", h, recs[0])
		}
	}
	var rows []rbRow
	for _, r := range recs[1:] {
		rps, _ := strconv.ParseFloat(r[col["rps"]], 64)
		p50, _ := strconv.ParseFloat(r[col["p50_latency_ms"]], 64)
		p99, _ := strconv.ParseFloat(r[col["p99_latency_ms"]], 64)
		rows = append(rows, rbRow{test: r[col["test"]], rps: rps, p50: p50, p99: p99})
	}
	return rows, nil
}

// profileRun starts test/bench/profile (nuthatch's engine in-process with
// a CPU profile) and loads it: GET then SET 100 B unpipelined, GET and
// SET 100 B and SET 4 KB 16 deep, a Redis MGET and a memcached get of 10
// keys. It returns `go tool pprof -top` of each. -only selects them all
// with "profile", one by its name ("cpu-mc-multiget").
func (e *env) profileRun(ctx context.Context, o options, b *backends) (string, error) {
	if _, err := os.Stat(e.profileBin); err != nil {
		return "", fmt.Errorf("no profile binary at %s (go build -o %s ./test/bench/profile)", e.profileBin, e.profileBin)
	}
	var report strings.Builder
	for _, pr := range profiles() {
		if o.only != nil && !o.only.MatchString("profile") && !o.only.MatchString(pr.name) {
			continue
		}
		rp, mp, _, err := freePorts3()
		if err != nil {
			return "", err
		}
		conf := filepath.Join(e.dir, pr.name+".hcl")
		if err := os.WriteFile(conf, []byte(nuthatchConfig("1", false, rp, mp, b)), 0o644); err != nil {
			return "", err
		}
		profPath := filepath.Join(e.dir, pr.name+".pprof")
		p, err := e.procs.start(pr.name, e.profileBin, "-c", conf, "-cpuprofile", profPath)
		if err != nil {
			return "", err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", rp)
		if err := waitPort(ctx, p, addr); err != nil {
			return "", err
		}
		t := &target{name: pr.name, proc: p, redis: []string{addr}, mc: []string{fmt.Sprintf("127.0.0.1:%d", mp)}}
		var lines []string
		for _, sc := range pr.runs {
			oo := o
			oo.duration = o.profile
			m, err := e.measure(ctx, oo, t, sc, t.addrs(sc.proto == load.Redis))
			if err != nil {
				return "", err
			}
			lines = append(lines, fmt.Sprintf("%s: %.0f req/s, %.1f µs CPU/req", sc.name, m.rps, m.cpuUS))
		}
		_ = syscall.Kill(p.pid(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			return "", fmt.Errorf("%s did not exit", pr.name)
		}
		top, err := exec.CommandContext(ctx, goTool(), "tool", "pprof", "-top", "-nodecount=30", e.profileBin, profPath).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go tool pprof: %w: %s", err, top)
		}
		cum, _ := exec.CommandContext(ctx, goTool(), "tool", "pprof", "-top", "-cum", "-nodecount=30", e.profileBin, profPath).CombinedOutput()
		if e.profileDir != "" {
			_ = copyFile(profPath, filepath.Join(e.profileDir, "bench-"+pr.name+".pprof"))
		}
		fmt.Fprintf(&report, "### %s\n\n%s\n\n```\n%s```\n\nBy cumulative time:\n\n```\n%s```\n\n", pr.title, strings.Join(lines, "; "), top, cum)
		logf("profile %s written", pr.name)
	}
	return report.String(), nil
}

func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// syscallRow is one counted event per request.
type syscallRow struct {
	name  string
	count float64 // per request
}

type syscallResult struct {
	scenario string
	target   string
	requests uint64
	total    float64 // system calls per request
	backends float64 // the backends' system calls per request
	rows     []syscallRow
	err      error
}

// syscallEvents are counted with perf stat's syscall tracepoints, which
// cost little (counting, no sampling) and do not change the batching the
// way ptrace would.
var syscallEvents = []string{
	"raw_syscalls:sys_enter", "context-switches",
	"syscalls:sys_enter_read", "syscalls:sys_enter_write", "syscalls:sys_enter_writev",
	"syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_epoll_ctl",
	"syscalls:sys_enter_futex", "syscalls:sys_enter_nanosleep", "syscalls:sys_enter_sched_yield",
	"syscalls:sys_enter_getpeername",
	"syscalls:sys_enter_sendmsg", "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_sendto", "syscalls:sys_enter_recvmsg",
}

// syscalls counts each proxy's system calls and context switches per
// request with perf stat: unpipelined GET 100 B, GET 100 B and SET 4 KB
// 16 deep, and a memcached 10-key get.
func (e *env) syscalls(ctx context.Context, o options, rep *report) error {
	if err := exec.Command("perf", "stat", "-e", "raw_syscalls:sys_enter", "true").Run(); err != nil {
		rep.notes = append(rep.notes, "syscall counts skipped: perf stat with syscall tracepoints is not available")
		return nil
	}
	for _, sc := range []scenario{
		{name: "GET 100B", proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", pipeline: 1},
		{name: "GET 100B P16", proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", pipeline: 16},
		{name: "SET 4KB P16", proto: load.Redis, op: load.Set, size: 4096, prefix: "k4k:", pipeline: 16},
		{name: "mc get 10 keys", proto: load.Memcache, op: load.MGet, size: 100, prefix: "m100:", pipeline: 1, multi: 10},
	} {
		if err := e.syscallsOf(ctx, o, rep, sc); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) syscallsOf(ctx context.Context, o options, rep *report, sc scenario) error {
	for _, t := range rep.targets {
		addrs := t.addrs(sc.proto == load.Redis)
		if t.proc == nil || addrs == nil || t.only != nil {
			continue
		}
		r := syscallResult{scenario: sc.name, target: t.name}
		out := filepath.Join(e.dir, "perf-stat-"+t.name+"-"+strings.ReplaceAll(sc.name, " ", "-")+".csv")
		var pids []string
		for _, pid := range tree(t.pid()) {
			pids = append(pids, strconv.Itoa(pid))
		}
		// The backends are counted too: how a proxy batches decides how
		// often they wake up, and on a shared machine that is CPU the
		// proxy's clients do not get.
		backendOf := isRedis
		if sc.proto == load.Memcache {
			backendOf = func(name string) bool { return isBackend(name) && !isRedis(name) }
		}
		var backendPids []string
		for _, pid := range e.pidsOf(backendOf) {
			backendPids = append(backendPids, strconv.Itoa(pid))
		}
		bout := strings.TrimSuffix(out, ".csv") + "-backends.csv"
		var cmds []*exec.Cmd
		res, err := load.Run(ctx, load.Spec{
			Protocol: sc.proto, Op: sc.op, Addrs: addrs, Clients: o.clients, Pipeline: sc.pipeline,
			ValueSize: sc.size, Keys: o.keys, KeyPrefix: sc.prefix, MultiKeys: sc.multi, Threads: o.threads,
			Warmup: o.warmup, Duration: 1500 * time.Millisecond,
			OnStart: func() {
				for _, f := range [][2]string{{out, strings.Join(pids, ",")}, {bout, strings.Join(backendPids, ",")}} {
					cmd := exec.Command("perf", "stat", "-x", ",", "-o", f[0], "-e", strings.Join(syscallEvents, ","), "-p", f[1])
					if cmd.Start() == nil {
						cmds = append(cmds, cmd)
					}
				}
			},
			OnStop: func() {
				for _, cmd := range cmds {
					_ = cmd.Process.Signal(syscall.SIGINT)
					_ = cmd.Wait()
				}
			},
		})
		if err == nil && len(cmds) < 2 {
			err = fmt.Errorf("perf stat did not start")
		}
		if err == nil {
			r.requests = res.Requests
			r.rows, r.total, err = parsePerfStat(out, res.Requests)
		}
		if err == nil {
			_, r.backends, err = parsePerfStat(bout, res.Requests)
		}
		r.err = err
		rep.sys = append(rep.sys, r)
		logf("syscalls %-12s %-14s %.2f per request", sc.name, t.name, r.total)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// parsePerfStat reads perf stat -x, output: "value,unit,event,…" lines.
func parsePerfStat(path string, requests uint64) ([]syscallRow, float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if requests == 0 {
		return nil, 0, fmt.Errorf("perf stat: no requests completed")
	}
	var rows []syscallRow
	total := -1.0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue // "<not counted>", comments
		}
		name := f[2]
		per := v / float64(requests)
		switch name {
		case "raw_syscalls:sys_enter":
			total = per
		default:
			name = strings.TrimPrefix(name, "syscalls:sys_enter_")
			if per > 0 {
				rows = append(rows, syscallRow{name: name, count: per})
			}
		}
	}
	if total < 0 {
		return nil, 0, fmt.Errorf("perf stat: no syscall count in %s", path)
	}
	slices.SortFunc(rows, func(a, b syscallRow) int { return cmp.Compare(b.count, a.count) })
	return rows, total, nil
}

// profile is one in-process CPU profile: the runs loaded in turn.
type profile struct {
	name  string
	title string
	runs  []scenario
}

func profiles() []profile {
	return []profile{
		{"cpu-unpipelined", "GET then SET, 100 B, 50 clients, unpipelined", []scenario{
			{name: "GET", proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", pipeline: 1},
			{name: "SET", proto: load.Redis, op: load.Set, size: 100, prefix: "k100:", pipeline: 1},
		}},
		{"cpu-pipelined", "GET 100 B, 50 clients, 16 deep", []scenario{
			{name: "GET P16", proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", pipeline: 16},
		}},
		{"cpu-set-pipelined", "SET 100 B, 50 clients, 16 deep", []scenario{
			{name: "SET P16", proto: load.Redis, op: load.Set, size: 100, prefix: "k100:", pipeline: 16},
		}},
		{"cpu-set4k-pipelined", "SET 4 KB, 50 clients, 16 deep", []scenario{
			{name: "SET 4KB P16", proto: load.Redis, op: load.Set, size: 4096, prefix: "k4k:", pipeline: 16},
		}},
		{"cpu-mget", "Redis MGET of 10 keys, 100 B, 50 clients, unpipelined", []scenario{
			{name: "MGET 10 keys", proto: load.Redis, op: load.MGet, size: 100, prefix: "k100:", pipeline: 1, multi: 10},
		}},
		{"cpu-mc-multiget", "memcached get of 10 keys, 100 B, 50 clients, unpipelined", []scenario{
			{name: "mc get 10 keys", proto: load.Memcache, op: load.MGet, size: 100, prefix: "m100:", pipeline: 1, multi: 10},
		}},
	}
}
