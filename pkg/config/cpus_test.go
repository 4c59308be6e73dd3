package config

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCgroupQuota(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  float64
	}{
		{"v2 limited", map[string]string{
			"proc": "0::/system.slice/nuthatch.service\n",
			"fs/system.slice/nuthatch.service/cpu.max": "150000 100000\n",
			"fs/system.slice/cpu.max":                  "max 100000\n",
		}, 1.5},
		{"v2 parent tighter", map[string]string{
			"proc":           "0::/a/b\n",
			"fs/a/b/cpu.max": "400000 100000\n",
			"fs/a/cpu.max":   "200000 100000\n",
		}, 2},
		{"v2 unlimited", map[string]string{
			"proc":         "0::/a\n",
			"fs/a/cpu.max": "max 100000\n",
		}, 0},
		{"v1 cpu,cpuacct", map[string]string{
			"proc":                               "11:memory:/x\n4:cpu,cpuacct:/x\n1:name=systemd:/x\n",
			"fs/cpu,cpuacct/x/cpu.cfs_quota_us":  "50000\n",
			"fs/cpu,cpuacct/x/cpu.cfs_period_us": "100000\n",
			"fs/cpu,cpuacct/cpu.cfs_quota_us":    "-1\n",
			"fs/cpu,cpuacct/cpu.cfs_period_us":   "100000\n",
		}, 0.5},
		{"v1 unlimited", map[string]string{
			"proc":                     "1:cpu:/\n",
			"fs/cpu/cpu.cfs_quota_us":  "-1\n",
			"fs/cpu/cpu.cfs_period_us": "100000\n",
		}, 0},
		{"no cgroup file", map[string]string{}, 0},
		{"garbage", map[string]string{
			"proc":         "garbage\n0::/a\n",
			"fs/a/cpu.max": "lots\n",
		}, 0},
	} {
		root := t.TempDir()
		writeFiles(t, root, tt.files)
		if got := cgroupQuota(filepath.Join(root, "proc"), filepath.Join(root, "fs")); got != tt.want {
			t.Errorf("%s: quota %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCPUBudget(t *testing.T) {
	for _, tt := range []struct {
		b            CPUBudget
		usable, auto int
	}{
		{CPUBudget{Affinity: 2}, 2, 1},
		{CPUBudget{Affinity: 1}, 1, 1},
		{CPUBudget{Affinity: 16}, 16, 8},
		{CPUBudget{Affinity: 16, Quota: 3.5}, 4, 2},
		{CPUBudget{Affinity: 4, Quota: 0.5}, 1, 1},
		{CPUBudget{Affinity: 48}, 48, 24},
	} {
		if u, a := tt.b.Usable(), tt.b.AutoWorkers(); u != tt.usable || a != tt.auto {
			t.Errorf("%+v: usable %d auto %d, want %d %d", tt.b, u, a, tt.usable, tt.auto)
		}
	}
}
