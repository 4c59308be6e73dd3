package config

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// CPUBudget is what worker_processes = "auto" is worked out from: the CPUs
// the process may run on and the CPU time its cgroup may use.
type CPUBudget struct {
	Affinity int     // CPUs in the affinity mask (taskset, systemd CPUAffinity=)
	Quota    float64 // cgroup CPU bandwidth limit in CPUs (CPUQuota=, cpu.max); 0 for none
}

// Usable is the whole number of CPUs the proxy can keep busy.
func (b CPUBudget) Usable() int {
	u := b.Affinity
	if b.Quota > 0 {
		u = min(u, int(math.Ceil(b.Quota)))
	}
	return max(u, 1)
}

// AutoWorkers is worker_processes = "auto": one worker per two usable CPUs,
// rounded up. A worker's loop is one thread, but each request it proxies
// also costs the kernel's TCP work and the backends' and clients' CPU on
// the same host; measured on a 2-CPU machine shared with the load and the
// backends, a second worker cost 16-40 % more CPU per request and lost
// throughput (docs/performance.md, "worker count").
func (b CPUBudget) AutoWorkers() int {
	return min((b.Usable()+1)/2, MaxWorkerProcesses)
}

// HostCPUs reads this process's CPU budget.
func HostCPUs() CPUBudget {
	return CPUBudget{Affinity: runtime.NumCPU(), Quota: cgroupQuota("/proc/self/cgroup", "/sys/fs/cgroup")}
}

// cgroupQuota is the tightest CPU bandwidth limit on the process's cgroup
// and its ancestors, in CPUs (0: none), for cgroup v2 (cpu.max) and v1
// (cpu.cfs_quota_us / cpu.cfs_period_us).
func cgroupQuota(procCgroup, root string) float64 {
	data, err := os.ReadFile(procCgroup)
	if err != nil {
		return 0
	}
	best := 0.0
	take := func(q float64) {
		if q > 0 && (best == 0 || q < best) {
			best = q
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			for _, dir := range ancestors(filepath.Join(root, f[2]), root) {
				take(cpuMax(filepath.Join(dir, "cpu.max")))
			}
			continue
		}
		for _, ctl := range strings.Split(f[1], ",") {
			if ctl != "cpu" {
				continue
			}
			// v1: mounted as cpu, or together with cpuacct.
			for _, mount := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
				base := filepath.Join(root, mount)
				for _, dir := range ancestors(filepath.Join(base, f[2]), base) {
					take(cfsQuota(dir))
				}
			}
		}
	}
	return best
}

// ancestors lists dir and its parents up to and including root.
func ancestors(dir, root string) []string {
	var out []string
	for {
		out = append(out, dir)
		if dir == root || len(dir) <= len(root) {
			return out
		}
		dir = filepath.Dir(dir)
	}
}

func cpuMax(file string) float64 {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	return ratio(f[0], f[1])
}

func cfsQuota(dir string) float64 {
	q, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	p, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err1 != nil || err2 != nil {
		return 0
	}
	return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

func ratio(quota, period string) float64 {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return q / p
}
