package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// reshardFigures are what reshardDuring measured.
type reshardFigures struct {
	ok, failed, replies, acked, lost int
	errs                             map[string]int
}

// reshardDuring moves slots to the third master with redis-cli --cluster
// reshard while 16 clients run through addr, and calls event once slots
// are moving (the reshard still running). It waits for the reshard, then
// sums the load: errors, error replies (from the proxy, not a closed
// connection), acknowledged writes missing from the cluster.
func (r *rig) reshardDuring(t *testing.T, addr string, slots int, event func()) reshardFigures {
	t.Helper()
	stop := make(chan struct{})
	wait := load(addr, 16, stop)
	time.Sleep(500 * time.Millisecond)
	c := r.nodes[2].client()
	toID, _ := c.Do(ctx, "CLUSTER", "MYID").Text()
	c.Close()
	myself := func() string {
		nc := r.nodes[2].client()
		defer nc.Close()
		nodes, _ := nc.ClusterNodes(ctx).Result()
		for _, l := range strings.Split(nodes, "\n") {
			if strings.Contains(l, "myself") {
				return l
			}
		}
		return ""
	}
	before := myself()
	done := make(chan error, 1)
	var out []byte
	go func() {
		var err error
		out, err = exec.Command("redis-cli", "--cluster", "reshard", r.nodes[0].addr(), "--cluster-from", "all",
			"--cluster-to", toID, "--cluster-slots", strconv.Itoa(slots), "--cluster-yes").CombinedOutput()
		done <- err
	}()
	for start := time.Now(); myself() == before; {
		if time.Since(start) > 10*time.Second {
			t.Fatal("no slot moved in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the reshard ended before the event (%v); move more slots", err)
	default:
	}
	event()
	select {
	case err := <-done:
		t.Errorf("the reshard ended before the event was over (%v): the event was not during the reshard", err)
		done <- err
	default:
	}
	if err := <-done; err != nil {
		t.Fatalf("reshard: %v\n%s", err, out[max(0, len(out)-2000):])
	}
	time.Sleep(time.Second)
	close(stop)
	results := wait()
	var f reshardFigures
	f.ok, f.failed, f.errs, f.acked, f.lost = r.check(t, results)
	for _, res := range results {
		var re redis.Error
		if res.err != nil && errors.As(res.err, &re) {
			f.replies++
		}
	}
	return f
}

// assert fails t on any error or lost write.
func (f reshardFigures) assert(t *testing.T, what string) {
	t.Helper()
	if f.failed > 0 {
		t.Errorf("errors during the reshard and the %s: %v", what, f.errs)
	}
	if f.lost > 0 {
		t.Errorf("%d acknowledged writes lost", f.lost)
	}
}

func (f reshardFigures) String() string {
	return fmt.Sprintf("%d ok, %d failed %v (%d error replies); %d acknowledged writes, %d lost",
		f.ok, f.failed, f.errs, f.replies, f.acked, f.lost)
}

// A worker killed with SIGKILL in the middle of a reshard under load: no
// error reply reaches a client, no acknowledged write is lost. The killed
// worker's clients lose their connections, as when any server process
// dies; go-redis reconnects (MaxRetries 3), to the other worker or the
// respawned one, which start from the master's current slot map and
// follow the MOVED/ASK of the slots still moving. 800 slots here, 2000
// with NUTHATCH_SOAK=1.
func TestClusterWorkerKillDuringReshard(t *testing.T) {
	slots := 800
	if os.Getenv("NUTHATCH_SOAK") != "" {
		slots = 2000
	}
	r := startCluster(t, 3, 0)
	addr, px := r.proxy(t)
	loadRetries = 3
	defer func() { loadRetries = -1 }()
	var respawn time.Duration
	f := r.reshardDuring(t, addr, slots, func() {
		workers := harness.Children(px.Cmd.Process.Pid)
		if len(workers) != 2 {
			t.Fatalf("workers %v", workers)
		}
		syscall.Kill(workers[0], syscall.SIGKILL)
		killedAt := time.Now()
		deadline := time.Now().Add(10 * time.Second)
		for {
			now := harness.Children(px.Cmd.Process.Pid)
			if len(now) == 2 && now[0] != workers[0] && now[1] != workers[0] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker not replaced: %v", now)
			}
			time.Sleep(10 * time.Millisecond)
		}
		respawn = time.Since(killedAt)
	})
	t.Logf("%d slots moved; worker respawned in %v; %v", slots, respawn.Round(time.Millisecond), f)
	f.assert(t, "worker kill")
}

