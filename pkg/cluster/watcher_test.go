package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/respconn"
)

// The testdata replies were read from a real Redis 7.0.15 cluster: three
// masters with one replica each (two replicas not synced yet, which
// SHARDS reports as loading and SLOTS omits), and a fourth master added
// with no slots.
func readReply(t testing.TB, name string) any {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	v, n := respconn.Decode(b)
	if n != len(b) {
		t.Fatalf("%s: decoded %d of %d bytes", name, n, len(b))
	}
	return v
}

func TestParseShards(t *testing.T) {
	m, err := parseShards(readReply(t, "shards-7.0.resp"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// The slot-less master is listed; replicas only when online. The
	// masters in address order, whatever the node's order (here 21002,
	// 21007, 21001, 21003).
	want := []string{"127.0.0.1:21001", "127.0.0.1:21002", "127.0.0.1:21003", "127.0.0.1:21007"}
	if !slices.Equal(m.Nodes, want) {
		t.Fatalf("nodes %v, want %v", m.Nodes, want)
	}
	if len(m.Replicas) != 4 || len(m.Replicas[0]) != 0 || len(m.Replicas[1]) != 0 || len(m.Replicas[3]) != 0 ||
		!slices.Equal(m.Replicas[2], []string{"127.0.0.1:21006"}) {
		t.Fatalf("replicas %v", m.Replicas)
	}
	wantRanges := []Range{{0, 5460, 0}, {5461, 10922, 1}, {10923, 16383, 2}}
	if !slices.Equal(m.Ranges, wantRanges) {
		t.Fatalf("ranges %v, want %v", m.Ranges, wantRanges)
	}
}

// Two nodes list the shards in orders of their own: the map is the same,
// else every read from the other node would count as a new map (pushed to
// the workers, SCAN's masters reordered).
func TestParseShardsOrderFree(t *testing.T) {
	v := readReply(t, "shards-7.0.resp").([]any)
	a, err := parseShards(v, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(v)
	b, err := parseShards(v, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.Nodes, a.Replicas, a.Ranges) != fmt.Sprint(b.Nodes, b.Replicas, b.Ranges) {
		t.Fatalf("the shards in another order read as another map:\n %v %v %v\n %v %v %v", a.Nodes, a.Replicas, a.Ranges,
			b.Nodes, b.Replicas, b.Ranges)
	}
}

func TestParseSlots(t *testing.T) {
	m, err := parseSlots(readReply(t, "slots-7.0.resp"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:21001", "127.0.0.1:21002", "127.0.0.1:21003"}; !slices.Equal(m.Nodes, want) {
		t.Fatalf("nodes %v, want %v", m.Nodes, want)
	}
	if !slices.Equal(m.Replicas[2], []string{"127.0.0.1:21006"}) || len(m.Replicas[0])+len(m.Replicas[1]) != 0 {
		t.Fatalf("replicas %v", m.Replicas)
	}
	if len(m.Ranges) != 3 || m.Ranges[2] != (Range{10923, 16383, 2}) {
		t.Fatalf("ranges %v", m.Ranges)
	}
}

// A replica named as a master of another shard too (a reply read in the
// middle of a failover) is kept as a master only.
func TestParseShardsPromotedReplica(t *testing.T) {
	node := func(port int64, role, health string) []any {
		return []any{"ip", "10.0.0.1", "port", port, "role", role, "health", health, "replication-offset", int64(5)}
	}
	v := []any{
		[]any{"slots", []any{int64(0), int64(99)}, "nodes", []any{node(1, "master", "online"), node(2, "replica", "online")}},
		[]any{"slots", []any{int64(100), int64(199)}, "nodes", []any{node(2, "master", "online"), node(3, "replica", "failed")}},
		[]any{"slots", []any{int64(200), int64(20000)}, "nodes", []any{node(4, "master", "online")}},
		[]any{"slots", []any{}, "nodes", []any{node(5, "replica", "online")}},
	}
	m, _ := parseShards(v, "")
	if !slices.Equal(m.Nodes, []string{"10.0.0.1:1", "10.0.0.1:2", "10.0.0.1:4"}) || len(m.Replicas[0]) != 0 || len(m.Replicas[1]) != 0 {
		t.Fatalf("%+v", m)
	}
	if len(m.Ranges) != 2 { // 200-20000 is out of range
		t.Fatalf("ranges %v", m.Ranges)
	}
}

// fakeNode answers CLUSTER SHARDS and CLUSTER SLOTS with canned replies,
// or with an error where a reply is nil: a node older than 7.0, for the
// fallback (fault injection; the parsers are tested on real replies).
func fakeNode(t *testing.T, shards, slots []byte) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	asked := new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var words []string
					head, err := r.ReadString('\n')
					if err != nil {
						return
					}
					n := 0
					for _, ch := range strings.TrimSpace(head[1:]) {
						n = n*10 + int(ch-'0')
					}
					for range n {
						r.ReadString('\n')
						w, _ := r.ReadString('\n')
						words = append(words, strings.ToUpper(strings.TrimSpace(w)))
					}
					var out []byte
					switch strings.Join(words, " ") {
					case "CLUSTER SHARDS":
						asked.Or(1)
						out = shards
						if out == nil {
							out = []byte("-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n")
						}
					case "CLUSTER SLOTS":
						asked.Or(2)
						out = slots
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), asked
}

func watchOne(t *testing.T, seed string) Map {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	w := New(logrus.NewEntry(log))
	t.Cleanup(w.Close)
	w.Watch(&config.Config{Pools: []*config.Pool{{Name: "p", Cluster: &config.Cluster{Seeds: []string{seed},
		RefreshInterval: time.Hour}}}})
	select {
	case m := <-w.Maps():
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no map")
	}
	return Map{}
}

func TestWatcherFallsBackToSlots(t *testing.T) {
	slots, _ := os.ReadFile("testdata/slots-7.0.resp")
	addr, asked := fakeNode(t, nil, slots)
	m := watchOne(t, addr)
	if m.Source != "CLUSTER SLOTS" || len(m.Nodes) != 3 || asked.Load() != 3 {
		t.Fatalf("source %q nodes %v asked %b", m.Source, m.Nodes, asked.Load())
	}
}

func TestWatcherReadsShards(t *testing.T) {
	shards, _ := os.ReadFile("testdata/shards-7.0.resp")
	addr, asked := fakeNode(t, shards, []byte("-ERR not asked\r\n"))
	m := watchOne(t, addr)
	if m.Source != "CLUSTER SHARDS" || len(m.Nodes) != 4 || asked.Load() != 1 {
		t.Fatalf("source %q nodes %v asked %b", m.Source, m.Nodes, asked.Load())
	}
}

// FuzzParseTopology: no reply a node sends makes the parsers panic or
// name a slot out of range.
func FuzzParseTopology(f *testing.F) {
	for _, name := range []string{"shards-7.0.resp", "slots-7.0.resp"} {
		b, _ := os.ReadFile("testdata/" + name)
		f.Add(b)
	}
	f.Add([]byte("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:99999\r\n$5\r\nnodes\r\n*0\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _ := respconn.Decode(b)
		for _, parse := range []func(any, string) (Map, error){parseShards, parseSlots} {
			m, _ := parse(v, "127.0.0.1")
			if len(m.Replicas) != len(m.Nodes) {
				t.Fatalf("%d replica lists for %d nodes", len(m.Replicas), len(m.Nodes))
			}
			for _, r := range m.Ranges {
				if r.Start < 0 || r.End < r.Start || r.End >= 16384 || r.Node < 0 || r.Node >= len(m.Nodes) {
					t.Fatalf("bad range %+v", r)
				}
			}
		}
	})
}

// A replica the last map had, which the node asked now reports loading
// (it has not had the replica's gossip), stays; a new one does not join.
func TestKeepReplicasSeenBefore(t *testing.T) {
	tg := &target{replicaOf: map[string]string{"r1": "m1"}}
	m := Map{Nodes: []string{"m1", "m2"}, Replicas: [][]string{nil, nil},
		loading: map[string][]string{"m1": {"r1"}, "m2": {"r2"}}}
	tg.keepReplicas(&m)
	if !slices.Equal(m.Replicas[0], []string{"r1"}) || len(m.Replicas[1]) != 0 {
		t.Fatalf("%v", m.Replicas)
	}
	// Under another master (a failover), it is not kept.
	tg.replicaOf = map[string]string{"r1": "m2"}
	m = Map{Nodes: []string{"m1"}, Replicas: [][]string{nil}, loading: map[string][]string{"m1": {"r1"}}}
	tg.keepReplicas(&m)
	if len(m.Replicas[0]) != 0 {
		t.Fatalf("%v", m.Replicas)
	}
}
