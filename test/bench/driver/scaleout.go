package main

// The scale-out group: how the per-worker cost grows with the number of
// workers, measured without a bigger machine. N workers (1, 2, 4, 8) run
// on CPU 0, each in a cgroup of its own whose CPU quota is 1/16 of a CPU,
// so that every worker has the same small share of a core whatever N, and
// the load grows with N (scaleClients per worker, 16 deep) so that each
// worker carries the same; the generator and the backends are on CPU 1,
// which at 8 workers still has room. If workers cost nothing extra for
// being many, throughput grows as N and CPU per request stays flat.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nuthatch-proxy/nuthatch/test/bench/load"
)

// scaleShare is each worker's CPU quota, in CPUs: at 8 workers they have
// half of CPU 0 together. scaleClients are the clients per worker.
const (
	scaleShare   = 0.0625
	scaleClients = 12
)

var scaleWorkers = []int{1, 2, 4, 8}

type scaleRow struct {
	workers int
	samples []sample
}

// cpuCgroup makes and removes the quota cgroups, v2 (cpu.max) or v1
// (cpu.cfs_quota_us).
type cpuCgroup struct {
	base string // the directory new cgroups are made in
	v2   bool
	made []string
}

func openCPUCgroup() (*cpuCgroup, error) {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		if !strings.Contains(string(b), "cpu") {
			return nil, errors.New("cgroup v2 without the cpu controller")
		}
		// Enabling cpu for children is needed for cpu.max there.
		_ = os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0o644)
		return &cpuCgroup{base: "/sys/fs/cgroup", v2: true}, nil
	}
	for _, d := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(d, "cpu.cfs_quota_us")); err == nil {
			return &cpuCgroup{base: d}, nil
		}
	}
	return nil, errors.New("no cgroup cpu controller found")
}

