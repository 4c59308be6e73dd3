package hashkit

import (
	"crypto/md5"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
)

func TestPointName(t *testing.T) {
	for _, tc := range []struct {
		label string
		named bool
		want  string
	}{
		{"alpha", true, "alpha"},
		{"127.0.0.1:11211", true, "127.0.0.1:11211"},
		{"127.0.0.1:11211", false, "127.0.0.1"},
		{"127.0.0.1:6379", false, "127.0.0.1:6379"},
		{"cache1.example.com:11211", false, "cache1.example.com"},
		{"cache1.example.com:11212", false, "cache1.example.com:11212"},
		{"127.0.0.1:011211", false, "127.0.0.1"}, // nc_atoi reads the number
		{"[::1]:11211", false, "[::1]"},
		{"[::1]:6379", false, "[::1]:6379"},
		{"/var/run/redis.sock", false, "/var/run/redis.sock:"},
		{"/var/run/redis.sock", true, "/var/run/redis.sock"},
		{"noport", false, "noport"},
	} {
		if got := PointName(tc.label, tc.named); got != tc.want {
			t.Errorf("PointName(%q, %v) = %q, want %q", tc.label, tc.named, got, tc.want)
		}
	}
}

func TestDistributionNames(t *testing.T) {
	if got := DistributionNames(); !slices.Equal(got, []string{"ketama", "modula", "random"}) {
		t.Fatalf("DistributionNames() = %v", got)
	}
}

func TestBuildErrors(t *testing.T) {
	ok := []Node{{"a", 1}, {"b", 1}}
	for _, tc := range []struct {
		name  string
		dist  string
		nodes []Node
		live  []bool
		want  error
	}{
		{"unknown distribution", "consistent", ok, nil, ErrUnknownDistribution},
		{"case matters", "Ketama", ok, nil, ErrUnknownDistribution},
		{"no nodes", "ketama", nil, nil, ErrInvalidNodes},
		{"zero weight", "modula", []Node{{"a", 0}}, nil, ErrInvalidNodes},
		{"negative weight", "ketama", []Node{{"a", -1}}, nil, ErrInvalidNodes},
		{"live length", "ketama", ok, []bool{true}, ErrInvalidNodes},
		{"huge modula", "modula", []Node{{"a", 1<<20 + 1}}, nil, ErrInvalidNodes},
		{"weight overflow", "ketama", []Node{{"a", math.MaxInt32}, {"b", math.MaxInt32}, {"c", 3}}, nil, ErrInvalidNodes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Build(tc.dist, tc.nodes, tc.live)
			if !errors.Is(err, tc.want) || r != nil {
				t.Fatalf("Build = %v, %v; want %v", r, err, tc.want)
			}
		})
	}
}

func TestKetamaShare(t *testing.T) {
	for _, tc := range []struct {
		weight, total, nlive, want uint32
	}{
		{1, 4, 4, 160},
		{1, 3, 3, 160},
		{1, 25, 5, 28},  // exactly 8 hashes in rationals, 7.99... in float32
		{7, 12, 9, 836}, // 209.99... in float32, not 210
		{1, 12, 5, 64},  // 1/12*40*5 = 16.67 -> 16*4
		{3, 12, 5, 200}, // 50 hashes
		{5, 12, 5, 332}, // 83.33 -> 83*4
		{1, 1, 1, 160},
		{1, 1000, 2, 0}, // a tiny weight can get no point at all
	} {
		if got := ketamaShare(tc.weight, tc.total, tc.nlive); got != tc.want {
			t.Errorf("ketamaShare(%d, %d, %d) = %d, want %d", tc.weight, tc.total, tc.nlive, got, tc.want)
		}
	}
}

// refKetama is a deliberately naive model of ketama_update and
// ketama_dispatch: list every point, and pick by linear scan.
type refPoint struct {
	value uint32
	node  int
	order int
}

