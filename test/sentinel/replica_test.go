package sentinel

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// readLoad runs n clients through addr, each alternating a GET of one of
// keys (written before, in sync on the replica) and a SET of a key of its
// own, until stop.
func readLoad(addr string, n int, keys []string, stop <-chan struct{}) func() (reads, writes int, errs map[string]int) {
	var mu sync.Mutex
	errs := map[string]int{}
	reads, writes := 0, 0
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 10 * time.Second})
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[(w*7919+i)%len(keys)]
				v, err := c.Get(ctx, k).Result()
				if err == nil && v != k {
					err = fmt.Errorf("GET %s = %q", k, v)
				}
				werr := c.Set(ctx, fmt.Sprintf("rw%d:%d", w, i), "x", 0).Err()
				mu.Lock()
				reads++
				writes++
				for _, e := range []error{err, werr} {
					if e != nil {
						errs[e.Error()]++
					}
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return func() (int, int, map[string]int) {
		wg.Wait()
		return reads, writes, errs
	}
}

// read_from = "replica_preferred": reads land on the replica (its GET
// count grows, the master's stays flat), writes on the master; the
// replica killed, reads fall back to the master without an error. A
// second proxy with read_from = "replica" serves reads from the replica
// and, once it is gone, refuses them with the documented error.
func TestSentinelReplicaReads(t *testing.T) {
	r := startRig(t, "shard-a")
	addr, px := r.proxyWith(t, `    read_from = "replica_preferred"`)
	addr2, px2 := r.proxyWith(t, `    read_from = "replica"`)
	sh := r.shards[0]
	master, repl := sh.nodes[0], sh.nodes[1]
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	var keys []string
	for i := range 200 {
		k := fmt.Sprintf("rk:%d", i)
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	r.waitInSync(t, sh)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(px.Output(), "replica used for reads") || !strings.Contains(px2.Output(), "replica used for reads") {
		if time.Now().After(deadline) {
			t.Fatalf("the proxies do not use the replica:\n%s", px.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c2 := redis.NewClient(&redis.Options{Addr: addr2, MaxRetries: -1})
	defer c2.Close()
	if v, err := c2.Get(ctx, keys[0]).Result(); err != nil || v != keys[0] {
		t.Fatalf("GET through the read_from = replica proxy: %q %v", v, err)
	}

	mGet, mSet, rGet := cmdCalls(t, master, "get"), cmdCalls(t, master, "set"), cmdCalls(t, repl, "get")
	stop := make(chan struct{})
	wait := readLoad(addr, 8, keys, stop)
	time.Sleep(2 * time.Second)
	mGet2, mSet2, rGet2 := cmdCalls(t, master, "get"), cmdCalls(t, master, "set"), cmdCalls(t, repl, "get")
	t.Logf("2 s of reads and writes: the master ran %d GET and %d SET, the replica %d GET",
		mGet2-mGet, mSet2-mSet, rGet2-rGet)
	if mGet2 != mGet {
		t.Errorf("the master ran %d GETs", mGet2-mGet)
	}
	if rGet2-rGet < 100 || mSet2-mSet < 100 {
		t.Errorf("the replica ran %d GETs, the master %d SETs", rGet2-rGet, mSet2-mSet)
	}

	killed := time.Now()
	repl.proc.Kill()
	time.Sleep(3 * time.Second)
	mGet3 := cmdCalls(t, master, "get")
	close(stop)
	reads, writes, errs := wait()
	t.Logf("replica killed: the master ran %d GETs in the next 3 s; %d reads and %d writes in all, errors %v",
		mGet3-mGet2, reads, writes, errs)
	if len(errs) > 0 {
		t.Errorf("errors with replica_preferred: %v", errs)
	}
	if mGet3-mGet2 < 100 {
		t.Errorf("reads did not fall back to the master: %d GETs", mGet3-mGet2)
	}
	// read_from = "replica": no usable replica, no read.
	err := c2.Get(ctx, keys[0]).Err()
	if err == nil || err.Error() != "ERR nuthatch: server 'shard-a' has no usable replica" {
		t.Errorf("GET with read_from = replica and the replica dead %v after its kill: %v", time.Since(killed), err)
	}
	if err := c2.Set(ctx, "w", "v", 0).Err(); err != nil {
		t.Errorf("SET with read_from = replica: %v", err)
	}
}
