package main

import (
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
)

// The cluster group's nuthatch configuration is the shipped one with one
// cluster pool over the nodes.
func TestClusterConfigParses(t *testing.T) {
	nodes := []string{"127.0.0.1:17001", "127.0.0.1:17002", "127.0.0.1:17003"}
	src := clusterConfig(6001, nodes)
	cfg, err := config.Parse([]byte(src), "cluster.hcl")
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	if len(cfg.Pools) != 1 || cfg.Pools[0].Cluster == nil || cfg.Pools[0].Listen.Addr != "127.0.0.1:6001" {
		t.Fatalf("pools: %+v", cfg.Pools)
	}
	if got := cfg.Pools[0].Cluster.Seeds; strings.Join(got, " ") != strings.Join(nodes, " ") {
		t.Errorf("seeds = %v, want %v", got, nodes)
	}
	if !strings.Contains(src, `worker_processes = "auto"`) {
		t.Errorf("not the shipped worker count:\n%s", src)
	}
}

// bySlot groups keys by slot, each key once, and forgets the slots of the
// previous request.
func TestBySlot(t *testing.T) {
	groups := map[int][]string{}
	bySlot([]string{"a", "b", "{a}x", "c"}, groups)
	bySlot([]string{"{a}1", "b", "{a}2"}, groups)
	if len(groups) != 2 {
		t.Fatalf("groups = %v, want 2 slots", groups)
	}
	a, b := hashkit.Slot([]byte("a")), hashkit.Slot([]byte("b"))
	if strings.Join(groups[a], " ") != "{a}1 {a}2" || strings.Join(groups[b], " ") != "b" {
		t.Errorf("groups = %v", groups)
	}
}

// redis-benchmark --cluster prints the nodes before the CSV.
func TestRBCSVAfterClusterHeader(t *testing.T) {
	out := "Cluster has 3 master nodes:\n\nMaster 0: dd4c 127.0.0.1:21383\n\n" +
		`"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"` + "\n" +
		`"SET","27218.29","1.159","0.056","0.455","1.807","7.743","237.695"` + "\n"
	rows, err := parseRBCSV(rbCSV(out))
	if err != nil || len(rows) != 1 || rows[0].rps != 27218.29 {
		t.Fatalf("rows = %+v, %v", rows, err)
	}
	if plain := `"test","rps"` + "\n"; rbCSV(plain) != plain {
		t.Errorf("plain CSV changed: %q", rbCSV(plain))
	}
}

// The cluster section: ratios to predixy and go-redis, the CPU verdict.
func TestReportCluster(t *testing.T) {
	rep := &report{clusterTargets: []string{shipped, "predixy", goRedisTarget}}
	rs := &scenarioResult{sc: scenario{name: "Cluster GET 100B", op: "get"}, samples: map[string][]sample{}, errs: map[string]string{}}
	rep.cluster = append(rep.cluster, rs)
	rs.record(shipped, sample{rps: 300, cpuUS: 8, backendUS: 5, genUS: 12})
	rs.record("predixy", sample{rps: 200, cpuUS: 10, backendUS: 5, genUS: 12})
	rs.record(goRedisTarget, sample{rps: 150, cpuUS: -1, backendUS: 6, genUS: 20})
	var b strings.Builder
	rep.write(&b)
	for _, want := range []string{
		"| Cluster GET 100B | nuthatch-auto | 300 | 0% | 0 | 0 | 0 | 8.00 | 5.00 | 12.00 | 1.50 | 0.80 | 2.00 |",
		"| Cluster GET 100B | go-redis ClusterClient | 150 | 0% | 0 | 0 | 0 | — | 6.00 | 20.00 | 0.75 | — | 1.00 |",
		"Cluster GET 100B 1.50× / 0.80× ✓",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	rs.record(shipped, sample{rps: 100, cpuUS: 12})
	rs.record("predixy", sample{rps: 220, cpuUS: 10})
	b.Reset()
	rep.write(&b)
	if !strings.Contains(b.String(), "Cluster GET 100B 0.95× / 1.00× ✗") {
		t.Errorf("a slower, costlier nuthatch passes:\n%s", b.String())
	}
}