func refKetama(nodes []Node, live []bool) []refPoint {
	var nlive, total uint32
	for i, n := range nodes {
		if live == nil || live[i] {
			nlive++
			total += uint32(n.Weight)
		}
	}
	// twemproxy inserts points in server-name order: shorter first.
	sorted := make([]int, len(nodes))
	for i := range sorted {
		sorted[i] = i
	}
	sort.SliceStable(sorted, func(a, b int) bool {
		na, nb := nodes[sorted[a]].Name, nodes[sorted[b]].Name
		return len(na) < len(nb) || len(na) == len(nb) && na < nb
	})
	var pts []refPoint
	for _, i := range sorted {
		n := nodes[i]
		if live != nil && !live[i] {
			continue
		}
		share := ketamaShare(uint32(n.Weight), total, nlive)
		for h := 0; h < int(share)/4; h++ {
			s := n.Name + "-" + strconv.Itoa(h)
			if len(s) > 272 {
				s = s[:272]
			}
			d := md5.Sum([]byte(s))
			for x := 0; x < 4; x++ {
				pts = append(pts, refPoint{binary.LittleEndian.Uint32(d[4*x:]), i, len(pts)})
			}
		}
	}
	return pts
}

func refPick(pts []refPoint, h uint32) int {
	best := -1
	for j, p := range pts {
		if p.value >= h && (best < 0 || p.value < pts[best].value) {
			best = j
		}
	}
	if best < 0 { // wrap: smallest value overall, first inserted on ties
		for j, p := range pts {
			if best < 0 || p.value < pts[best].value {
				best = j
			}
		}
	}
	return pts[best].node
}

func TestKetamaAgainstReference(t *testing.T) {
	longName := ""
	for len(longName) < 300 {
		longName += "very-long-host-name."
	}
	cases := []struct {
		name  string
		nodes []Node
		live  []bool
	}{
		{"equal", []Node{{"10.0.0.1:6379", 1}, {"10.0.0.2:6379", 1}, {"10.0.0.3:6379", 1}}, nil},
		{"weights", []Node{{"127.0.0.1:6379", 1}, {"alpha", 3}, {"127.0.0.2", 2}, {"127.0.0.1:6381", 5}}, nil},
		{"ejected", []Node{{"127.0.0.1:6379", 1}, {"alpha", 3}, {"127.0.0.2", 2}, {"127.0.0.1:6381", 5}}, []bool{true, false, true, true}},
		{"single", []Node{{"only", 7}}, nil},
		{"truncated names", []Node{{longName + "a", 1}, {longName + "b", 1}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Build(Ketama, tc.nodes, tc.live)
			if err != nil {
				t.Fatal(err)
			}
			pts := refKetama(tc.nodes, tc.live)
			if r.Len() != len(pts) {
				t.Fatalf("Len() = %d, want %d", r.Len(), len(pts))
			}
			probes := []uint32{0, 1, math.MaxUint32, math.MaxUint32 - 1}
			for _, p := range pts {
				probes = append(probes, p.value-1, p.value, p.value+1)
			}
			x := uint32(2463534242)
			for range 2000 {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				probes = append(probes, x)
			}
			for _, h := range probes {
				if got, want := r.Pick(h), refPick(pts, h); got != want {
					t.Fatalf("Pick(%d) = %d, want %d", h, got, want)
				}
			}
		})
	}
	// Names longer than the C buffer collide after truncation, so both
	// servers get identical points; the server whose name sorts first
	// (the shorter one here, listed second) must win every tie.
	r, _ := Build(Ketama, []Node{{longName + "bb", 1}, {longName + "a", 1}}, nil)
	for h := uint32(0); h < math.MaxUint32-1<<24; h += 1 << 24 {
		if got := r.Pick(h); got != 1 {
			t.Fatalf("tie at %d went to server %d, want 1", h, got)
		}
	}
}

