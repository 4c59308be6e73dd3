package sentinel

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Sentinels that cannot agree or know less than the others:
//
//  1. two of three sentinels down (no quorum, no failover possible): the
//     proxy keeps the current master, switches nothing, fails nothing;
//  2. one of them back, a failover with two of three, the third sentinel
//     restarted from its config file as it was before the failover
//     (config-epoch 0, the old master): it is outvoted while the others
//     answer, and alone (the other two killed) it still cannot flip the
//     proxy back, since its epoch is older than the one the proxy follows;
//  3. no sentinel at all: the proxy keeps serving the master it knows.
func TestSentinelQuorumAndStaleSentinel(t *testing.T) {
	r := startRig(t, "shard-a")
	addr, px := r.proxy(t, "")
	stop := make(chan struct{})
	wait := load(addr, 8, stop)
	time.Sleep(500 * time.Millisecond)
	sh := r.shards[0]
	first := r.masterOf(t, sh.name)

	// 1. No quorum.
	r.sentinels[1].Kill()
	r.sentinels[2].Kill()
	stale, err := os.ReadFile(r.sentConfs[2])
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	noQuorumMoves := strings.Count(px.Output(), "server master known") + strings.Count(px.Output(), "server master moved")

	// 2. A failover by two of three, then the stale third one.
	r.restartSentinel(t, 1, r.sentConfs[1])
	time.Sleep(time.Second) // sentinel 1 meets sentinel 0 (hello every 2 s; known-sentinel in its file)
	second := r.failover(t, sh)
	time.Sleep(1500 * time.Millisecond)
	staleFile := r.sentConfs[2] + ".stale"
	if err := os.WriteFile(staleFile, stale, 0o644); err != nil {
		t.Fatal(err)
	}
	r.restartSentinel(t, 2, staleFile)
	view, epoch := r.sentinelView(2, sh.name)
	r.sentinels[0].Kill()
	r.sentinels[1].Kill()
	t.Logf("restarted sentinel's view right after its start: %s, config-epoch %s (the others: %s)", view, epoch, second)
	if view != first || epoch != "0" {
		t.Logf("the restarted sentinel was not stale any more (it heard the others first)")
	}
	time.Sleep(4 * time.Second)
	staleView, _ := r.sentinelView(2, sh.name)

	// 3. No sentinel.
	r.sentinels[2].Kill()
	time.Sleep(2 * time.Second)
	close(stop)
	results := wait()
	shardOf := func(string) string { return "shard-a" }
	rep := summarize(results, shardOf)
	acked, lost := lostOn(t, sh.nodeAt(second), results, shardOf, "shard-a")
	t.Logf("%s -> %s; the lone stale sentinel said %s at the end; %d ok, %d failed %v; %d acknowledged writes, %d lost",
		first, second, staleView, rep["shard-a"].ok, rep["shard-a"].failed, rep["shard-a"].errs, acked, lost)
	if noQuorumMoves != 2 {
		t.Errorf("%d switches logged by the end of the no-quorum phase, want the 2 initial ones", noQuorumMoves)
	}
	out := px.Output()
	// Each worker: its first address ("known"), then the failover
	// ("moved"); a flip back would be a second move.
	if n := strings.Count(out, "server master moved"); n != 2 {
		t.Errorf("%d switches logged by the workers, want 1 each (the failover): a flip back?", n)
	}
	known, back := 0, 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "server master known") && strings.Contains(line, "address=\""+first+"\"") {
			known++
		}
		if strings.Contains(line, "server master moved") && strings.Contains(line, "to=\""+first+"\"") {
			back++
		}
	}
	if known != 2 || back != 0 {
		t.Errorf("%d workers started on %s (want 2), %d moved back to it (want 0)", known, first, back)
	}
	if rep["shard-a"].failed > 0 {
		t.Errorf("errors: %v", rep["shard-a"].errs)
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, acked)
	}
	if staleView == first && !strings.Contains(out, "older view") {
		t.Errorf("the stale sentinel's answer was not logged as ignored:\n%s", out)
	}
	if !strings.Contains(out, "no sentinel reachable") {
		t.Errorf("no sentinel down logged")
	}
}

// A sentinel ACL user without channel rights: SUBSCRIBE is refused
// (NOPERM), the log says so once per sentinel, and the refresh alone
// follows a kill -9 of the master.
func TestSentinelACLWithoutChannels(t *testing.T) {
	r := startRigConf(t, "", "user watcher on >w4tch +@all resetchannels\n", "shard-a")
	addr, px := r.proxyWith(t, `    username = "watcher"
    password = "w4tch"`)
	stop := make(chan struct{})
	wait := load(addr, 8, stop)
	time.Sleep(time.Second)
	sh := r.shards[0]
	r.waitInSync(t, sh)
	old := sh.nodeAt(r.masterOf(t, sh.name))
	killed := time.Now()
	old.proc.Kill()
	switched := r.waitSwitch(t, sh.name, old.addr())
	time.Sleep(2 * time.Second)
	close(stop)
	results := wait()
	shardOf := func(string) string { return "shard-a" }
	rep := summarize(results, shardOf)["shard-a"]
	acked, lost := lostWrites(t, r, results, shardOf, "shard-a")
	out := px.Output()
	t.Logf("polling only: switch after %v; %d ok, %d failed %v; %d acknowledged writes, %d lost",
		switched.Sub(killed).Round(time.Millisecond), rep.ok, rep.failed, rep.errs, acked, lost)
	if n := strings.Count(out, "sentinel refuses the event subscription"); n != 3 {
		t.Errorf("the refusal logged %d times, want once per sentinel (3)", n)
	}
	for e, n := range rep.errs {
		if !strings.Contains(e, outcomeUnknown) {
			t.Errorf("%d × %s", n, e)
		}
	}
	if rep.failed > 0 && rep.last.Sub(killed) > 4*time.Second {
		t.Errorf("errors until %v after the kill", rep.last.Sub(killed))
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, acked)
	}
	if strings.Contains(out, "w4tch") {
		t.Errorf("the password is in the log")
	}
}
