// Command driver is nuthatch's benchmark (`make bench`): it starts two
// redis-servers and two memcacheds, nutcracker (-v 4), predixy when a
// binary is available, and nuthatch with one worker, with one worker and
// tcp_quickack = true (unpipelined GET/SET 100 B and fixed rate only), and
// with worker_processes = "auto", then runs each scenario in alternating
// rounds over all of them (A B C D A B C D …) and prints the medians as a
// table. The RESP3 group runs GET/SET 100 B, unpipelined and 16 deep, in
// RESP3 (HELLO 3) and RESP2 on the targets that speak RESP3 (direct and
// nuthatch; nutcracker and predixy close on HELLO 3) and reports the
// ratios. The Cluster group (cluster.go) starts a 3-master Redis Cluster
// and runs nuthatch's cluster pool and predixy in cluster mode over it
// beside go-redis's ClusterClient straight to the nodes. A last group runs
// with each proxy pinned to CPU 0 and the generator and backends to CPU 1
// (pin.go).
//
// It measures; it asserts nothing. Results go to stdout and, with -out, to
// a Markdown file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/test/bench/load"
)

type env struct {
	dir           string
	procs         *procSet
	nuthatchBin   string
	nutcrackerBin string
	predixyBin    string
	profileBin    string
	profileDir    string
	clkTck        int64
}

type options struct {
	duration, warmup, rateDuration        time.Duration
	rounds, rbRounds, clients, keys, idle int
	threads                               int // the generator's event loops
	only                                  *regexp.Regexp
	rb, syscalls, quickack, pinned        bool
	scaleOut                              bool
	pubsub                                bool
	cluster                               bool
	profile                               time.Duration
	out                                   string
	compare                               []compareTarget
}

// compareTarget is one -compare NAME=BINARY;ATTR = VALUE;… flag.
type compareTarget struct {
	name, bin string
	settings  []string // extra top-level attributes
}