// TestServerOrder pins twemproxy's conf_validate_server sort: the pool's
// servers are ordered by name (length first) before the continuum is
// built, which decides modula's slot order.
func TestServerOrder(t *testing.T) {
	nodes := []Node{{"127.0.0.1:7101", 1}, {"alpha", 3}, {"127.0.0.1:7100", 2}, {"zed", 1}}
	r, err := Build(Modula, nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Sorted: zed(3) alpha(5) 127.0.0.1:7100 127.0.0.1:7101.
	want := []int{3, 1, 1, 1, 2, 2, 0}
	for h := range uint32(len(want)) {
		if got := r.Pick(h); got != want[h] {
			t.Errorf("Pick(%d) = %d, want %d", h, got, want[h])
		}
	}
	for _, dup := range [][]Node{
		{{"a", 1}, {"b", 1}, {"a", 2}},
		{{"x\x00y", 1}, {"x\x00z", 1}}, // strncmp stops at the NUL
	} {
		if _, err := Build(Ketama, dup, nil); !errors.Is(err, ErrInvalidNodes) {
			t.Errorf("Build(%v) error = %v, want ErrInvalidNodes", dup, err)
		}
	}
}

func FuzzKetama(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), uint8(7), uint32(0))
	f.Add(uint8(1), uint8(3), uint8(200), uint8(5), uint32(math.MaxUint32))
	f.Fuzz(func(t *testing.T, w0, w1, w2, mask uint8, h uint32) {
		nodes := []Node{{"10.0.0.1:6379", int(w0) + 1}, {"b", int(w1) + 1}, {"10.0.0.2", int(w2) + 1}}
		live := []bool{mask&1 != 0, mask&2 != 0, mask&4 != 0}
		r, err := Build(Ketama, nodes, live)
		if err != nil {
			t.Fatal(err)
		}
		pts := refKetama(nodes, live)
		if len(pts) == 0 {
			if got := r.Pick(h); got != -1 {
				t.Fatalf("Pick = %d with no live server", got)
			}
			return
		}
		if got, want := r.Pick(h), refPick(pts, h); got != want {
			t.Fatalf("Pick(%d) = %d, want %d", h, got, want)
		}
	})
}

