package main

import (
	"bytes"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// The generated nuthatch configuration must be one nuthatch accepts, with
// the pools where the driver points its load.
func TestNuthatchConfigParses(t *testing.T) {
	b := &backends{redis: []string{"127.0.0.1:7001", "127.0.0.1:7002"}, mc: []string{"127.0.0.1:7101", "127.0.0.1:7102"}}
	for _, c := range []struct {
		workers  string
		quickack bool
	}{{"1", false}, {`"auto"`, false}, {"1", true}} {
		workers := c.workers
		src := nuthatchConfig(workers, c.quickack, 6001, 6002, b)
		cfg, err := config.Parse([]byte(src), "bench.hcl")
		if err != nil {
			t.Fatalf("workers %s: %v\n%s", workers, err, src)
		}
		for _, p := range cfg.Pools {
			if p.TCPQuickack != c.quickack {
				t.Errorf("pool %s: tcp_quickack = %v, want %v\n%s", p.Name, p.TCPQuickack, c.quickack, src)
			}
		}
		if len(cfg.Pools) != 2 || cfg.Pools[0].Listen.Addr != "127.0.0.1:6001" || cfg.Pools[1].Listen.Addr != "127.0.0.1:6002" {
			t.Fatalf("pools: %+v", cfg.Pools)
		}
		if len(cfg.Pools[0].Servers) != 2 || cfg.Pools[1].Protocol == cfg.Pools[0].Protocol {
			t.Errorf("servers or protocols wrong: %+v", cfg.Pools)
		}
		if cfg.Stats.Listen != "" {
			t.Errorf("stats listener on: %q", cfg.Stats.Listen)
		}
	}
}

func TestParseRBCSV(t *testing.T) {
	out := `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","55555.56","0.623","0.208","0.567","0.903","2.903","3.087"
"GET","58823.53","0.548","0.032","0.543","0.791","0.927","1.055"
`
	rows, err := parseRBCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1].test != "GET" || rows[1].rps != 58823.53 || rows[0].p99 != 2.903 || rows[1].p50 != 0.543 {
		t.Errorf("rows = %+v", rows)
	}
	if _, err := parseRBCSV("ERROR: connection refused\n"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParsePerfStat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "perf.csv")
	os.WriteFile(path, []byte(`# started on Wed Nov 25 18:57:45 2026

4000,,raw_syscalls:sys_enter,1161759,100.00,,
300,,context-switches,1161759,100.00,,
2000,,syscalls:sys_enter_read,1161759,100.00,,
1500,,syscalls:sys_enter_write,1161759,100.00,,
0,,syscalls:sys_enter_getpeername,1161759,100.00,,
<not counted>,,syscalls:sys_enter_futex,0,100.00,,
`), 0o644)
	rows, total, err := parsePerfStat(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if total != 4 {
		t.Errorf("total = %v, want 4", total)
	}
	want := []syscallRow{{"read", 2}, {"write", 1.5}, {"context-switches", 0.3}}
	if len(rows) != len(want) {
		t.Fatalf("rows = %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	if _, _, err := parsePerfStat(path, 0); err == nil {
		t.Error("no requests accepted")
	}
}

func TestMedianAndSpread(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]time.Duration{4, 1, 3, 2}); m != 2 {
		t.Errorf("median even = %v", m) // (2+3)/2 in integer durations
	}
	rs := &scenarioResult{samples: map[string][]sample{}, errs: map[string]string{}}
	for _, rps := range []float64{100, 120, 80} {
		rs.record("x", sample{rps: rps, p99: time.Duration(rps) * time.Microsecond, cpuUS: rps / 10})
	}
	m, spread, ok := rs.median("x")
	if !ok || m.rps != 100 || m.p99 != 100*time.Microsecond || m.cpuUS != 10 {
		t.Errorf("median = %+v", m)
	}
	if math.Abs(spread-0.4) > 1e-9 {
		t.Errorf("spread = %v, want 0.4", spread)
	}
	if _, _, ok := rs.median("absent"); ok {
		t.Error("median of a target without samples")
	}
}

