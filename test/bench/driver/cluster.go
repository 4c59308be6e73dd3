package main

// The Redis Cluster group (issue #19): a 3-master Redis Cluster (no
// replicas) on loopback, and over it nuthatch's cluster pool in the
// shipped configuration (worker_processes = "auto", nothing tuned),
// predixy 1.0.5 in cluster mode (ClusterServerPool, WorkerThreads 1, as in
// the standalone comparison), and go-redis v9's ClusterClient connected
// straight to the nodes: what a cluster-aware client does without a proxy
// (the client-side limit). GET and SET 100 B unpipelined and 16 deep and
// an MGET of 10 random keys (10 slots, over the 3 masters), o.clients
// clients each, in alternating rounds (odd ones in reverse order). The
// proxies are loaded by the project's generator; go-redis by o.clients
// goroutines over one
// ClusterClient in this process, whose own CPU is its cost. For every run:
// the proxy's CPU, the nodes' CPU and the client's (the generator, or
// go-redis) per request. redis-benchmark GET/SET 100 B against each
// proxy, and with --cluster straight to the nodes, cross-checks it.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/test/bench/load"
)

const (
	clusterMasters = 3
	goRedisTarget  = "go-redis ClusterClient"
	rbClusterName  = "redis-benchmark --cluster"
)

// clusterScenarios are the group's runs; -only "Cluster" selects them
// all.
func clusterScenarios() []scenario {
	var s []scenario
	for _, depth := range []int{1, 16} {
		suffix := ""
		if depth > 1 {
			suffix = " P16"
		}
		for _, op := range []load.Op{load.Get, load.Set} {
			s = append(s, scenario{name: fmt.Sprintf("Cluster %s 100B%s", strings.ToUpper(string(op)), suffix),
				proto: load.Redis, op: op, size: 100, prefix: "k100:", pipeline: depth})
		}
	}
	return append(s, scenario{name: "Cluster MGET 10x100B", proto: load.Redis, op: load.MGet, size: 100, prefix: "k100:", pipeline: 1, multi: 10})
}

// clusterRBName is how -only selects the group's redis-benchmark runs.
const clusterRBName = "Cluster redis-benchmark"

