package cluster

import (
	"slices"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
	"github.com/nuthatch-proxy/nuthatch/test/redisdiff"
)

// clusterLayout is the differential script's layout in a cluster pool:
// the two "servers" of its steps about keys kept apart are two sets of
// slots (keys of one are never in a slot of the other), and commands that
// need one slot get hash-tagged keys.
var clusterLayout = redisdiff.Layout{Cluster: true, Server: func(k []byte) int { return hashkit.Slot(k) % 2 }}

// The project's Redis differential script (test/redisdiff) through a
// cluster pool and straight to one redis-server (not in cluster mode):
// byte-identical replies but for the steps tagged with a cluster
// difference, each a row of docs/redis.md's Redis Cluster section; an
// untagged difference fails, and so does a tagged step that stopped
// differing. Then the masters hold, together, the keys the redis-server
// holds.
func TestClusterDifferential(t *testing.T) {
	r := startCluster(t, 3, 0)
	addr, _ := r.proxy(t)
	direct := harness.Redis(t)
	script := redisdiff.Script(clusterLayout)
	ref, got := redisdiff.NewSession(t, direct.Addr), redisdiff.NewSession(t, addr)
	identical, expected := redisdiff.Compare(t, script, ref, got, "redis-server", "cluster pool",
		func(st redisdiff.Step) string { return st.ClusterDiff })
	ndiff := 0
	for _, n := range expected {
		ndiff += n
	}
	t.Logf("%d steps: %d identical, %d expected differences %v", len(script), identical, ndiff, expected)

	var inCluster []string
	for _, n := range r.nodes {
		inCluster = append(inCluster, redisdiff.Keys(t, n.addr(), clusterDivergent)...)
	}
	slices.Sort(inCluster)
	if want := redisdiff.Keys(t, direct.Addr, clusterDivergent); !slices.Equal(inCluster, want) {
		t.Errorf("the cluster's masters hold other keys than the redis-server:\n cluster:      %q\n redis-server: %q", inCluster, want)
	}
	used := 0
	for _, n := range r.nodes {
		if len(redisdiff.Keys(t, n.addr(), nil)) > 0 {
			used++
		}
	}
	if used != len(r.nodes) {
		t.Errorf("keys on %d of %d masters: the script does not exercise every node", used, len(r.nodes))
	}
}

// clusterDivergent are the keys written by steps that differ by design:
// the RPOPLPUSH across slots, which one redis-server runs.
var clusterDivergent = map[string]bool{
	clusterLayout.PlacedKeys("p1:", 0, 3)[2]: true, clusterLayout.PlacedKeys("p2:", 1, 3)[2]: true,
}