func TestReportRatiosAndGoals(t *testing.T) {
	rep := &report{targets: []*target{{name: "direct"}, {name: "nutcracker", proc: &proc{}}, {name: "nuthatch-1", proc: &proc{}, nuthatch: true}}}
	rs := rep.add(scenario{name: "redis GET 100B", group: groupUnpipelined, op: "get"})
	rs.record("direct", sample{rps: 400, cpuUS: -1})
	rs.record("nutcracker", sample{rps: 100, p99: 2 * time.Millisecond, cpuUS: 10})
	rs.record("nuthatch-1", sample{rps: 200, p99: time.Millisecond, cpuUS: 20})
	rep.idle = []idleRow{{target: "nuthatch-1", res: idleResult{clients: 10, perClient: [2]float64{1000, 5000}}}}
	reportHas(t, rep,
		"| redis GET 100B | nuthatch-1 | 200 | 0% | 0 | 1000 | 0 | 20.00 |",
		"| 2.00 | — | 0.50 |", // × nutcracker, × predixy (absent), × direct
		"| redis GET 100B ≥ 1.15× nutcracker | 2.00× ✓ |",
		"| redis GET 100B p99 ≤ nutcracker's | 1000 vs 2000 µs ✓ |",
		"| redis GET 100B CPU ≤ 17.0 µs/req | 20.00 ✗ |",
		"| idle client ≤ 4 KB RSS (after one GET) | 5000 B ✗ |",
	)
	if got := rep.fixedRate(); got != 50 {
		t.Errorf("fixedRate = %v, want half the slowest proxy's 100", got)
	}
	// Rounds pair up in order: 200/100 = 2, 150/120 = 1.25, 330/110 = 3.
	rep.targets = append(rep.targets, &target{name: "predixy", proc: &proc{}})
	rs.record("predixy", sample{rps: 150, cpuUS: 25})
	reportHas(t, rep, "| redis GET 100B CPU ≤ predixy's | 20.00 vs 25.00 ✓ |")
	rs.record("nutcracker", sample{rps: 120, cpuUS: 10})
	rs.record("nuthatch-1", sample{rps: 150, cpuUS: 20})
	rs.record("nutcracker", sample{rps: 110, cpuUS: 10})
	rs.record("nuthatch-1", sample{rps: 330, cpuUS: 20})
	reportHas(t, rep, "| redis GET 100B ≥ 1.15× nutcracker | 1.82× (rounds 1.25–3.00) ✓ |")
}

// The CPU budget row: with the 02:02 run's SET 100 B ×16 figures, 1.5×
// nutcracker left nuthatch 0.76 µs per request; it spent 0.94 and measured
// 1.40×.
func TestReportCPUBudget(t *testing.T) {
	rep := &report{targets: []*target{{name: "nutcracker", proc: &proc{}}, {name: "nuthatch-1", proc: &proc{}, nuthatch: true}}}
	rs := rep.add(scenario{name: "redis SET 100B P16", group: groupPipelined, op: "set"})
	rs.record("nutcracker", sample{rps: 454238, cpuUS: 1.72, backendUS: 1.17, genUS: 1.01, machineBusy: 0.89})
	rs.record("nuthatch-1", sample{rps: 637587, cpuUS: 0.94, backendUS: 1.05, genUS: 0.88, machineBusy: 0.92})
	reportHas(t, rep, "| redis SET 100B P16: CPU budget for 1.50× (µs/req spent of budget) | 0.94 of 0.76 ✗ |")
	if b, _, ok := cpuBudget(rs, "nuthatch-1", 1.40); !ok || b < 0.94 || b > 0.96 {
		t.Errorf("budget for the measured 1.40× = %.3f, want about what it spent (0.94)", b)
	}
}

