package cluster

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
)

// A slot migrated by hand, as redis-cli --cluster reshard does it, and
// left half way: the source MIGRATING, the target IMPORTING, one of three
// keys moved. Through the pool a key still on the source is read there;
// the moved key and a new key are served by the target after an ASK
// (ASKING immediately before the request on the same link); a multi-key
// request over a present and a missing key (TRYAGAIN from the source) is
// retried until the slot's move ends. No MOVED, ASK or TRYAGAIN reaches
// the client, and the map keeps the source until the move ends.
func TestClusterMigratingSlotByHand(t *testing.T) {
	r := startCluster(t, 3, 0)
	statsAddr := fmt.Sprintf("127.0.0.1:%d", freePair(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePair(t))
	r.top += fmt.Sprintf("metrics {\n  listen = %q\n}\n", metricsAddr)
	addr, _ := r.proxyWithStats(t, statsAddr)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 5 * time.Second})
	defer c.Close()
	keys := []string{"{mig}a", "{mig}b", "{mig}c"}
	for _, k := range keys {
		if err := c.Set(ctx, k, "v"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	slot := hashkit.Slot([]byte(keys[0]))
	src := r.nodeAt(r.masterOfSlot(t, slot))
	var dst *node
	for _, n := range r.nodes {
		if n != src {
			dst = n
			break
		}
	}
	sc, dc := src.client(), dst.client()
	defer sc.Close()
	defer dc.Close()
	srcID, _ := sc.Do(ctx, "CLUSTER", "MYID").Text()
	dstID, _ := dc.Do(ctx, "CLUSTER", "MYID").Text()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("IMPORTING", dc.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	must("MIGRATING", sc.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())
	must("MIGRATE", sc.Do(ctx, "MIGRATE", "127.0.0.1", dst.port, keys[0], 0, 5000).Err())

	get := func(k, want string) {
		t.Helper()
		v, err := c.Get(ctx, k).Result()
		if err != nil || v != want {
			t.Fatalf("GET %s while the slot migrates: %q %v, want %q", k, v, err, want)
		}
	}
	for range 5 {
		get(keys[1], "v"+keys[1]) // still on the source
		get(keys[0], "v"+keys[0]) // moved: ASK to the target
	}
	// A new key of a migrating slot goes to the target (ASK from the
	// source, which does not have it).
	must("SET a new key", c.Set(ctx, "{mig}new", "fresh", 0).Err())
	// The source must not have it (it answers ASK for a key it lacks).
	if n, _ := sc.Exists(ctx, "{mig}new").Result(); n != 0 {
		t.Fatal("the new key was written on the source of a migrating slot")
	}

	// Present (b) and moved (a) keys in one request: the source answers
	// TRYAGAIN until the slot's move ends. End it 150 ms from now.
	done := make(chan error, 1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		if err := sc.Do(ctx, "MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", keys[1], keys[2]).Err(); err != nil {
			done <- fmt.Errorf("MIGRATE: %w", err)
			return
		}
		if err := dc.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(); err != nil {
			done <- err
			return
		}
		done <- sc.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err()
	}()
	start := time.Now()
	vals, err := c.MGet(ctx, keys[0], keys[1]).Result()
	took := time.Since(start)
	if err != nil || len(vals) != 2 || vals[0] != "v"+keys[0] || vals[1] != "v"+keys[1] {
		t.Fatalf("MGET over a present and a moved key: %v %v", vals, err)
	}
	must("finishing the move", <-done)
	for _, k := range keys {
		get(k, "v"+k)
	}
	get("{mig}new", "fresh")

	var out string
	count := func(name string) int {
		n := 0
		for _, m := range regexp.MustCompile(`(?m)^nuthatch_pool_cluster_`+name+`_total\{[^}]*\} (\d+)`).FindAllStringSubmatch(out, -1) {
			v, _ := strconv.Atoi(m[1])
			n += v
		}
		return n
	}
	// The master sums the workers' counters every stats.interval (100 ms).
	var asked, tryAgain, moved int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out = getMetrics(t, metricsAddr)
		if asked, tryAgain, moved = count("ask"), count("tryagain"), count("moved"); asked > 0 && tryAgain > 0 {
			break
		}
	}
	t.Logf("migrating slot %d: MGET over a present and a moved key answered after %v; asked %d, try_again %d, moved %d", slot, took.Round(time.Millisecond), asked, tryAgain, moved)
	if asked == 0 || tryAgain == 0 {
		t.Errorf("the ASK and TRYAGAIN paths were not taken (asked %d, try_again %d):\n%s", asked, tryAgain, out[:min(len(out), 3000)])
	}
}

func getMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
