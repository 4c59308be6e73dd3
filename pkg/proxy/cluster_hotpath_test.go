package proxy

import "testing"

// newClusterRig is the rig of a cluster pool whose slot map puts slots
// 0-8191 on the first node and 8192-16383 on the second: "b" (slot 3300)
// and "foo" (12182) and "a" (15495) are spread over them.
func newClusterRig(tb testing.TB) *rig {
	tb.Helper()
	hcl := "pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n  cluster {\n    seeds = [\"127.0.0.1:7000\"]\n  }\n}\n"
	return rigOf(tb, hcl, func(p *pool) {
		p.setSlotMap(SlotMap{Pool: "p", Version: 1, Nodes: []string{"127.0.0.1:7000", "127.0.0.1:7001"},
			Ranges: []SlotRange{{Start: 0, End: 8191, Node: 0}, {Start: 8192, End: 16383, Node: 1}}})
	})
}

// clusterHotPaths go through a cluster pool: slot routing, the request
// kept for a replay, per-slot fragments of an MGET.
var clusterHotPaths = []struct {
	name, req string
	replies   map[int]string
	want      string
}{
	{"GET", "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n", map[int]string{1: "$3\r\nbar\r\n"}, "$3\r\nbar\r\n"},
	{"SET", "*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n", map[int]string{1: "+OK\r\n"}, "+OK\r\n"},
	{"MGET 2 nodes", "*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n", nil, "*2\r\n$2\r\nva\r\n$2\r\nvb\r\n"},
}

func TestClusterHotPathReplies(t *testing.T) {
	for _, hp := range clusterHotPaths {
		t.Run(hp.name, func(t *testing.T) {
			r := newClusterRig(t)
			for range 3 {
				if got := r.exchange(hp.req, hp.replies); string(got) != hp.want {
					t.Fatalf("got %q, want %q", got, hp.want)
				}
			}
		})
	}
}

// A cluster pool's per-request path allocates nothing once warm, as a
// plain pool's does.
func TestClusterHotPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race; make test runs this without it")
	}
	for _, hp := range clusterHotPaths {
		t.Run(hp.name, func(t *testing.T) {
			r := newClusterRig(t)
			run := r.prepared(hp.req, hp.replies)
			for range 100 {
				run()
			}
			if n := testing.AllocsPerRun(1000, run); n != 0 {
				t.Errorf("%v allocations per request", n)
			}
		})
	}
}

// BenchmarkClusterHotPath includes the socketpair system calls of both
// peers.
func BenchmarkClusterHotPath(b *testing.B) {
	for _, hp := range clusterHotPaths {
		b.Run(hp.name, func(b *testing.B) {
			r := newClusterRig(b)
			run := r.prepared(hp.req, hp.replies)
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}