// The kernel ceiling, with the 2026-12-03 07:56 unpipelined GET figures
// and a kernel share like the one redis-benchmark measured on the same
// machine (about 90 %): nuthatch at 1.07× nutcracker could reach 1.11× if
// its own code cost nothing, short of 1.15×.
func TestReportKernelCeiling(t *testing.T) {
	rep := &report{targets: []*target{{name: "nutcracker", proc: &proc{}}, {name: "nuthatch-auto", proc: &proc{}, nuthatch: true}}}
	rs := rep.add(scenario{name: "redis GET 100B", group: groupUnpipelined, op: "get"})
	nc := sample{rps: 52786, cpuUS: 12.15, sysUS: 10.9, backendUS: 4.73, genUS: 14.68, machineBusy: 0.88}
	nh := sample{rps: 56615, cpuUS: 10.45, sysUS: 9.40, backendUS: 4.44, genUS: 14.86, machineBusy: 0.87}
	rs.record("nutcracker", nc)
	rs.record("nuthatch-auto", nh)
	reportHas(t, rep, "| redis GET 100B | nuthatch-auto | 56615 | 10.45 | 9.40 | 4.44 | 14.86 | 29.75 | 87% | 1.11× |")
	reportHas(t, rep, "| redis GET 100B | nutcracker | 52786 | 12.15 | 10.90 | 4.73 | 14.68 | 31.56 | 88% | — |")
	if c, ok := kernelCeiling(nh, nc); !ok || c < 1.11 || c > 1.12 {
		t.Errorf("ceiling = %.3f, %v; want 1.0725 × 29.75 / 28.70 = 1.112", c, ok)
	}
	nh.sysUS = -1
	if _, ok := kernelCeiling(nh, nc); ok {
		t.Error("a ceiling without the kernel share")
	}
}

// The tcp_quickack target runs in the unpipelined GET/SET 100 B and the
// fixed-rate scenarios only; the pinned group takes the pinnable targets.
func TestTargetRuns(t *testing.T) {
	qa := &target{name: "nuthatch-quickack", only: quickackScenario}
	one := &target{name: "nuthatch-1", pinnable: true}
	auto := &target{name: "nuthatch-auto"}
	var got []string
	for _, sc := range append(scenarios(), pinnedScenarios()...) {
		if qa.runs(sc) {
			got = append(got, sc.name)
		}
		if !sc.pinned && (!one.runs(sc) || !auto.runs(sc)) {
			t.Errorf("%s: an unrestricted target does not run", sc.name)
		}
		if sc.pinned && (!one.runs(sc) || auto.runs(sc)) {
			t.Errorf("%s: pinned runs nuthatch-1 %v, nuthatch-auto %v", sc.name, one.runs(sc), auto.runs(sc))
		}
	}
	want := []string{"redis GET 100B", "redis SET 100B", "mc get 100B", "mc set 100B", "redis GET 100B fixed-rate"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("quickack runs in %q, want %q", got, want)
	}
}

func TestOutliers(t *testing.T) {
	o := outliers([]sample{
		{count: 400000, slow: 2, max: 41 * time.Millisecond},
		{count: 600000, slow: 1, max: 90 * time.Millisecond},
		{count: 0},
	})
	if o.requests != 1000000 || o.slow != 3 || o.perMillion != 3 || o.max != 90*time.Millisecond {
		t.Errorf("outliers = %+v", o)
	}
	if o := outliers(nil); o.perMillion != 0 || o.requests != 0 {
		t.Errorf("no rounds: %+v", o)
	}
}

