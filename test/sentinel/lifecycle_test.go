package sentinel

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// Reloads and binary upgrades during a failover: the workers they start
// must route to the current master, from the master process's addresses
// (reload) or from the new master's own resolution (upgrade).

// waitSwitch waits until the sentinels name a master of name other than old.
func (r *rig) waitSwitch(t *testing.T, name, old string) time.Time {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for r.masterOf(t, name) == old {
		if time.Now().After(deadline) {
			t.Fatalf("the sentinels did not fail %s over in 15 s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Now()
}

// waitGeneration waits until every worker of master is new (none in before).
func waitGeneration(t *testing.T, master int, before []int) []int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := harness.Children(master)
		fresh := 0
		for _, p := range now {
			if !slices.Contains(before, p) {
				fresh++
			}
		}
		if fresh == 2 && len(now) == 2 {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v, before %v: no new generation in 15 s", now, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outcomeUnknown is the error of a write in flight when its master died:
// what the failover alone gives (TestSentinelKillMaster).
const outcomeUnknown = "lost the connection after the write was sent"

// checkFailover asserts what a kill -9 of shard-a's master allows: on
// shard-a only unknown-outcome errors, within 3 s of the kill; nothing on
// shard-b; no acknowledged write lost on either.
//
// An EOF is a client connection a draining worker closed as the client
// sent its next request (a reload's, not the failover's: go-redis with
// retries resends it); those are counted apart.
func checkFailover(t *testing.T, r *rig, results []result, killed time.Time, what string) {
	t.Helper()
	shardOf := placer(t, "shard-a", "shard-b")
	var kept []result
	eofs := 0
	for _, res := range results {
		if res.err != nil && res.err.Error() == "EOF" {
			eofs++
			continue
		}
		kept = append(kept, res)
	}
	rep := summarize(kept, shardOf)
	a, b := rep["shard-a"], rep["shard-b"]
	ackedA, lostA := lostWrites(t, r, results, shardOf, "shard-a")
	_, lostB := lostWrites(t, r, results, shardOf, "shard-b")
	window := time.Duration(0)
	if a.failed > 0 {
		window = a.last.Sub(a.first)
	}
	t.Logf("%s: shard-a %d ok, %d failed %v (window %v); shard-b %d ok, %d failed; %d acknowledged writes on shard-a, %d lost; %d EOF from draining workers",
		what, a.ok, a.failed, a.errs, window.Round(time.Millisecond), b.ok, b.failed, ackedA, lostA, eofs)
	for e, n := range a.errs {
		if !strings.Contains(e, outcomeUnknown) {
			t.Errorf("shard-a: %d × %s", n, e)
		}
	}
	if a.failed > 0 && a.last.Sub(killed) > 3*time.Second {
		t.Errorf("shard-a failed until %v after the kill (down-after + 2 s = 3 s)", a.last.Sub(killed))
	}
	if b.failed > 0 {
		t.Errorf("shard-b saw %d errors: %v", b.failed, b.errs)
	}
	if lostA > 0 || lostB > 0 {
		t.Errorf("acknowledged writes lost: shard-a %d of %d, shard-b %d", lostA, ackedA, lostB)
	}
}

// A reload right after shard-a's master is killed, and another once the
// sentinels switched: each new generation's workers start with the master
// process's addresses (MsgInit), then follow the switch.
func TestSentinelReloadDuringFailover(t *testing.T) {
	r := startRig(t, "shard-a", "shard-b")
	addr, px := r.proxy(t, "")
	master := px.Cmd.Process.Pid
	stop := make(chan struct{})
	wait := load(addr, 16, stop)
	time.Sleep(time.Second)
	r.waitInSync(t, r.shards[0])
	old := r.shards[0].nodeAt(r.masterOf(t, "shard-a"))
	before := harness.Children(master)
	killed := time.Now()
	old.proc.Kill()
	px.Signal(syscall.SIGHUP)
	gen2 := waitGeneration(t, master, before)
	switched := r.waitSwitch(t, "shard-a", old.addr())
	time.Sleep(1500 * time.Millisecond)
	newMaster := r.masterOf(t, "shard-a")
	mark := len(px.Output())
	px.Signal(syscall.SIGHUP)
	gen3 := waitGeneration(t, master, gen2)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	results := wait()
	t.Logf("kill, reload: generation 2 %v; switch after %v; then reload to %v",
		gen2, switched.Sub(killed).Round(time.Millisecond), gen3)
	checkFailover(t, r, results, killed, "reload during the failover")
	dumpOnFailure(t, px)
	// The third generation started after the switch: its first address
	// for shard-a is the new master (from the master's MsgInit), never
	// the dead one.
	tail := px.Output()[mark:]
	moved := 0
	for _, line := range strings.Split(tail, "\n") {
		// A new worker's first address is "known", not "moved".
		if strings.Contains(line, "server master known") && strings.Contains(line, "server=shard-a") &&
			strings.Contains(line, "generation=3") {
			moved++
			if !strings.Contains(line, "address=\""+newMaster+"\"") {
				t.Errorf("a worker of the last generation did not start with the current master %s: %s", newMaster, line)
			}
		}
	}
	if moved != 2 {
		t.Errorf("%d workers of the last generation took shard-a's address, want 2:\n%s", moved, tail)
	}
	if strings.Contains(tail, "to="+old.addr()) || strings.Contains(tail, "address=\""+old.addr()+"\"") {
		t.Errorf("a worker started after the switch was given the dead master:\n%s", tail)
	}
}

// A binary upgrade (SIGUSR2) right after shard-a's master is killed: the
// new master knows no address until its own watcher resolves one from the
// sentinels; its workers' requests wait meanwhile.
func TestSentinelUpgradeDuringFailover(t *testing.T) {
	// Orphaned masters are re-parented to this test, as to PID 1.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	r := startRig(t, "shard-a", "shard-b")
	pidFile := filepath.Join(t.TempDir(), "nuthatch.pid")
	addr, px := r.proxyConf(t, fmt.Sprintf("pid_file = %q", pidFile), "", "")
	oldPid := px.Cmd.Process.Pid
	stop := make(chan struct{})
	wait := load(addr, 16, stop)
	time.Sleep(time.Second)
	r.waitInSync(t, r.shards[0])
	old := r.shards[0].nodeAt(r.masterOf(t, "shard-a"))
	killed := time.Now()
	old.proc.Kill()
	px.Signal(syscall.SIGUSR2)
	newPid := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(pidFile)
		if p, _ := strconv.Atoi(strings.TrimSpace(string(b))); p != 0 && p != oldPid {
			newPid = p
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new master in the pid file after 20 s:\n%s", px.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { syscall.Kill(newPid, syscall.SIGTERM) })
	handedOver := time.Since(killed)
	switched := r.waitSwitch(t, "shard-a", old.addr())
	for syscall.Kill(oldPid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the old master did not exit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	results := wait()
	t.Logf("kill, upgrade: new master %d serving %v after the kill; switch after %v",
		newPid, handedOver.Round(time.Millisecond), switched.Sub(killed).Round(time.Millisecond))
	checkFailover(t, r, results, killed, "upgrade during the failover")
	dumpOnFailure(t, px)
	if !strings.Contains(px.Output(), "binary upgrade complete") {
		t.Errorf("no upgrade in the log:\n%s", px.Output())
	}
}

// dumpOnFailure writes the proxy's log to $NUTHATCH_TEST_LOGS/<test>.log
// when the test failed.
func dumpOnFailure(t *testing.T, px *harness.Proc) {
	if dir := os.Getenv("NUTHATCH_TEST_LOGS"); dir != "" && t.Failed() {
		os.WriteFile(filepath.Join(dir, t.Name()+".log"), []byte(px.Output()), 0o644)
	}
}