// clusterGroup runs the group. A cluster that cannot be set up (no
// redis-cli, a node that does not start) is a note, not a failed
// benchmark.
func (e *env) clusterGroup(ctx context.Context, o options, rep *report) error {
	var scs []scenario
	for _, sc := range clusterScenarios() {
		if o.only == nil || o.only.MatchString(sc.name) {
			scs = append(scs, sc)
		}
	}
	rb := o.rb && (o.only == nil || o.only.MatchString(clusterRBName))
	prof := o.profile > 0 && (o.only == nil || o.only.MatchString(clusterProfileName))
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		rb = false
	}
	if len(scs) == 0 && !rb && !prof {
		return nil
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		rep.notes = append(rep.notes, "cluster group skipped: redis-cli is not installed")
		return nil
	}
	start := time.Now()
	nodes, procs, err := e.startCluster(ctx, clusterMasters)
	defer func() {
		for _, p := range procs {
			e.procs.stop(p)
		}
	}()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep.notes = append(rep.notes, "cluster group skipped: "+err.Error())
		logf("cluster group skipped: %v", err)
		return nil
	}
	var nodePids []int
	for _, p := range procs {
		nodePids = append(nodePids, p.pid())
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: nodes, Protocol: 2, DisableIdentity: true,
		// One connection per client and node: no goroutine waits for a
		// connection of the pool.
		PoolSize: o.clients,
	})
	defer cc.Close()
	logf("cluster: %d masters at %s, preloading %d keys", len(nodes), strings.Join(nodes, " "), o.keys)
	if err := preloadCluster(ctx, cc, o.keys); err != nil {
		rep.notes = append(rep.notes, "cluster group skipped: preload: "+err.Error())
		return nil
	}

	var targets []*target
	nt, err := e.clusterNuthatch(ctx, nodes)
	if err != nil {
		return err
	}
	defer e.procs.stop(nt.proc)
	targets = append(targets, nt)
	if pt, note := e.clusterPredixy(ctx, nodes); pt != nil {
		defer e.procs.stop(pt.proc)
		targets = append(targets, pt)
	} else {
		rep.notes = append(rep.notes, note)
		logf("%s", note)
	}
	for _, t := range targets {
		t.backendPids = nodePids
		if err := waitServing(ctx, t, load.KeyName("k100:", 0)); err != nil {
			return err
		}
	}
	rep.clusterClients = o.clients
	rep.clusterTargets = append(append([]string(nil), names(targets)...), goRedisTarget)
	rep.clusterNotes = append(rep.clusterNotes, nt.note)
	if len(targets) > 1 {
		rep.clusterNotes = append(rep.clusterNotes, targets[1].note)
	}

	for _, sc := range scs {
		rs := &scenarioResult{sc: sc, samples: map[string][]sample{}, errs: map[string]string{}}
		rep.cluster = append(rep.cluster, rs)
		for round := range o.rounds {
			// nil is go-redis. Odd rounds run in reverse order, so that
			// a load that drifts over a round favours no target.
			order := append(slices.Clone(targets), nil)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, t := range order {
				name := goRedisTarget
				var m sample
				var err error
				if t == nil {
					m, err = e.goRedisRun(ctx, o, cc, sc, nodePids)
				} else {
					name = t.name
					m, err = e.measure(ctx, o, t, sc, t.redis)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					logf("%s round %d on %s: %v", sc.name, round+1, name, err)
					rs.failed(name, err)
					continue
				}
				rs.record(name, m)
			}
		}
		rs.loadAvg = loadAvg()
		var parts []string
		for _, name := range rep.clusterTargets {
			if m, _, ok := rs.median(name); ok {
				cpu := m.cpuUS // the proxy's; go-redis's own for go-redis
				if cpu < 0 {
					cpu = m.genUS
				}
				parts = append(parts, fmt.Sprintf("%s %.0f (%.2f µs/req)", name, m.rps, cpu))
			}
		}
		logf("%-26s %s (load %s)", sc.name, strings.Join(parts, ", "), rs.loadAvg)
	}
	if rb {
		if err := e.clusterRedisBenchmark(ctx, o, rep, targets, nodes, nodePids); err != nil {
			return err
		}
	}
	for _, t := range targets {
		if t.proc.exited() {
			return fmt.Errorf("%s (cluster) died during the benchmark:\n%s", t.name, tail(t.proc.log, 20))
		}
	}
	if prof {
		if err := e.clusterProfile(ctx, o, rep, nodes, nodePids); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logf("cluster profile: %v", err)
			rep.notes = append(rep.notes, "cluster profile failed: "+err.Error())
		}
	}
	logf("cluster group took %v", time.Since(start).Round(time.Second))
	return nil
}

func names(ts []*target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.name)
	}
	return out
}

// clusterPort is a free loopback port below the ephemeral range whose
// cluster bus port (+10000) is free too, so that neither can collide with
// an outgoing connection's port.
func clusterPort() (int, error) {
	for range 500 {
		p := 12000 + rand.IntN(10000)
		a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p, nil
	}
	return 0, errors.New("bench: no free port pair for a cluster node")
}