// The fixed-rate group gets the ≥ 40 ms table and the pinned group the
// CPU 0 busy line, both after the group's table, which stays in one piece.
func TestReportOutliersAndPinned(t *testing.T) {
	rep := &report{targets: []*target{{name: "direct"}, {name: "nutcracker", proc: &proc{}, pinnable: true},
		{name: "nuthatch-1", proc: &proc{}, nuthatch: true, pinnable: true}, {name: "nuthatch-quickack", proc: &proc{}, nuthatch: true, only: quickackScenario}}}
	rs := rep.add(scenario{name: "redis GET 100B fixed-rate", group: groupRate, op: "get", rate: true, rateRPS: 1000})
	rs.record("direct", sample{rps: 1000, cpuUS: -1, count: 2000, max: time.Millisecond})
	rs.record("nuthatch-1", sample{rps: 1000, cpuUS: 10, count: 2000, slow: 1, max: 41 * time.Millisecond})
	rs.record("nuthatch-1", sample{rps: 1000, cpuUS: 10, count: 2000, slow: 1, max: 40 * time.Millisecond})
	rs.record("nuthatch-quickack", sample{rps: 1000, cpuUS: 11, count: 4000, max: 2 * time.Millisecond})
	for _, sc := range pinnedScenarios() {
		rs := rep.add(sc)
		rs.record("nutcracker", sample{rps: 50000, cpuUS: 19, coreBusy: [2]float64{0.95, 0.7}})
		rs.record("nuthatch-1", sample{rps: 100000, cpuUS: 10, coreBusy: [2]float64{0.999, 0.995}})
	}
	reportHas(t, rep,
		"| direct | 2000 | 0 | 0.0 | 1.0 |",
		"| nuthatch-1 | 4000 | 2 | 500.0 | 41.0 |",
		"| nuthatch-quickack | 4000 | 0 | 0.0 | 2.0 |",
		"| pinned redis GET 100B | nuthatch-1 | 100000 | 0% |",
		"| 10.00 | 0.0 | 2.00 | — | — |\n| pinned redis GET 100B P16 | nutcracker |",
		"pinned redis GET 100B P16: CPU 0 (proxy) / CPU 1 (generator, backends) busy, from /proc/stat: nutcracker 95% / 70%, nuthatch-1 100% / 100%.",
	)
}

func TestTasksetArgs(t *testing.T) {
	if got := strings.Join(tasksetArgs("0", 4242), " "); got != "-a -p -c 0 4242" {
		t.Errorf("tasksetArgs = %q", got)
	}
	if got := strings.Join(tasksetArgs("0-3,6", 1), " "); got != "-a -p -c 0-3,6 1" {
		t.Errorf("tasksetArgs = %q", got)
	}
}

func TestCpusAllowedAndPinSkip(t *testing.T) {
	l, err := cpusAllowed("Name:\tredis-server\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\n")
	if err != nil || l != "0-1" {
		t.Errorf("cpusAllowed = %q, %v", l, err)
	}
	if _, err := cpusAllowed("Name:\tx\n"); err == nil {
		t.Error("status without a CPU list accepted")
	}
	if s := pinSkip(2, nil); s != "" {
		t.Errorf("2 CPUs and taskset: %q", s)
	}
	if s := pinSkip(1, nil); !strings.Contains(s, "2 CPUs") {
		t.Errorf("1 CPU: %q", s)
	}
	if s := pinSkip(8, errors.New("not found")); !strings.Contains(s, "taskset") {
		t.Errorf("no taskset: %q", s)
	}
}

// A real process is pinned to CPU 0, every thread of it, and gets its
// own affinity back.
func TestPinAndRestore(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil || runtime.NumCPU() < 2 {
		t.Skip("needs taskset and 2 CPUs")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	before, err := threadAffinities(pid)
	if err != nil {
		t.Fatal(err)
	}
	var p pinner
	if err := p.pin("sleep", pid, "0"); err != nil {
		t.Fatal(err)
	}
	pinned, err := threadAffinities(pid)
	if err != nil || strings.Join(pinned, " ") != "0" {
		t.Errorf("pinned: %q, %v", pinned, err)
	}
	if err := p.restore(); err != nil {
		t.Fatal(err)
	}
	after, err := threadAffinities(pid)
	if err != nil || strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("restored: %q, want %q (%v)", after, before, err)
	}
	if len(p.done) != 0 {
		t.Errorf("restore left %d entries", len(p.done))
	}
}

func TestParseCPUStat(t *testing.T) {
	c := parseCPUStat(`cpu  720807 3066 411764 950023 3942 0 118387 559 0 0
cpu0 100 0 50 800 40 0 10 0 0 0
cpu1 300 10 100 100 0 0 90 0 0 0
intr 73411387 0 0
`)
	if len(c) != 2 || c["cpu0"] != (cpuTimes{busy: 160, total: 1000}) || c["cpu1"] != (cpuTimes{busy: 500, total: 600}) {
		t.Fatalf("parseCPUStat = %+v", c)
	}
	later := cpuTimes{busy: 160 + 75, total: 1000 + 100}
	if b := c["cpu0"].busyUntil(later); b != 0.75 {
		t.Errorf("busyUntil = %v, want 0.75", b)
	}
	if b := c["cpu0"].busyUntil(c["cpu0"]); b != -1 {
		t.Errorf("no time passed: %v", b)
	}
}