// waitNewWorkers waits until master's workers are n and none of before.
func waitNewWorkers(t *testing.T, master func() int, before []int, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := harness.Children(master())
		fresh := 0
		for _, p := range now {
			old := false
			for _, b := range before {
				old = old || p == b
			}
			if !old {
				fresh++
			}
		}
		if fresh == n && len(now) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v not replaced (before %v)", now, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A reload (SIGHUP, as nuthatch -s reload sends) in the middle of a
// reshard of 2000 slots under load: the new workers start from the
// master's current map and the clients, handed over between two requests,
// never see an error, with no retries in the client at all.
func TestClusterReloadDuringReshard(t *testing.T) {
	r := startCluster(t, 3, 0)
	addr, px := r.proxy(t)
	var took time.Duration
	f := r.reshardDuring(t, addr, 2000, func() {
		master := func() int { return px.Cmd.Process.Pid }
		before := harness.Children(master())
		start := time.Now()
		if err := px.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitNewWorkers(t, master, before, 2)
		took = time.Since(start)
	})
	t.Logf("2000 slots moved; reload served by new workers after %v; %v", took.Round(time.Millisecond), f)
	f.assert(t, "reload")
	checkHandedOver(t, px.Output())
}

// checkHandedOver fails t unless the log says clients were handed over to
// new workers (the event really moved the clients), and logs those lines.
func checkHandedOver(t *testing.T, log string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "handed over to the new workers") || strings.Contains(l, "first cluster slot map") {
			if i := strings.Index(l, "msg="); i >= 0 {
				l = l[i:]
			}
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Errorf("no client was handed over to the new workers:\n%s", tail(log))
	}
	t.Logf("%s", strings.Join(lines, "\n"))
}

// A binary upgrade (SIGUSR2, as nuthatch -s upgrade sends) in the middle
// of a reshard of 2000 slots under load: the new master reads the slot
// map itself; its workers hold the handed-over clients' requests until it
// is there (awaitMap), then follow the MOVED/ASK of the slots still
// moving. No error, no retries in the client.
func TestClusterUpgradeDuringReshard(t *testing.T) {
	r := startCluster(t, 3, 0)
	pidFile := filepath.Join(t.TempDir(), "nuthatch.pid")
	r.top = fmt.Sprintf("pid_file = %q", pidFile)
	addr, px := r.proxy(t)
	master := func() int {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
				return pid
			}
		}
		return px.Cmd.Process.Pid
	}
	var took time.Duration
	f := r.reshardDuring(t, addr, 2000, func() {
		old := px.Cmd.Process.Pid
		before := harness.Children(old)
		start := time.Now()
		if err := px.Signal(syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		// The old master is reaped at once (px's Wait), but px's output
		// pipes stay open in the new master: Exited would wait for it.
		for syscall.Kill(old, 0) == nil || master() == old {
			if time.Now().After(deadline) {
				t.Fatalf("upgrade: old master %d still in charge:\n%s", old, tail(px.Output()))
			}
			time.Sleep(10 * time.Millisecond)
		}
		waitNewWorkers(t, master, before, 2)
		took = time.Since(start)
	})
	t.Logf("2000 slots moved; upgrade done (old master gone, new workers serving) after %v; %v", took.Round(time.Millisecond), f)
	f.assert(t, "binary upgrade")
	checkHandedOver(t, px.Output())
}

// tail is the end of a process's output, for a failure message.
func tail(s string) string { return s[max(0, len(s)-4000):] }