func TestKetamaEvenSpread(t *testing.T) {
	nodes := []Node{{"a:1", 1}, {"b:1", 1}, {"c:1", 1}, {"d:1", 1}}
	r, err := Build(Ketama, nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 4*160 {
		t.Fatalf("Len() = %d, want 640", r.Len())
	}
	if !sort.SliceIsSorted(r.values, func(i, j int) bool { return r.values[i] < r.values[j] }) {
		t.Fatal("continuum not sorted")
	}
}

func TestModula(t *testing.T) {
	nodes := []Node{{"a", 1}, {"b", 3}, {"c", 2}}
	for _, tc := range []struct {
		name  string
		live  []bool
		slots []int
	}{
		{"all live", nil, []int{0, 1, 1, 1, 2, 2}},
		{"b ejected", []bool{true, false, true}, []int{0, 2, 2}},
		{"a ejected", []bool{false, true, true}, []int{1, 1, 1, 2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Build(Modula, nodes, tc.live)
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != len(tc.slots) {
				t.Fatalf("Len() = %d, want %d", r.Len(), len(tc.slots))
			}
			for _, h := range []uint32{0, 1, 2, 3, 4, 5, 6, 7, 1000, math.MaxUint32} {
				if got, want := r.Pick(h), tc.slots[h%uint32(len(tc.slots))]; got != want {
					t.Errorf("Pick(%d) = %d, want %d", h, got, want)
				}
			}
		})
	}
}

func TestRandom(t *testing.T) {
	nodes := []Node{{"a", 1}, {"b", 100}, {"c", 1}, {"d", 1}}
	r, err := Build(Random, nodes, []bool{true, true, false, true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 3 {
		t.Fatalf("Len() = %d, want 3 (one slot per live server, weight ignored)", r.Len())
	}
	var seen [4]int
	const n = 30000
	for range n {
		seen[r.Pick(42)]++
	}
	if seen[2] != 0 {
		t.Fatalf("ejected server picked %d times", seen[2])
	}
	for _, i := range []int{0, 1, 3} {
		if seen[i] < n/3*8/10 || seen[i] > n/3*12/10 {
			t.Errorf("server %d picked %d of %d times, want about a third", i, seen[i], n)
		}
	}
}

func TestNoLiveServer(t *testing.T) {
	nodes := []Node{{"a", 1}, {"b", 1}}
	for _, dist := range DistributionNames() {
		r, err := Build(dist, nodes, []bool{false, false})
		if err != nil {
			t.Fatal(err)
		}
		if r.Len() != 0 || r.Pick(123) != -1 {
			t.Errorf("%s: Len() = %d, Pick = %d; want 0, -1", dist, r.Len(), r.Pick(123))
		}
	}
}

func TestEjectionMovesOnlyEjectedKeys(t *testing.T) {
	nodes := []Node{{"127.0.0.1:6379", 1}, {"alpha", 1}, {"127.0.0.2", 1}, {"127.0.0.1:6381", 1}}
	all, _ := Build(Ketama, nodes, nil)
	ej, _ := Build(Ketama, nodes, []bool{true, false, true, true})
	moved := 0
	for h := uint32(0); h < math.MaxUint32-1<<20; h += 1 << 20 {
		before, after := all.Pick(h), ej.Pick(h)
		if after == 1 {
			t.Fatalf("Pick(%d) chose the ejected server", h)
		}
		if before != 1 && before != after {
			// With equal weights every live server keeps its 160 points.
			t.Fatalf("Pick(%d) moved from live server %d to %d", h, before, after)
		}
		if before != after {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no key moved off the ejected server")
	}
}

func TestPickConcurrent(t *testing.T) {
	nodes := []Node{{"a", 1}, {"b", 2}, {"c", 3}}
	for _, dist := range DistributionNames() {
		r, _ := Build(dist, nodes, nil)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5000 {
					if p := r.Pick(uint32(g*7919 + i*104729)); p < 0 || p > 2 {
						t.Errorf("%s: Pick = %d", dist, p)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}

func TestPickZeroAlloc(t *testing.T) {
	nodes := []Node{{"a", 1}, {"b", 2}, {"c", 3}}
	for _, dist := range DistributionNames() {
		r, _ := Build(dist, nodes, nil)
		h := uint32(0)
		if n := testing.AllocsPerRun(100, func() { h += 7777; r.Pick(h) }); n != 0 {
			t.Errorf("%s: Pick allocates %.1f times", dist, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	nodes := make([]Node, 16)
	for i := range nodes {
		nodes[i] = Node{"10.0.0." + strconv.Itoa(i+1) + ":6379", 1 + i%3}
	}
	for _, dist := range DistributionNames() {
		r, _ := Build(dist, nodes, nil)
		b.Run(dist, func(b *testing.B) {
			b.ReportAllocs()
			h, sink := uint32(1), 0
			for b.Loop() {
				h = h*1664525 + 1013904223
				sink += r.Pick(h)
			}
			_ = sink
		})
	}
}

func BenchmarkBuildKetama(b *testing.B) {
	nodes := make([]Node, 16)
	for i := range nodes {
		nodes[i] = Node{"10.0.0." + strconv.Itoa(i+1) + ":6379", 1}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(Ketama, nodes, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKetamaBuckets checks the bucketed lookup against a plain search of
// the whole continuum, on rings from one point per bucket to many.
func TestKetamaBuckets(t *testing.T) {
	for _, servers := range []int{1, 2, 3, 16, 200, 1000} {
		nodes := make([]Node, servers)
		for i := range nodes {
			nodes[i] = Node{"10.1." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) + ":6379", 1 + i%4}
		}
		r, err := Build("ketama", nodes, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := func(h uint32) int {
			i, _ := slices.BinarySearch(r.values, h)
			if i == len(r.values) {
				i = 0
			}
			return int(r.index[i])
		}
		h := uint32(12345)
		probes := []uint32{0, 1, ^uint32(0), ^uint32(0) - 1, r.values[0], r.values[len(r.values)-1], r.values[len(r.values)-1] + 1}
		for range 200000 {
			h = h*1664525 + 1013904223
			probes = append(probes, h)
		}
		for _, v := range r.values[:min(len(r.values), 5000)] {
			probes = append(probes, v, v-1, v+1)
		}
		for _, p := range probes {
			if got, w := r.Pick(p), want(p); got != w {
				t.Fatalf("%d servers: Pick(%d) = %d, want %d", servers, p, got, w)
			}
		}
	}
}
