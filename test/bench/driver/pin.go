package main

// The per-core group: each pinnable proxy alone on CPU 0, and everything
// that loads it (this process, which generates the load, and the
// backends) on CPU 1, so that a proxy's throughput is what one core of it
// gives and it cannot borrow the generator's core. The running targets are
// pinned in place with taskset -a after they started (every thread of every
// process: master and workers), and each pinned process gets its own
// affinity back afterwards, before the idle, redis-benchmark and syscall
// runs.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

const (
	proxyCPU = "0"
	loadCPU  = "1"
)

// tasksetArgs pins every thread (-a) of the running process pid (-p) to
// the CPU list cpus (-c).
func tasksetArgs(cpus string, pid int) []string {
	return []string{"-a", "-p", "-c", cpus, strconv.Itoa(pid)}
}

// cpusAllowed is the Cpus_allowed_list of a /proc/PID/status text.
func cpusAllowed(status string) (string, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			if v = strings.TrimSpace(v); v != "" {
				return v, nil
			}
		}
	}
	return "", errors.New("no Cpus_allowed_list")
}

// threadAffinities is the CPU list of each thread of pid.
func threadAffinities(pid int) ([]string, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(dirs) == 0 {
		return nil, fmt.Errorf("no threads of %d: %v", pid, err)
	}
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // the thread ended
		}
		l, err := cpusAllowed(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// pinSkip says why the pinned group cannot run, or "" when it can.
func pinSkip(cpus int, taskset error) string {
	switch {
	case taskset != nil:
		return "pinned group skipped: taskset not found (util-linux)"
	case cpus < 2:
		return fmt.Sprintf("pinned group skipped: it needs 2 CPUs, this process may use %d", cpus)
	}
	return ""
}

type pinning struct {
	name string
	pid  int
	orig string // Cpus_allowed_list before
}

// pinner remembers what it pinned, to undo it.
type pinner struct{ done []pinning }

// pin moves every thread of pid to cpus and checks that they all moved:
// a thread the process started while taskset walked its threads may have
// kept the old mask, so it tries once more.
func (p *pinner) pin(name string, pid int, cpus string) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("%s (pid %d): %w", name, pid, err)
	}
	orig, err := cpusAllowed(string(b))
	if err != nil {
		return fmt.Errorf("%s (pid %d): %w", name, pid, err)
	}
	for try := 0; ; try++ {
		if out, err := exec.Command("taskset", tasksetArgs(cpus, pid)...).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset %s for %s: %w: %s", strings.Join(tasksetArgs(cpus, pid), " "), name, err, strings.TrimSpace(string(out)))
		}
		if try == 0 {
			p.done = append(p.done, pinning{name: name, pid: pid, orig: orig})
		}
		lists, err := threadAffinities(pid)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		bad := ""
		for _, l := range lists {
			if l != cpus {
				bad = l
			}
		}
		if bad == "" {
			return nil
		}
		if try == 1 {
			return fmt.Errorf("%s (pid %d): a thread is still on CPUs %s", name, pid, bad)
		}
	}
}

// restore gives every pinned process its affinity back, the last pinned
// first (this process, which runs taskset, is pinned last).
func (p *pinner) restore() error {
	var errs []error
	for i := len(p.done) - 1; i >= 0; i-- {
		d := p.done[i]
		if out, err := exec.Command("taskset", tasksetArgs(d.orig, d.pid)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s (pid %d) back to %s: %w: %s", d.name, d.pid, d.orig, err, strings.TrimSpace(string(out))))
		}
	}
	p.done = nil
	return errors.Join(errs...)
}

// pinAll pins the pinnable proxies to proxyCPU, then the backends and this
// process to loadCPU.
func (e *env) pinAll(p *pinner, rep *report) error {
	for _, t := range rep.targets {
		if !t.pinnable || t.proc == nil {
			continue
		}
		for _, pid := range tree(t.pid()) {
			if err := p.pin(t.name, pid, proxyCPU); err != nil {
				return err
			}
		}
	}
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
			return err
		}
	}
	return p.pin("load generator (this driver)", os.Getpid(), loadCPU)
}

// pinnedGroup runs scs with the proxies on CPU 0 and the generator and
// backends on CPU 1, and undoes the pinning whatever happens. When pinning
// is impossible it notes why in the report and runs nothing.
func (e *env) pinnedGroup(ctx context.Context, o options, rep *report, scs []scenario) error {
	_, lookErr := exec.LookPath("taskset")
	if note := pinSkip(runtime.NumCPU(), lookErr); note != "" {
		rep.notes = append(rep.notes, note)
		logf("%s", note)
		return nil
	}
	var p pinner
	defer func() {
		n := len(p.done)
		if err := p.restore(); err != nil {
			note := "pinned group: CPU affinity not restored, later runs may be pinned: " + err.Error()
			rep.notes = append(rep.notes, note)
			logf("%s", note)
		} else if n > 0 {
			logf("CPU affinity of %d processes restored", n)
		}
	}()
	if err := e.pinAll(&p, rep); err != nil {
		note := "pinned group skipped: " + err.Error()
		rep.notes = append(rep.notes, note)
		logf("%s", note)
		return nil
	}
	logf("pinned %d processes: proxies to CPU %s, backends and the generator to CPU %s", len(p.done), proxyCPU, loadCPU)
	for _, sc := range scs {
		if err := e.runScenario(ctx, o, rep, sc); err != nil {
			return err
		}
	}
	return nil
}
