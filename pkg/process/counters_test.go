package process

import (
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Two mappings of the segment, as two worker processes have: a limit of
// 5 admits 5 clients over both, a release admits one more, and retiring
// a worker's row takes exactly its share off the total.
func TestCounterSegmentSharedAcrossMappings(t *testing.T) {
	seg, err := newCounterSegment(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.close()
	pools := []string{"a", "b"}
	rows, ok := seg.reserve(pools, 2)
	if !ok || len(rows) != 2 || rows[0] == rows[1] || rows[0] < 1 {
		t.Fatalf("rows %v, %v", rows, ok)
	}
	var w [2]map[string]sharedCount
	for i := range w {
		if w[i], err = workerCounters(seg.f, seg.spec(pools, rows[i])); err != nil {
			t.Fatal(err)
		}
	}
	admitted := [2]int{}
	for i := range 20 {
		if w[i%2]["a"].Acquire(5) {
			admitted[i%2]++
		}
	}
	if admitted[0]+admitted[1] != 5 || seg.total("a") != 5 || seg.total("b") != 0 {
		t.Fatalf("admitted %v, total a %d b %d", admitted, seg.total("a"), seg.total("b"))
	}
	w[0]["a"].Release()
	if !w[1]["a"].Acquire(5) || w[0]["a"].Acquire(5) {
		t.Fatal("a release did not admit exactly one more")
	}
	admitted[0]--
	admitted[1]++
	// Worker 0 dies: its share goes, worker 1's stays.
	if n := seg.retire(rows[0]); n != int64(admitted[0]) {
		t.Fatalf("retired %d, worker 0 held %d", n, admitted[0])
	}
	if seg.total("a") != int64(admitted[1]) {
		t.Fatalf("total %d after retiring worker 0, worker 1 holds %d", seg.total("a"), admitted[1])
	}
	// Unlimited pools count too (a reload may set a limit).
	if !w[0]["b"].Acquire(0) || seg.total("b") != 1 {
		t.Fatal("limit 0 did not count")
	}
}

// Concurrent admissions never exceed the limit.
func TestCounterSegmentConcurrent(t *testing.T) {
	seg, err := newCounterSegment(1, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.close()
	rows, _ := seg.reserve([]string{"a"}, 4)
	var peak, held atomic.Int64
	var wg sync.WaitGroup
	for _, r := range rows {
		c, err := workerCounters(seg.f, seg.spec([]string{"a"}, r))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := 0
			for i := range 20000 {
				if i%3 != 2 && c["a"].Acquire(7) {
					mine++
					if n := held.Add(1); n > peak.Load() {
						peak.Store(n)
					}
				} else if mine > 0 {
					mine--
					held.Add(-1)
					c["a"].Release()
				}
			}
			for ; mine > 0; mine-- {
				held.Add(-1)
				c["a"].Release()
			}
		}()
	}
	wg.Wait()
	if seg.total("a") != 0 || peak.Load() > 7 {
		t.Fatalf("total %d at the end, peak %d over a limit of 7", seg.total("a"), peak.Load())
	}
}

// The master passes one segment to every worker with MsgInit, each with
// its own row; a worker killed holding clients has its share taken off
// before its slot is respawned; a reload's generation gets other rows of
// the same segment, so that it counts the clients the old one drains.
func TestMasterPassesClientCounters(t *testing.T) {
	r := startMaster(t, 2, "a", "b")
	w0, w1 := r.sp.wait(t), r.sp.wait(t)
	r.expectNote(t, "READY=1")
	expectMsg(t, w0, MsgInit)
	expectMsg(t, w1, MsgInit)
	if w0.counters == nil || w1.counters == nil || w0.init.Counters == nil {
		t.Fatal("no counters segment with MsgInit")
	}
	if len(w0.files) != 2 {
		t.Fatalf("%d listeners", len(w0.files))
	}
	s0, s1 := w0.init.Counters, w1.init.Counters
	if inode(t, w0.counters) != inode(t, w1.counters) || s0.Row == s1.Row || s0.Pools["a"] != s1.Pools["a"] || s0.Pools["a"] == s0.Pools["b"] {
		t.Fatalf("specs %+v %+v", s0, s1)
	}
	c0, err := workerCounters(w0.counters, s0)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := workerCounters(w1.counters, s1)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c0["a"].Acquire(5)
	}
	c1["a"].Acquire(5)
	if n := *c1["a"].total; n != 4 {
		t.Fatalf("total %d, want 4", n)
	}
	w0.die(ExitStatus{Signal: syscall.SIGKILL})
	nw := r.sp.wait(t)
	expectMsg(t, nw, MsgInit)
	if nw.init.Counters == nil || nw.init.Counters.Row != s0.Row {
		t.Fatalf("respawned worker's counters %+v, want row %d", nw.init.Counters, s0.Row)
	}
	if n := atomic.LoadInt64(c1["a"].total); n != 1 {
		t.Fatalf("total %d after the worker holding 3 was killed, want 1", n)
	}
	// Reload with a pool more: same segment, other rows, same columns.
	// The old worker with a client drains until the check below.
	w1.holdDrain.Store(true)
	writeConfig(t, r.path, 2, "a", "b", "c")
	r.sigs <- syscall.SIGHUP
	n1, n2 := r.sp.wait(t), r.sp.wait(t)
	expectMsg(t, n1, MsgInit)
	expectMsg(t, n2, MsgInit)
	r.expectNote(t, "READY=1")
	for _, n := range []*fakeWorker{n1, n2} {
		s := n.init.Counters
		if s == nil || inode(t, n.counters) != inode(t, w1.counters) {
			t.Fatal("new generation without the segment")
		}
		if s.Row == s0.Row || s.Row == s1.Row || s.Pools["a"] != s0.Pools["a"] || len(s.Pools) != 3 {
			t.Fatalf("new generation's spec %+v (old rows %d, %d)", s, s0.Row, s1.Row)
		}
	}
	cn, err := workerCounters(n1.counters, n1.init.Counters)
	if err != nil {
		t.Fatal(err)
	}
	// The old worker's client still counts: 4 more fit a limit of 5.
	got := 0
	for range 10 {
		if cn["a"].Acquire(5) {
			got++
		}
	}
	if got != 4 {
		t.Fatalf("new generation admitted %d beside the old one's 1 client, want 4", got)
	}
	close(w1.release)
	deadline := time.Now().Add(5 * time.Second)
	for atomic.LoadInt64(cn["a"].total) != 4 && time.Now().Before(deadline) {
		// The old workers drain (the fakes exit at once): the one with a
		// client is reaped and its share taken off.
		time.Sleep(10 * time.Millisecond)
	}
	if n := atomic.LoadInt64(cn["a"].total); n != 4 {
		t.Fatalf("total %d after the old generation exited, want 4", n)
	}
}