// limit puts pid in a new cgroup limited to share CPUs.
func (c *cpuCgroup) limit(name string, pid int, share float64) error {
	dir := filepath.Join(c.base, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	c.made = append(c.made, dir)
	const period = 100000
	quota := int(share * period)
	var err error
	if c.v2 {
		err = os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, period)), 0o644)
	} else {
		err = errors.Join(os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(period)), 0o644),
			os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.Itoa(quota)), 0o644))
	}
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// cleanup removes the cgroups once their processes are gone.
func (c *cpuCgroup) cleanup() {
	for _, d := range c.made {
		for range 50 {
			if err := os.Remove(d); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c.made = nil
}

// scaleOut runs the group; a machine that cannot (fewer than 2 CPUs, no
// taskset, no writable cgroup cpu controller) gets a note instead.
func (e *env) scaleOut(ctx context.Context, o options, rep *report, b *backends) error {
	_, lookErr := exec.LookPath("taskset")
	if note := pinSkip(runtime.NumCPU(), lookErr); note != "" {
		rep.notes = append(rep.notes, strings.Replace(note, "pinned group", "scale-out group", 1))
		return nil
	}
	cg, err := openCPUCgroup()
	if err != nil {
		rep.notes = append(rep.notes, "scale-out group skipped: "+err.Error())
		return nil
	}
	defer cg.cleanup()
	var p pinner
	defer func() {
		if err := p.restore(); err != nil {
			rep.notes = append(rep.notes, "scale-out group: CPU affinity not restored: "+err.Error())
		}
	}()
	e.procs.mu.Lock()
	var backends []*proc
	for _, q := range e.procs.procs {
		if isBackend(q.name) {
			backends = append(backends, q)
		}
	}
	e.procs.mu.Unlock()
	for _, q := range backends {
		if err := p.pin(q.name, q.pid(), loadCPU); err != nil {
			rep.notes = append(rep.notes, "scale-out group skipped: "+err.Error())
			return nil
		}
	}
	if err := p.pin("load generator (this driver)", os.Getpid(), loadCPU); err != nil {
		rep.notes = append(rep.notes, "scale-out group skipped: "+err.Error())
		return nil
	}
	// pinned: measure records how busy each core was.
	sc := scenario{name: "scale-out redis GET 100B P16", proto: load.Redis, op: load.Get, size: 100, prefix: "k100:", pipeline: 16, pinned: true}
	for _, n := range scaleWorkers {
		name := fmt.Sprintf("nuthatch-x%d", n)
		t, err := e.nuthatch(ctx, b, name, e.nuthatchBin, strconv.Itoa(n), scaleOutSettings, false)
		if err != nil {
			return err
		}
		row := scaleRow{workers: n}
		err = func() error {
			defer e.procs.stop(t.proc)
			// The master does no traffic work: it keeps its affinity and
			// no quota; the workers go to CPU 0, a quota each.
			pids := tree(t.pid())
			for wait := 0; len(pids) != n+1 && wait < 100; wait++ {
				time.Sleep(50 * time.Millisecond) // workers still starting
				pids = tree(t.pid())
			}
			if len(pids) != n+1 {
				return fmt.Errorf("%s: %d processes, want a master and %d workers", name, len(pids), n)
			}
			for i, pid := range pids[1:] {
				if err := p.pin(name, pid, proxyCPU); err != nil {
					return err
				}
				if err := cg.limit(fmt.Sprintf("nuthatch-bench-%d-w%d", n, i), pid, scaleShare); err != nil {
					return fmt.Errorf("cgroup for %s worker %d: %w", name, i, err)
				}
			}
			oc := o
			oc.clients = scaleClients * n
			for round := range o.rounds {
				m, err := e.measure(ctx, oc, t, sc, t.redis)
				if err != nil {
					return fmt.Errorf("%s round %d: %w", name, round+1, err)
				}
				row.samples = append(row.samples, m)
			}
			return nil
		}()
		// The stopped workers' pinnings need no undoing.
		p.done = p.done[:len(backends)+1]
		cg.cleanup()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.notes = append(rep.notes, "scale-out: "+err.Error())
			logf("scale-out: %v", err)
			continue
		}
		rep.scale = append(rep.scale, row)
		m := medianSample(row.samples)
		logf("scale-out %d workers: %.0f req/s, %.2f µs/req", n, m.rps, m.cpuUS)
	}
	return nil
}

// medianSample folds rounds into per-field medians.
func medianSample(ss []sample) sample {
	rs := &scenarioResult{samples: map[string][]sample{"x": ss}}
	m, _, _ := rs.median("x")
	return m
}

// writeScale is the scale-out table and the projection from it.
func (r *report) writeScale(w io.Writer) {
	if len(r.scale) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Scale-out: N workers, each limited to %.3g of a CPU by its cgroup (Redis GET 100 B, 16 deep, %d clients per worker)\n\n", scaleShare, scaleClients)
	fmt.Fprint(w, "Workers on CPU 0, each in a cgroup with the same CPU quota, the load growing with them; the generator and the backends on CPU 1. Linear scaling is req/s × N and flat CPU per request.\n\n")
	fmt.Fprint(w, "| workers | CPU share in all | req/s | req/s per worker | per worker × 1 worker's | CPU µs/req | CPU × 1 worker's | CPU 1 busy |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var base sample
	for i, row := range r.scale {
		m := medianSample(row.samples)
		if i == 0 {
			base = m
		}
		per := m.rps / float64(row.workers)
		basePer := base.rps / float64(r.scale[0].workers)
		fmt.Fprintf(w, "| %d | %.3g | %.0f | %.0f | %s | %.2f | %s | %.0f%% |\n", row.workers, scaleShare*float64(row.workers), m.rps, per,
			ratio(per, basePer), m.cpuUS, ratio(m.cpuUS, base.cpuUS), m.coreBusy[1]*100)
	}
	last := r.scale[len(r.scale)-1]
	m := medianSample(last.samples)
	b := medianSample(r.scale[0].samples)
	if m.rps <= 0 || b.rps <= 0 {
		return
	}
	eff := (m.rps / float64(last.workers)) / (b.rps / float64(r.scale[0].workers))
	fmt.Fprintf(w, "\nProjection. Assumptions: each worker has a core of its own (and the kernel's network work another share), the load comes from other machines, the backends keep up, and a worker among many keeps the efficiency measured here with %d (%.2f of one worker alone).", last.workers, eff)
	if rs := r.find("pinned redis GET 100B"); rs != nil {
		if one, _, ok := rs.median("nuthatch-1"); ok && one.rps > 0 {
			fmt.Fprintf(w, " Unpipelined, from the per-core group's %.0f req/s on one core: 16 cores %.2fM, 48 cores %.2fM req/s.", one.rps, one.rps*16*eff/1e6, one.rps*48*eff/1e6)
		}
	}
	if m.cpuUS > 0 {
		perCore := 1e6 / m.cpuUS
		fmt.Fprintf(w, " 16 deep, from the CPU per request here (%.0f req/s per core): 16 cores %.1fM, 48 cores %.1fM req/s.", perCore, perCore*16*eff/1e6, perCore*48*eff/1e6)
	}
	fmt.Fprint(w, " The seed article's figures (unpipelined, long connections): one worker ≈ 115 k req/s, 1.52 M at 40 workers.\n")
}

// scaleOutSettings make the workers spread the generator's connections
// by hash, as they do connections from other machines, which the group
// stands in for: steered by CPU ("auto" steers loopback ones), every
// connection of the generator, pinned to CPU 1, would reach worker 1 and
// the group would measure one worker's quota (2026-12-02 19:25 run: 1, 2,
// 4, 8 workers 30,611, 31,252, 32,484, 28,395 req/s).
const scaleOutSettings = "reuseport_steering = \"hash\"\n"