// reportHas checks that the written report contains every want.
func reportHas(t *testing.T, rep *report, wants ...string) {
	t.Helper()
	var b bytes.Buffer
	rep.write(&b)
	out := b.String()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestMachineBusy(t *testing.T) {
	a := map[string]cpuTimes{"cpu0": {busy: 10, total: 100}, "cpu1": {busy: 0, total: 100}}
	b := map[string]cpuTimes{"cpu0": {busy: 110, total: 200}, "cpu1": {busy: 50, total: 200}}
	if got := machineBusy(a, b); got != 0.75 {
		t.Fatalf("machineBusy = %v, want 0.75", got)
	}
	if got := machineBusy(a, map[string]cpuTimes{"cpu0": {busy: 110, total: 200}}); got != -1 {
		t.Fatalf("machineBusy with a CPU missing = %v, want -1", got)
	}
	if got := machineBusy(nil, nil); got != -1 {
		t.Fatalf("machineBusy of nothing = %v, want -1", got)
	}
}

func TestReportBudget(t *testing.T) {
	rep := &report{targets: []*target{{name: "direct"}, {name: "nuthatch-1", proc: &proc{}, nuthatch: true}}}
	rs := rep.add(scenario{name: "redis GET 100B", group: groupUnpipelined, op: "get"})
	rs.record("direct", sample{rps: 100000, cpuUS: -1, backendUS: 4, genUS: 6, machineBusy: 0.9})
	rs.record("nuthatch-1", sample{rps: 80000, cpuUS: 7.5, backendUS: 5, genUS: 8.25, machineBusy: 0.99})
	reportHas(t, rep,
		"| redis GET 100B | direct | 100000 | — | — | 4.00 | 6.00 | 10.00 | 90% | — |",
		"| redis GET 100B | nuthatch-1 | 80000 | 7.50 | — | 5.00 | 8.25 | 20.75 | 99% | — |",
	)
}

func TestRedisBenchmarkMedians(t *testing.T) {
	rep := &report{targets: []*target{{name: "nutcracker", proc: &proc{}}, {name: "nuthatch-1", proc: &proc{}, nuthatch: true}}}
	for i, rps := range []float64{100, 300, 200} {
		rep.rb = append(rep.rb,
			rbRow{target: "nutcracker", test: "GET", depth: 1, rps: rps, p50: float64(i), p99: 1, cpuUS: 10},
			rbRow{target: "nuthatch-1", test: "GET", depth: 1, rps: rps * 2, p50: 0.5, p99: float64(3 - i), cpuUS: float64(i)})
	}
	rows := rbMedians(rep.rb)
	if len(rows) != 2 || rows[0].target != "nutcracker" || rows[0].rps != 200 || rows[0].p50 != 1 || rows[0].rounds != 3 ||
		rows[1].rps != 400 || rows[1].p99 != 2 || rows[1].cpuUS != 1 {
		t.Fatalf("medians = %+v", rows)
	}
	reportHas(t, rep, "medians of 3 alternating rounds", "| GET P1 | nuthatch-1 | 400 | 0.500 | 2.000 | 1.00 | 2.00 | — |",
		"| redis-benchmark GET P1 ≥ 1.15× nutcracker | 2.00× ✓ |")
}

// The RESP3 group runs direct and the nuthatch targets that speak RESP3,
// not nutcracker, predixy or the tcp_quickack variant; each RESP3
// scenario has a RESP2 half with the same load.
func TestRESP3Scenarios(t *testing.T) {
	targets := []*target{{name: "direct", resp3: true}, {name: "nutcracker"}, {name: "predixy"},
		{name: "nuthatch-1", resp3: true, nuthatch: true}, {name: "nuthatch-quickack", only: quickackScenario, nuthatch: true},
		{name: "nuthatch-auto", resp3: true, nuthatch: true}}
	var names []string
	for _, sc := range resp3Scenarios() {
		names = append(names, sc.name)
		b := resp2Of(sc)
		if !sc.resp3 || b.resp3 || b.op != sc.op || b.pipeline != sc.pipeline || b.size != 100 || b.group != groupRESP3 {
			t.Errorf("%s: RESP2 half %+v", sc.name, b)
		}
		if !strings.HasPrefix(b.name, "RESP2 ") || strings.TrimPrefix(b.name, "RESP2") != strings.TrimPrefix(sc.name, "RESP3") {
			t.Errorf("%s: RESP2 half named %q", sc.name, b.name)
		}
		var runs []string
		for _, tg := range targets {
			if tg.runs(sc) && tg.runs(b) {
				runs = append(runs, tg.name)
			}
		}
		if got := strings.Join(runs, " "); got != "direct nuthatch-1 nuthatch-auto" {
			t.Errorf("%s runs on %s", sc.name, got)
		}
	}
	if got := strings.Join(names, ", "); got != "RESP3 GET 100B, RESP3 SET 100B, RESP3 GET 100B P16, RESP3 SET 100B P16" {
		t.Errorf("RESP3 scenarios: %s", got)
	}
	for _, sc := range scenarios() {
		if sc.resp3 || sc.group == groupRESP3 {
			t.Errorf("%s: RESP3 scenario in the main list", sc.name)
		}
	}
}

// The RESP3 table puts each target's RESP3 run beside its RESP2 run with
// the two ratios, and the targets table checks ±5 % of RESP2.
func TestReportRESP3(t *testing.T) {
	rep := &report{targets: []*target{{name: "direct", resp3: true}, {name: "nutcracker", proc: &proc{}},
		{name: "nuthatch-1", proc: &proc{}, nuthatch: true, resp3: true}, {name: "nuthatch-auto", proc: &proc{}, nuthatch: true, resp3: true}}}
	sc := resp3Scenarios()[0]
	rs2, rs3 := rep.add(resp2Of(sc)), rep.add(sc)
	rs3.base = rs2
	for i, rps := range []float64{100000, 90000, 110000} {
		rs2.record("direct", sample{rps: rps, cpuUS: -1, backendUS: 4, p99: time.Millisecond})
		rs3.record("direct", sample{rps: rps * 1.01, cpuUS: -1, backendUS: 4.2, p99: 1100 * time.Microsecond})
		rs2.record("nuthatch-1", sample{rps: rps / 2, cpuUS: 8, backendUS: 5, p99: 2 * time.Millisecond})
		rs3.record("nuthatch-1", sample{rps: rps / 2 * []float64{0.95, 1, 0.98}[i], cpuUS: 8.8, backendUS: 5, p99: 2 * time.Millisecond})
	}
	rs2.record("nuthatch-auto", sample{rps: 60000, cpuUS: 10})
	rs3.failed("nuthatch-auto", errors.New("load: HELLO 3: EOF"))
	reportHas(t, rep,
		"## Redis RESP3 against RESP2 (50 clients)",
		"nutcracker and predixy are not in this group",
		"| GET 100B | direct | 100000 | 101000 | 1.01 [1.01–1.01] | — | — | — | 1.05 | 1000 / 1100 |",
		"| GET 100B | nuthatch-1 | 50000 | 47500 | 0.95 [0.95–1.00] | 8.00 | 8.80 | 1.10 | 1.00 | 2000 / 2000 |",
		"| GET 100B | nuthatch-auto | failed: load: HELLO 3: EOF |",
		"| RESP3 GET 100B req/s within ±5 % of RESP2 | 0.95× (rounds 0.95–1.00) ✓ | — |",
		"| RESP3 GET 100B CPU/req within ±5 % of RESP2 | 1.10× (8.80 vs 8.00 µs) ✗ | — |",
	)
	var b bytes.Buffer
	rep.write(&b)
	if strings.Contains(b.String(), "| RESP2 GET 100B | nuthatch-1 | 50000 | 0%") {
		t.Error("the RESP3 group also got the generic table")
	}
}

// redis-benchmark's RESP3 rows get their ratio to the same target's RESP2
// row, and a ±5 % row in the targets table.
func TestRedisBenchmarkRESP3(t *testing.T) {
	rep := &report{targets: []*target{{name: "nutcracker", proc: &proc{}}, {name: "nuthatch-1", proc: &proc{}, nuthatch: true, resp3: true}}}
	rep.rb = []rbRow{
		{target: "nutcracker", test: "GET", depth: 1, rps: 100, cpuUS: 10},
		{target: "nuthatch-1", test: "GET", depth: 1, rps: 200, cpuUS: 8},
		{target: "nuthatch-1", test: "GET", depth: 1, rps: 196, cpuUS: 8.8, resp3: true},
	}
	reportHas(t, rep,
		"| GET P1 | nuthatch-1 | 200 | 0.000 | 0.000 | 8.00 | 2.00 | — | — | — |",
		"| GET P1 RESP3 | nuthatch-1 | 196 | 0.000 | 0.000 | 8.80 | 1.96 | — | 0.98 | 1.10 |",
		"| redis-benchmark GET P1 ≥ 1.15× nutcracker | 2.00× ✓ |",
		"| redis-benchmark GET P1 RESP3 req/s within ±5 % of RESP2 | 0.98× ✓ |",
		"| redis-benchmark GET P1 RESP3 CPU/req within ±5 % of RESP2 | 1.10× ✗ |",
	)
	if rows := rbMedians(rep.rb); len(rows) != 3 {
		t.Errorf("RESP2 and RESP3 rows folded together: %+v", rows)
	}
}

// The shipped configuration leads the report: its ratios to nutcracker
// and its CPU against one worker's, then the latency claim.
func TestReportShipped(t *testing.T) {
	rep := &report{targets: []*target{{name: "nutcracker", proc: &proc{}},
		{name: "nuthatch-auto", proc: &proc{}, nuthatch: true, note: "auto here"},
		{name: "nuthatch-1", proc: &proc{}, nuthatch: true}}}
	rs := rep.add(scenario{name: "redis GET 100B", group: groupUnpipelined, op: "get"})
	rs.record("nutcracker", sample{rps: 100, cpuUS: 10})
	rs.record("nuthatch-auto", sample{rps: 120, cpuUS: 8})
	rs.record("nuthatch-1", sample{rps: 125, cpuUS: 7})
	if got := rep.nutcrackerRate(); got != 100 {
		t.Errorf("nutcrackerRate = %v, want nutcracker's 100", got)
	}
	lat := rep.add(scenario{name: "redis GET 100B at 80% of nutcracker", group: groupLatency, op: "get", rate: true, loadOf: 0.8, rateRPS: 80})
	lat.record("nutcracker", sample{rps: 80, p50: 400 * time.Microsecond, p99: 2 * time.Millisecond, p999: 3 * time.Millisecond})
	lat.record("nuthatch-auto", sample{rps: 80, p50: 150 * time.Microsecond, p99: 900 * time.Microsecond, p999: time.Millisecond})
	lat.record("direct", sample{rps: 80, p50: 100 * time.Microsecond, p99: 1200 * time.Microsecond, p999: 2 * time.Millisecond})
	rep.rb = []rbRow{{target: "nutcracker", test: "GET", depth: 16, rps: 100, cpuUS: 2},
		{target: "nuthatch-auto", test: "GET", depth: 16, rps: 160, cpuUS: 1.1},
		{target: "nuthatch-1", test: "GET", depth: 16, rps: 150, cpuUS: 1}}
	reportHas(t, rep,
		"## What you get with the shipped configuration\n\nauto here.",
		"| redis GET 100B (generator) | 120 | 1.20× ✓ (≥ 1.15×) | — | 8.00 | 1.14× |",
		"| redis-benchmark GET P16 | 160 | 1.60× ✓ (≥ 1.50×) | — | 1.10 | 1.10× |",
		"| 80 % (80 req/s) | 150 / 900 / 1000 | 400 / 2000 / 3000 | — | 0.38× / 0.45× | 0.25× / 0.60× | ✓ |",
	)
	var b bytes.Buffer
	rep.write(&b)
	if i, j := strings.Index(b.String(), "What you get"), strings.Index(b.String(), "## Redis, unpipelined"); i < 0 || j < 0 || i > j {
		t.Errorf("the shipped section is not first:\n%s", b.String())
	}
}
