package cluster

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

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
	// Kill a worker once slots are moving to the node.
	for start := time.Now(); myself() == before; {
		if time.Since(start) > 10*time.Second {
			t.Fatal("no slot moved in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	workers := harness.Children(px.Cmd.Process.Pid)
	if len(workers) != 2 {
		t.Fatalf("workers %v", workers)
	}
	select {
	case err := <-done:
		t.Fatalf("the reshard ended before the kill (%v); move more slots", err)
	default:
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
	respawn := time.Since(killedAt)
	if err := <-done; err != nil {
		t.Fatalf("reshard: %v\n%s", err, out[max(0, len(out)-2000):])
	}
	time.Sleep(time.Second)
	close(stop)
	results := wait()
	ok, failed, errs, acked, lost := r.check(t, results)
	replies := 0
	for _, res := range results {
		var re redis.Error
		if res.err != nil && errors.As(res.err, &re) {
			replies++
		}
	}
	t.Logf("%d slots moved; worker respawned in %v; %d ok, %d failed %v (%d error replies); %d acknowledged writes, %d lost",
		slots, respawn.Round(time.Millisecond), ok, failed, errs, replies, acked, lost)
	if failed > 0 {
		t.Errorf("errors during the reshard and the worker kill: %v", errs)
	}
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost", lost)
	}
}