// startCluster starts n redis-servers in cluster mode and makes them a
// cluster of n masters with redis-cli --cluster create. It returns the
// processes it started even on error, for the caller to stop.
func (e *env) startCluster(ctx context.Context, n int) ([]string, []*proc, error) {
	var addrs []string
	var procs []*proc
	for i := range n {
		port, err := clusterPort()
		if err != nil {
			return nil, procs, err
		}
		dir := filepath.Join(e.dir, fmt.Sprintf("cluster-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, procs, err
		}
		p, err := e.procs.start(fmt.Sprintf("cluster-node-%d", i), "redis-server",
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000",
			"--dir", dir, "--save", "", "--appendonly", "no", "--maxclients", "20000")
		if err != nil {
			return nil, procs, err
		}
		procs = append(procs, p)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := waitPort(ctx, p, addr); err != nil {
			return nil, procs, err
		}
		addrs = append(addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return nil, procs, fmt.Errorf("bench: redis-cli --cluster create: %w\n%s", err, out)
	}
	// Every node must agree before the proxies read the map: all slots
	// assigned, all nodes known.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := 0
		for _, a := range addrs {
			c := redis.NewClient(&redis.Options{Addr: a, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
			info, err := c.ClusterInfo(ctx).Result()
			c.Close()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n)) {
				ready++
			}
		}
		if ready == n {
			return addrs, procs, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, procs, errors.New("bench: the cluster was not ready after 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// preloadCluster stores the keys the GETs read (the generator's "k100:"
// and redis-benchmark's "key:"), 100 B each, on their owners.
func preloadCluster(ctx context.Context, cc *redis.ClusterClient, keys int) error {
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	for _, prefix := range []string{"k100:", "key:"} {
		for lo := 0; lo < keys; lo += 1000 {
			pipe := cc.Pipeline()
			for i := lo; i < min(lo+1000, keys); i++ {
				pipe.Set(ctx, load.KeyName(prefix, i), value, 0)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("bench: preload: %w", err)
			}
		}
	}
	return nil
}

// clusterNuthatch starts nuthatch in the shipped configuration with one
// cluster pool over the nodes.
func (e *env) clusterNuthatch(ctx context.Context, nodes []string) (*target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(e.dir, "nuthatch-cluster.hcl")
	if err := os.WriteFile(conf, []byte(clusterConfig(port, nodes)), 0o644); err != nil {
		return nil, err
	}
	args := []string{e.nuthatchBin, "-c", conf}
	p, err := e.procs.start("nuthatch-cluster", args...)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitPort(ctx, p, addr); err != nil {
		e.procs.stop(p)
		return nil, err
	}
	b := config.HostCPUs()
	return &target{name: shipped, proc: p, args: args, nuthatch: true, redis: []string{addr},
		note: fmt.Sprintf("nuthatch-auto: cluster pool, worker_processes = \"auto\", the shipped configuration (%d worker(s) for %d usable CPUs here)", b.AutoWorkers(), b.Usable())}, nil
}

// clusterConfig is the shipped configuration with one cluster pool over
// nodes.
func clusterConfig(port int, nodes []string) string {
	var seeds []string
	for _, n := range nodes {
		seeds = append(seeds, strconv.Quote(n))
	}
	return fmt.Sprintf("worker_processes = \"auto\"\nlog {\n  level = \"warn\"\n}\nstats {\n  listen = \"\"\n}\n"+
		"pool \"cluster\" {\n  listen   = \"127.0.0.1:%d\"\n  protocol = \"redis\"\n  cluster {\n    seeds = [%s]\n  }\n}\n",
		port, strings.Join(seeds, ", "))
}

// clusterProfileName selects the cluster pool's CPU profile with -only.
const clusterProfileName = "cpu-cluster"

// clusterProfile runs test/bench/profile (the engine in-process, with a
// cluster watcher in place of the master) over the cluster and loads it:
// GET 100 B unpipelined, SET 100 B 16 deep, MGET of 10 keys.
func (e *env) clusterProfile(ctx context.Context, o options, rep *report, nodes []string, nodePids []int) error {
	if _, err := os.Stat(e.profileBin); err != nil {
		return fmt.Errorf("no profile binary at %s (go build -o %s ./test/bench/profile)", e.profileBin, e.profileBin)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(e.dir, clusterProfileName+".hcl")
	if err := os.WriteFile(conf, []byte(clusterConfig(port, nodes)), 0o644); err != nil {
		return err
	}
	profPath := filepath.Join(e.dir, clusterProfileName+".pprof")
	p, err := e.procs.start(clusterProfileName, e.profileBin, "-c", conf, "-cpuprofile", profPath)
	if err != nil {
		return err
	}
	defer e.procs.stop(p)
	t := &target{name: clusterProfileName, proc: p, redis: []string{fmt.Sprintf("127.0.0.1:%d", port)}, backendPids: nodePids}
	if err := waitPort(ctx, p, t.redis[0]); err != nil {
		return err
	}
	if err := waitServing(ctx, t, load.KeyName("k100:", 0)); err != nil {
		return err
	}
	var lines []string
	for _, sc := range []scenario{
		{name: "GET 100B", proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", pipeline: 1},
		{name: "SET 100B P16", proto: load.Redis, op: load.Set, size: 100, prefix: "k100:", pipeline: 16},
		{name: "MGET 10 keys", proto: load.Redis, op: load.MGet, size: 100, prefix: "k100:", pipeline: 1, multi: 10},
	} {
		oo := o
		oo.duration = o.profile
		m, err := e.measure(ctx, oo, t, sc, t.redis)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s: %.0f req/s, %.2f µs CPU/req", sc.name, m.rps, m.cpuUS))
	}
	_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not exit", clusterProfileName)
	}
	top, err := exec.CommandContext(ctx, goTool(), "tool", "pprof", "-top", "-nodecount=30", e.profileBin, profPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w: %s", err, top)
	}
	cum, _ := exec.CommandContext(ctx, goTool(), "tool", "pprof", "-top", "-cum", "-nodecount=30", e.profileBin, profPath).CombinedOutput()
	if e.profileDir != "" {
		_ = copyFile(profPath, filepath.Join(e.profileDir, "bench-"+clusterProfileName+".pprof"))
	}
	rep.clusterProfile = fmt.Sprintf("%s\n\n```\n%s```\n\nBy cumulative time:\n\n```\n%s```\n", strings.Join(lines, "; "), top, cum)
	logf("profile %s written", clusterProfileName)
	return nil
}

// clusterPredixy starts predixy with a ClusterServerPool over the nodes.
func (e *env) clusterPredixy(ctx context.Context, nodes []string) (*target, string) {
	if _, err := os.Stat(e.predixyBin); err != nil {
		return nil, fmt.Sprintf("cluster: predixy skipped: no binary at %s", e.predixyBin)
	}
	var c strings.Builder
	c.WriteString("ClusterServerPool {\n    RefreshInterval 1\n    Servers {\n")
	for _, a := range nodes {
		fmt.Fprintf(&c, "        + %s\n", a)
	}
	c.WriteString("    }\n}\n")
	p, addr, conf, err := e.startPredixy(ctx, "predixy-cluster", c.String())
	if err != nil {
		return nil, "cluster: predixy skipped: " + err.Error()
	}
	return &target{name: "predixy", proc: p, redis: []string{addr}, args: []string{e.predixyBin, conf},
		note: "predixy: 1.0.5, ClusterServerPool over the same nodes (RefreshInterval 1, reads from masters), WorkerThreads 1 as in the standalone comparison"}, ""
}

// waitServing waits until a GET of key through t returns the value: the
// proxy has read the cluster's slot map.
func waitServing(ctx context.Context, t *target, key string) error {
	cmd := fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
	deadline := time.Now().Add(15 * time.Second)
	last := ""
	for {
		c, err := net.DialTimeout("tcp", t.redis[0], time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = io.WriteString(c, cmd)
			if err == nil {
				last, err = bufio.NewReader(c).ReadString('\n')
			}
			c.Close()
			if err == nil && strings.HasPrefix(last, "$100\r") {
				return nil
			}
		}
		if err != nil {
			last = err.Error()
		}
		if t.proc.exited() {
			return fmt.Errorf("bench: %s (cluster) exited:\n%s", t.name, tail(t.proc.log, 20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: %s (cluster) does not serve GET after 15 s: %q", t.name, strings.TrimSpace(last))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// goRedisWorker is one go-redis client goroutine's counts.
type goRedisWorker struct {
	hist                     load.Histogram
	requests, errors, misses uint64
	first                    error // the first error reply, for the log
}

func (w *goRedisWorker) note(err error) {
	if w.first == nil {
		w.first = err
	}
}

// bySlot groups keys by hash slot, in groups' storage.
func bySlot(keys []string, groups map[int][]string) map[int][]string {
	for sl, g := range groups {
		groups[sl] = g[:0]
	}
	for _, k := range keys {
		sl := hashkit.Slot([]byte(k))
		groups[sl] = append(groups[sl], k)
	}
	for sl, g := range groups {
		if len(g) == 0 {
			delete(groups, sl)
		}
	}
	return groups
}

// Phases of a go-redis run.
const (
	grWarmup int32 = iota
	grMeasure
	grStop
)

// goRedisRun loads the cluster through cc with o.clients goroutines, each
// keeping sc.pipeline requests in flight (a go-redis Pipeline of 16 for
// 16 deep; go-redis splits it per node), over o.warmup then o.duration.
// An MGET is one MGET per slot in one go-redis Pipeline. The client's CPU is this process's
// (getrusage) over the window: nothing else of the driver runs then.
func (e *env) goRedisRun(ctx context.Context, o options, cc *redis.ClusterClient, sc scenario, nodePids []int) (sample, error) {
	ws := make([]goRedisWorker, o.clients)
	var phase atomic.Int32
	value := make([]byte, sc.size)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &ws[i]
			rng := rand.New(rand.NewPCG(uint64(i)+1, 0x9e3779b97f4a7c15))
			keys := make([]string, max(sc.multi, 1))
			groups := map[int][]string{}
			pipe := cc.Pipeline()
			cmds := make([]redis.Cmder, 0, sc.pipeline)
			for {
				ph := phase.Load()
				if ph == grStop || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				var errs, misses, n uint64
				switch {
				case sc.op == load.MGet:
					// ClusterClient sends an MGET to the first key's node,
					// which refuses keys of other slots (CROSSSLOT): a
					// go-redis user groups the keys by slot and pipelines
					// one MGET per slot (go-redis runs a pipeline's nodes
					// concurrently).
					for k := range keys {
						keys[k] = load.KeyName(sc.prefix, rng.IntN(o.keys))
					}
					cmds = cmds[:0]
					for _, g := range bySlot(keys, groups) {
						cmds = append(cmds, pipe.MGet(ctx, g...))
					}
					_, _ = pipe.Exec(ctx)
					n = 1
					for _, c := range cmds {
						if c.Err() != nil {
							errs++
							w.note(c.Err())
							break
						}
					}
				case sc.pipeline > 1:
					cmds = cmds[:0]
					for range sc.pipeline {
						key := load.KeyName(sc.prefix, rng.IntN(o.keys))
						if sc.op == load.Set {
							cmds = append(cmds, pipe.Set(ctx, key, value, 0))
						} else {
							cmds = append(cmds, pipe.Get(ctx, key))
						}
					}
					_, _ = pipe.Exec(ctx)
					n = uint64(len(cmds))
					for _, c := range cmds {
						switch err := c.Err(); {
						case errors.Is(err, redis.Nil):
							misses++
						case err != nil:
							errs++
							w.note(err)
						}
					}
				default:
					key := load.KeyName(sc.prefix, rng.IntN(o.keys))
					var err error
					if sc.op == load.Set {
						err = cc.Set(ctx, key, value, 0).Err()
					} else {
						err = cc.Get(ctx, key).Err()
					}
					n = 1
					switch {
					case errors.Is(err, redis.Nil):
						misses++
					case err != nil:
						errs++
						w.note(err)
					}
				}
				if ph != grMeasure {
					continue
				}
				lat := time.Since(t0)
				for range n {
					w.hist.Record(lat)
				}
				w.requests += n
				w.errors += errs
				w.misses += misses
			}
		}()
	}
	self := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	stat := func() map[string]cpuTimes {
		b, _ := os.ReadFile("/proc/stat")
		return parseCPUStat(string(b))
	}
	sleep := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	sleep(o.warmup)
	c0, b0, s0 := self(), cpuTicks(nodePids), stat()
	t0 := time.Now()
	phase.Store(grMeasure)
	sleep(o.duration)
	phase.Store(grStop)
	elapsed := time.Since(t0)
	c1, b1, s1 := self(), cpuTicks(nodePids), stat()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return sample{}, errors.New("bench: go-redis requests still running 10 s after the window")
	}
	var hist load.Histogram
	var requests, errs, misses uint64
	for i := range ws {
		if ws[i].first != nil && errs == 0 && ws[i].errors > 0 {
			logf("%s %s: %d error replies, the first: %v", goRedisTarget, sc.name, ws[i].errors, ws[i].first)
		}
		hist.Merge(&ws[i].hist)
		requests += ws[i].requests
		errs += ws[i].errors
		misses += ws[i].misses
	}
	if ctx.Err() != nil {
		return sample{}, ctx.Err()
	}
	if requests == 0 {
		return sample{}, errors.New("bench: go-redis completed no request")
	}
	m := sample{rps: float64(requests) / elapsed.Seconds(), p50: hist.Quantile(0.5), p99: hist.Quantile(0.99),
		p999: hist.Quantile(0.999), errors: errs, misses: misses, cpuUS: -1, backendUS: -1,
		genUS: float64(c1-c0) / 1e3 / float64(requests), machineBusy: machineBusy(s0, s1)}
	if len(nodePids) > 0 {
		m.backendUS = float64(b1-b0) / float64(e.clkTck) * 1e6 / float64(requests)
	}
	m.count, m.slow, m.max = hist.Count(), hist.CountAtLeast(slowLatency), hist.Max()
	m.coreBusy = [2]float64{-1, -1}
	return m, nil
}

// clusterRedisBenchmark runs redis-benchmark GET/SET 100 B, unpipelined
// and 16 deep, against each proxy (a plain client: no --cluster) and with
// --cluster straight to the nodes, in alternating rounds. Half the
// requests of the main cross-check: the group is meant to take a few
// minutes.
func (e *env) clusterRedisBenchmark(ctx context.Context, o options, rep *report, targets []*target, nodes []string, nodePids []int) error {
	for round := range o.rounds {
		for _, depth := range []int{1, 16} {
			n := 50000
			if depth > 1 {
				n = 200000
			}
			runs := append([]*target(nil), targets...)
			runs = append(runs, &target{name: rbClusterName, redis: nodes[:1], backendPids: nodePids})
			for _, t := range runs {
				host, port, _ := strings.Cut(t.redis[0], ":")
				args := []string{"-h", host, "-p", port, "-c", strconv.Itoa(o.clients), "-n", strconv.Itoa(n),
					"-P", strconv.Itoa(depth), "-r", strconv.Itoa(o.keys), "-d", "100", "-t", "get,set", "--csv"}
				if t.proc == nil {
					args = append(args, "--cluster")
				}
				pids := tree(t.pid())
				c0 := cpuTicks(pids)
				b0 := cpuTicks(t.backendPids)
				cmd := exec.CommandContext(ctx, "redis-benchmark", args...)
				out, err := cmd.Output()
				c1 := cpuTicks(pids)
				b1 := cpuTicks(t.backendPids)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var rows []rbRow
				if err == nil {
					rows, err = parseRBCSV(rbCSV(string(out)))
				}
				if err != nil {
					logf("cluster redis-benchmark P%d round %d on %s: %v", depth, round+1, t.name, err)
					rep.clusterRBFailed = append(rep.clusterRBFailed, fmt.Sprintf("%s P%d: %v", t.name, depth, err))
					continue
				}
				perReq := func(ticks int64) float64 { return float64(ticks) / float64(e.clkTck) * 1e6 / float64(2*n) }
				cpu, nodeCPU := -1.0, perReq(b1-b0)
				if t.proc != nil {
					cpu = perReq(c1 - c0)
				}
				client := float64(cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()) / 1e3 / float64(2*n)
				var parts []string
				for _, r := range rows {
					r.target, r.depth, r.cpuUS, r.clientUS, r.instances, r.nodeUS = t.name, depth, cpu, client, 1, nodeCPU
					rep.clusterRB = append(rep.clusterRB, r)
					parts = append(parts, fmt.Sprintf("%s %.0f", r.test, r.rps))
				}
				logf("cluster redis-benchmark P%d round %d %-26s %s, proxy %.2f µs/req, client %.2f µs/req", depth, round+1, t.name, strings.Join(parts, " "), cpu, client)
			}
		}
	}
	return nil
}

// rbCSV is redis-benchmark's CSV without what --cluster prints before it
// (the nodes it found).
func rbCSV(out string) string {
	if i := strings.Index(out, "\"test\""); i > 0 {
		return out[i:]
	}
	return out
}

// writeCluster is the group's section of the report.
func (r *report) writeCluster(w io.Writer) {
	if len(r.cluster) == 0 && len(r.clusterRB) == 0 && len(r.clusterRBFailed) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Redis Cluster: %d masters, through nuthatch and predixy, and go-redis's ClusterClient straight to the nodes\n\n", clusterMasters)
	fmt.Fprint(w, "A Redis Cluster of 3 masters (no replicas) on loopback, every key preloaded. go-redis v9's ClusterClient, in the driver's process, is what a cluster-aware client does without a proxy: the client-side limit (ClusterClient's MGET of keys in several slots is refused with CROSSSLOT, so its MGET rows group the keys by slot and send one MGET per slot in one Pipeline, which go-redis runs per node concurrently). The proxies are loaded by the project's generator. CPU µs/req: proxy = all the proxy's processes; nodes = the 3 redis-servers; client = the generator's process for the proxies, go-redis's (this process, getrusage) for go-redis. Medians of the rounds.\n\n")
	for _, n := range r.clusterNotes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if len(r.clusterNotes) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "| scenario | target | req/s | spread | p50 µs | p99 µs | p99.9 µs | proxy CPU µs/req | nodes CPU µs/req | client CPU µs/req | × predixy | proxy CPU × predixy | × go-redis |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var verdicts []string
	for _, rs := range r.cluster {
		pd, _, okP := rs.median("predixy")
		gr, _, _ := rs.median(goRedisTarget)
		for _, name := range r.clusterTargets {
			m, spread, ok := rs.median(name)
			if !ok {
				if e, failed := rs.errs[name]; failed {
					fmt.Fprintf(w, "| %s | %s | failed: %s ||||||||||\n", rs.sc.name, name, e)
				}
				continue
			}
			label := name
			if m.errors > 0 {
				label += fmt.Sprintf(" (%d error replies)", m.errors)
			}
			if m.misses > 0 && rs.sc.op != load.Set {
				label += fmt.Sprintf(" (%d misses)", m.misses)
			}
			f := func(v float64) string {
				if v < 0 {
					return "—"
				}
				return fmt.Sprintf("%.2f", v)
			}
			cpuVs := "—"
			if okP && m.cpuUS > 0 && pd.cpuUS > 0 {
				cpuVs = ratio(m.cpuUS, pd.cpuUS)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %.0f%% | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				rs.sc.name, label, m.rps, spread*100, us(m.p50), us(m.p99), us(m.p999), f(m.cpuUS), f(m.backendUS), f(m.genUS),
				ratio(m.rps, pd.rps), cpuVs, ratio(m.rps, gr.rps))
		}
		if nt, _, ok := rs.median(shipped); ok && okP && pd.rps > 0 && pd.cpuUS > 0 {
			mark := "✗"
			if nt.rps > pd.rps && nt.cpuUS < pd.cpuUS {
				mark = "✓"
			}
			verdicts = append(verdicts, fmt.Sprintf("%s %.2f× / %.2f× %s", rs.sc.name, nt.rps/pd.rps, nt.cpuUS/pd.cpuUS, mark))
		}
	}
	if len(verdicts) > 0 {
		fmt.Fprintf(w, "\nnuthatch-auto against predixy (throughput × / proxy CPU per request ×; goal: more throughput at less CPU): %s.\n", strings.Join(verdicts, "; "))
	}
	for _, rs := range r.cluster {
		if rs.loadAvg != "" {
			fmt.Fprintf(w, "\nLoad average after the group's generator runs: %s\n", r.cluster[len(r.cluster)-1].loadAvg)
			break
		}
	}
	if len(r.clusterRB) == 0 && len(r.clusterRBFailed) == 0 {
		return
	}
	rows := rbMedians(r.clusterRB)
	rounds := 0
	for _, row := range rows {
		rounds = max(rounds, row.rounds)
	}
	fmt.Fprintf(w, "\nredis-benchmark GET/SET 100 B, %d clients, 50,000 requests unpipelined and 200,000 16 deep per test, medians of %d rounds: against each proxy as a plain client, and `--cluster` straight to the nodes (its keys carry a hash tag per node, so its GETs miss). CPU µs/req over GET and SET together; client = redis-benchmark's own (rusage).\n\n", r.clusterClients, rounds)
	fmt.Fprint(w, "| test | target | req/s | p50 ms | p99 ms | proxy CPU µs/req | nodes CPU µs/req | client CPU µs/req | × predixy | × --cluster |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range rows {
		f := func(v float64) string {
			if v < 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f", v)
		}
		pd, _ := rbFind(rows, "predixy", row, false)
		dc, _ := rbFind(rows, rbClusterName, row, false)
		fmt.Fprintf(w, "| %s P%d | %s | %.0f | %.3f | %.3f | %s | %s | %s | %s | %s |\n", row.test, row.depth, row.target, row.rps, row.p50, row.p99,
			f(row.cpuUS), f(row.nodeUS), f(row.clientUS), ratio(row.rps, pd.rps), ratio(row.rps, dc.rps))
	}
	for _, f := range r.clusterRBFailed {
		fmt.Fprintf(w, "\nfailed: %s\n", f)
	}
}

// writeClusterProfile is the cluster pool's CPU profile, when taken.
func (r *report) writeClusterProfile(w io.Writer) {
	if r.clusterProfile != "" {
		fmt.Fprintf(w, "\n### CPU profile of the cluster pool (in-process, one proxy as in one worker; GET 100 B, SET 100 B 16 deep, MGET of 10 keys)\n\n%s", r.clusterProfile)
	}
}