func main() {
	e := &env{}
	o := options{}
	defPredixy := os.Getenv("PREDIXY_BIN")
	if defPredixy == "" {
		defPredixy = "/usr/local/bin/predixy"
	}
	flag.StringVar(&e.nuthatchBin, "nuthatch", "bin/nuthatch", "nuthatch binary")
	flag.StringVar(&e.nutcrackerBin, "nutcracker", "nutcracker", "nutcracker binary")
	flag.StringVar(&e.predixyBin, "predixy", defPredixy, "predixy binary ($PREDIXY_BIN); skipped when absent")
	flag.StringVar(&e.profileBin, "profile-bin", "bin/nuthatch-profile", "test/bench/profile binary; the profile is skipped when absent")
	flag.DurationVar(&o.duration, "duration", 1200*time.Millisecond, "measured window of each run")
	flag.DurationVar(&o.warmup, "warmup", 200*time.Millisecond, "warm-up before each window")
	flag.DurationVar(&o.rateDuration, "rate-duration", 2*time.Second, "window of each fixed-rate run")
	flag.IntVar(&o.rounds, "rounds", 3, "alternating rounds per scenario")
	flag.IntVar(&o.rbRounds, "rb-rounds", 5, "alternating rounds of redis-benchmark (at least -rounds): a run is 1-2 s, and with 3 of them one configuration measured 0.15-0.3x apart")
	flag.IntVar(&o.clients, "clients", 50, "clients per run")
	flag.IntVar(&o.keys, "keys", 10000, "key space")
	flag.IntVar(&o.threads, "gen-threads", 2, "event loops (OS threads) of the load generator in closed-loop runs (2: direct access saturates a 2-CPU machine; 1 was the limit there)")
	flag.IntVar(&o.idle, "idle", 10000, "idle clients (0 skips)")
	flag.BoolVar(&o.rb, "redis-benchmark", true, "cross-check GET/SET with redis-benchmark")
	flag.BoolVar(&o.quickack, "quickack", true, "also run nuthatch with 1 worker and tcp_quickack = true (target nuthatch-quickack) in the unpipelined GET/SET 100 B and fixed-rate scenarios")
	flag.BoolVar(&o.pinned, "pinned", true, "run the per-core group: each proxy pinned to CPU 0 with taskset, the generator and backends to CPU 1")
	flag.BoolVar(&o.scaleOut, "scale-out", true, "run the scale-out group: 1, 2, 4 and 8 workers on CPU 0, each limited to 1/16 of it by a cgroup CPU quota, 12 clients per worker (needs root and a writable cgroup cpu controller)")
	flag.BoolVar(&o.pubsub, "pubsub", true, "run the pub/sub fan-out group: 50 subscribers of one channel, 2 publishers 16 deep, direct and through each proxy that serves SUBSCRIBE")
	flag.BoolVar(&o.cluster, "cluster", true, "run the Redis Cluster group: a 3-master cluster, nuthatch's cluster pool (shipped configuration) and predixy in cluster mode over it, and go-redis's ClusterClient straight to it (-only Cluster runs it alone)")
	flag.BoolVar(&o.syscalls, "syscalls", true, "count each proxy's system calls per request with perf stat (when available)")
	flag.DurationVar(&o.profile, "profile", 5*time.Second, "CPU-profile nuthatch for this long per profiled scenario (0 skips)")
	flag.StringVar(&e.profileDir, "profile-dir", "", "copy the CPU profiles (bench-cpu-*.pprof) into this directory")
	flag.Func("compare", "NAME=BINARY[;ATTR=VALUE...]: also run another nuthatch build (or the same one with other top-level settings) with 1 worker, as target NAME; NAME-auto runs \"auto\" workers, NAME-ncpu one per CPU (repeatable; for A/B of an optimisation)", func(v string) error {
		name, rest, ok := strings.Cut(v, "=")
		parts := strings.Split(rest, ";")
		c := compareTarget{name: name, bin: parts[0]}
		if !ok || c.name == "" || c.bin == "" {
			return errors.New("want NAME=BINARY")
		}
		if abs, err := filepath.Abs(c.bin); err == nil {
			c.bin = abs
		}
		for _, a := range parts[1:] {
			if a = strings.TrimSpace(a); a != "" {
				c.settings = append(c.settings, a)
			}
		}
		o.compare = append(o.compare, c)
		return nil
	})
	only := flag.String("only", "", "run only scenarios whose name matches this regexp")
	flag.StringVar(&o.out, "out", "", "also write the report to this Markdown file")
	keep := flag.Bool("keep", false, "keep the work directory (configs, logs, profiles)")
	flag.Parse()
	// Programs run in the work directory: make relative paths absolute.
	for _, p := range []*string{&e.nuthatchBin, &e.predixyBin, &e.profileBin} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	if *only != "" {
		o.only = regexp.MustCompile(*only)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	dir, err := os.MkdirTemp("", "nuthatch-bench-")
	if err != nil {
		fatal(err)
	}
	e.dir = dir
	e.procs = &procSet{dir: dir}
	e.clkTck = clockTicks()
	raiseNoFile()

	var out io.Writer = os.Stdout
	var file *os.File
	if o.out != "" {
		if file, err = os.Create(o.out); err != nil {
			fatal(err)
		}
		out = io.MultiWriter(os.Stdout, file)
	}
	err = run(ctx, e, o, out)
	e.procs.stopAll()
	if file != nil {
		file.Close()
	}
	if *keep {
		fmt.Fprintf(os.Stderr, "bench: work directory kept: %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	if err != nil {
		fatal(err)
	}
}

// preload stores every key the scenarios read on every backend, so that
// every GET hits whatever the proxy's placement.
func preload(ctx context.Context, b *backends, keys int) error {
	type job struct {
		p      load.Protocol
		addr   string
		prefix string
		size   int
	}
	var jobs []job
	for _, a := range b.redis {
		jobs = append(jobs, job{load.Redis, a, "k100:", 100}, job{load.Redis, a, "k4k:", 4096}, job{load.Redis, a, "key:", 100})
	}
	for _, a := range b.mc {
		jobs = append(jobs, job{load.Memcache, a, "m100:", 100})
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = load.Preload(ctx, j.p, j.addr, j.prefix, keys, j.size)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}

// raiseNoFile lifts the descriptor limit to its hard maximum so that the
// idle-client run can hold 10,000 connections; children inherit it.
func raiseNoFile() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, e *env, o options, out io.Writer) error {
	start := time.Now()
	startLoad := loadAvg()
	logf("work directory %s, load average %s", e.dir, startLoad)
	for _, p := range []string{"redis-server", "memcached"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s is not installed (make deps installs it)", p)
		}
	}
	if _, err := os.Stat(e.nuthatchBin); err != nil {
		return fmt.Errorf("nuthatch binary: %w (make build)", err)
	}
	b, err := e.startBackends(ctx, 2)
	if err != nil {
		return err
	}
	logf("preloading %d keys of 100 B and 4 KB into every backend", o.keys)
	if err := preload(ctx, b, o.keys); err != nil {
		return err
	}

	targets := []*target{{name: "direct", redis: b.redis, mc: b.mc, note: "clients spread over the 2 backends", resp3: true}}
	var notes []string
	nc, err := e.nutcracker(ctx, b)
	if err != nil {
		return err
	}
	targets = append(targets, nc)
	if px, note := e.predixy(ctx, b); px != nil {
		targets = append(targets, px)
	} else {
		notes = append(notes, note)
		logf("%s", note)
	}
	type variant struct {
		name, bin, workers, settings string
		quickack, pinnable           bool
	}
	// nuthatch-quickack comes right after nuthatch-1, so that the two are
	// side by side in the tables.
	// nuthatch-auto is the shipped configuration (worker_processes =
	// "auto", nothing else tuned): first, as it is what a user gets.
	// nuthatch-ncpu is one worker per CPU (nginx's "auto"), so that the
	// report shows "auto" against the fixed counts around it.
	variants := []variant{{name: "nuthatch-auto", bin: e.nuthatchBin, workers: `"auto"`},
		{name: "nuthatch-1", bin: e.nuthatchBin, workers: "1", pinnable: true}}
	if o.quickack {
		variants = append(variants, variant{name: "nuthatch-quickack", bin: e.nuthatchBin, workers: "1", quickack: true})
	}
	if n := runtime.NumCPU(); n > 1 {
		variants = append(variants, variant{name: "nuthatch-ncpu", bin: e.nuthatchBin, workers: strconv.Itoa(n)})
	}
	for _, c := range o.compare {
		workers := "1"
		if strings.HasSuffix(c.name, "-auto") {
			// NAME-auto=BINARY runs the build with the shipped worker count.
			workers = `"auto"`
		}
		if strings.HasSuffix(c.name, "-ncpu") {
			// NAME-ncpu=BINARY runs the build with one worker per CPU.
			workers = strconv.Itoa(runtime.NumCPU())
		}
		lines := ""
		for _, a := range c.settings {
			lines += a + "\n"
		}
		variants = append(variants, variant{name: c.name, bin: c.bin, workers: workers, settings: lines, pinnable: workers == "1" && lines == ""})
	}
	for _, v := range variants {
		t, err := e.nuthatch(ctx, b, v.name, v.bin, v.workers, v.settings, v.quickack)
		if err != nil {
			return err
		}
		t.pinnable = v.pinnable
		t.resp3 = !v.quickack
		if v.bin != e.nuthatchBin || v.settings != "" {
			t.note = "workers " + v.workers + ", " + v.bin
			if v.settings != "" {
				t.note += ", " + strings.ReplaceAll(strings.TrimSpace(v.settings), "\n", ", ")
			}
		}
		switch v.name {
		case "nuthatch-auto":
			b := config.HostCPUs()
			t.note = fmt.Sprintf("worker_processes = \"auto\", the shipped configuration: %d worker(s) for %d usable CPUs here", b.AutoWorkers(), b.Usable())
		case "nuthatch-ncpu":
			t.note = "worker_processes = " + v.workers + ", one worker per CPU"
		}
		if v.quickack {
			t.note = "1 worker, tcp_quickack = true in both pools; unpipelined GET/SET 100 B and fixed rate only"
			t.only = quickackScenario
		}
		targets = append(targets, t)
	}

	rep := &report{targets: targets, notes: notes, clkTck: e.clkTck}
	for _, sc := range scenarios() {
		if o.only != nil && !o.only.MatchString(sc.name) {
			continue
		}
		switch {
		case sc.loadOf > 0:
			sc.rateRPS = rep.nutcrackerRate() * sc.loadOf
		case sc.rate:
			sc.rateRPS = rep.fixedRate()
		}
		if err := e.runScenario(ctx, o, rep, sc); err != nil {
			return err
		}
	}
	if err := e.resp3Group(ctx, o, rep); err != nil {
		return err
	}
	// Before the pinned and scale-out groups, which move the driver's
	// CPU affinity: the cluster's processes inherit it when they start.
	if o.cluster {
		if err := e.clusterGroup(ctx, o, rep); err != nil {
			return err
		}
	}
	if o.pinned {
		var pinned []scenario
		for _, sc := range pinnedScenarios() {
			if o.only == nil || o.only.MatchString(sc.name) {
				pinned = append(pinned, sc)
			}
		}
		if len(pinned) > 0 {
			if err := e.pinnedGroup(ctx, o, rep, pinned); err != nil {
				return err
			}
		}
	}
	if o.scaleOut && (o.only == nil || o.only.MatchString("scale-out")) {
		if err := e.scaleOut(ctx, o, rep, b); err != nil {
			return err
		}
	}
	if o.pubsub && (o.only == nil || o.only.MatchString("pubsub")) {
		if err := e.pubsub(ctx, o, rep); err != nil {
			return err
		}
	}
	if o.idle > 0 && (o.only == nil || o.only.MatchString("idle")) {
		if err := e.idle(ctx, o, rep); err != nil {
			return err
		}
	}
	if o.rb && (o.only == nil || o.only.MatchString("redis-benchmark") || o.only.MatchString("redis-benchmark RESP3")) {
		if err := e.redisBenchmark(ctx, o, rep); err != nil {
			return err
		}
	}
	if o.syscalls && (o.only == nil || o.only.MatchString("syscalls")) {
		if err := e.syscalls(ctx, o, rep); err != nil {
			return err
		}
	}
	var prof string
	if o.profile > 0 && (o.only == nil || o.only.MatchString("profile") || slices.ContainsFunc(profiles(), func(p profile) bool { return o.only.MatchString(p.name) })) {
		if prof, err = e.profileRun(ctx, o, b); err != nil {
			logf("profile: %v", err)
			rep.notes = append(rep.notes, "profile failed: "+err.Error())
		}
	}
	for _, t := range targets {
		if t.proc != nil && t.proc.exited() {
			return fmt.Errorf("%s died during the benchmark:\n%s", t.name, tail(t.proc.log, 20))
		}
	}
	rep.header = fmt.Sprintf("nuthatch benchmark, %s; %d CPUs; load average %s at start, %s at end; %d rounds of %v (+%v warm-up) per target, %d clients, %d keys; took %v",
		time.Now().Format("2006-01-02 15:04"), runtime.NumCPU(), startLoad, loadAvg(), o.rounds, o.duration, o.warmup, o.clients, o.keys,
		time.Since(start).Round(time.Second))
	rep.write(out)
	if prof != "" {
		fmt.Fprintf(out, "\n## CPU profile of nuthatch (in-process, one proxy as in one worker)\n\n%s\n", prof)
	}
	return nil
}
