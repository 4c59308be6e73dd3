package cluster

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// commandCalls reads cmdstat_<name>'s calls from a node's INFO.
func commandCalls(t *testing.T, n *node, name string) int {
	t.Helper()
	c := n.client()
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_` + name + `:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// role is a node's role from INFO replication.
func role(t *testing.T, n *node) string {
	t.Helper()
	c := n.client()
	defer c.Close()
	info, _ := c.Info(ctx, "replication").Result()
	if strings.Contains(info, "role:master") {
		return "master"
	}
	return "replica"
}

func (r *rig) resetStats(t *testing.T) {
	t.Helper()
	for _, n := range r.nodes {
		c := n.client()
		if err := c.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// read_from = "replica": reads land on the replicas (their INFO
// commandstats count every GET, the masters' none), writes on the
// masters; the topology comes from CLUSTER SHARDS, which names a master
// that owns no slot too.
func TestClusterReplicaReads(t *testing.T) {
	r := startCluster(t, 3, 1)
	empty := r.addNode(t)
	if out, err := exec.Command("redis-cli", "--cluster", "add-node", empty.addr(), r.nodes[0].addr()).CombinedOutput(); err != nil {
		t.Fatalf("add-node: %v\n%s", err, out)
	}
	// Every shard gets a write, so that Redis reports its replica synced
	// (SHARDS says "loading", SLOTS omits it, while its offset is 0).
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.nodes[0].addr()}})
	for i := range 30 {
		cc.Set(ctx, fmt.Sprintf("warm:%d", i), "v", 0)
	}
	cc.Close()
	statsAddr := fmt.Sprintf("127.0.0.1:%d", freePair(t))
	addr, px := r.proxyWith(t, statsAddr, `read_from = "replica"
    refresh_interval = "1s"`)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	const n = 300
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("rr:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
	}
	for _, nd := range r.nodes[:6] {
		if role(t, nd) == "master" {
			r.waitInSync(t, nd)
		}
	}
	r.resetStats(t)
	// The replicas are in the map once a refresh saw them synced (Redis
	// reports a replica "loading" until gossip brings its offset), and the
	// slot-less master once gossip brought it to the node asked (one node
	// may list 5 masters while a new replica's role is not known yet, another
	// 3 while it has not heard of the added node): wait for a map of both.
	converged := regexp.MustCompile(`masters=4 [^\n]*replicas=3`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if converged.MatchString(px.Output()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no map with 4 masters and 3 replicas:\n%s", px.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range n {
		v, err := c.Get(ctx, fmt.Sprintf("rr:%d", i)).Int()
		if err != nil || v != i {
			t.Fatalf("GET rr:%d = %d %v", i, v, err)
		}
	}
	keys := []string{"rr:1", "rr:2", "rr:3", "rr:4", "rr:5"}
	if vals, err := c.MGet(ctx, keys...).Result(); err != nil || len(vals) != 5 || vals[0] != "1" || vals[4] != "5" {
		t.Fatalf("MGET: %v %v", vals, err)
	}
	if err := c.Set(ctx, "rr:w", "x", 0).Err(); err != nil {
		t.Fatalf("SET after reads: %v", err)
	}
	masterGets, replicaGets, replicaMgets, masterSets := 0, 0, 0, 0
	for _, nd := range r.nodes[:6] {
		if role(t, nd) == "master" {
			masterGets += commandCalls(t, nd, "get") + commandCalls(t, nd, "mget")
			masterSets += commandCalls(t, nd, "set")
		} else {
			replicaGets += commandCalls(t, nd, "get")
			replicaMgets += commandCalls(t, nd, "mget")
		}
	}
	t.Logf("GETs on masters %d, on replicas %d (MGET fragments %d); SETs on masters %d", masterGets, replicaGets, replicaMgets, masterSets)
	if masterGets != 0 || replicaGets != n || replicaMgets == 0 || masterSets != 1 {
		t.Errorf("reads not on the replicas: masters %d GET/MGET, replicas %d GET, %d MGET; masters %d SET",
			masterGets, replicaGets, replicaMgets, masterSets)
	}
	out := px.Output()
	if !strings.Contains(out, `via="CLUSTER SHARDS"`) || !strings.Contains(out, "masters=4") {
		t.Errorf("the map was not read with CLUSTER SHARDS naming the slot-less master:\n%s", out)
	}
	checkNodeStats(t, r, statsAddr, empty)
}

// checkNodeStats reads the stats document and nuthatch stats: every node
// with its role, the masters' slots (16384 in all, 0 for the empty one),
// each replica with its master.
func checkNodeStats(t *testing.T, r *rig, statsAddr string, empty *node) {
	t.Helper()
	type server struct {
		Role      string `json:"role"`
		Slots     int    `json:"slots"`
		ReplicaOf string `json:"replica_of"`
		Requests  int    `json:"requests"`
	}
	var doc map[string]json.RawMessage
	var pool map[string]json.RawMessage
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw := readStats(t, statsAddr)
		doc, pool = nil, nil
		json.Unmarshal([]byte(raw), &doc)
		json.Unmarshal(doc["store"], &pool)
		masters, replicas, slots := 0, 0, 0
		for _, nd := range r.nodes {
			var s server
			if json.Unmarshal(pool[nd.addr()], &s) != nil {
				continue
			}
			switch {
			case s.Role == "master":
				masters++
				slots += s.Slots
				if nd == empty && s.Slots != 0 {
					t.Fatalf("the empty master shows %d slots", s.Slots)
				}
			case s.Role == "replica" && s.ReplicaOf != "" && s.Requests > 0:
				replicas++
			}
		}
		if masters == 4 && replicas == 3 && slots == 16384 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats: %d masters, %d replicas with reads, %d slots:\n%s", masters, replicas, slots, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	conf := filepath.Join(t.TempDir(), "n.hcl")
	if err := os.WriteFile(conf, []byte(r.hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.Binary(t), "stats", "-c", conf, "-once").CombinedOutput()
	if err != nil {
		t.Fatalf("nuthatch stats: %v\n%s", err, out)
	}
	t.Logf("nuthatch stats:\n%s", out)
	if !strings.Contains(string(out), empty.addr()+" [master, 0 slots]") || strings.Count(string(out), "[replica of ") != 3 ||
		!strings.Contains(string(out), " slots]") {
		t.Errorf("nuthatch stats does not show the nodes' roles and slots:\n%s", out)
	}
}

// read_from = "replica_preferred" through a CLUSTER FAILOVER under load:
// no error for reads (of keys written before) or writes, reads keep
// landing on replicas after the switch, and a BLPOP blocked on the old
// master is woken by a push after it.
func TestClusterReplicaPreferredFailover(t *testing.T) {
	r := startCluster(t, 3, 1)
	addr, pxProc := r.proxyWith(t, "", `read_from = "replica_preferred"`)
	defer func() {
		if t.Failed() {
			t.Logf("nuthatch:\n%s", pxProc.Output())
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	const n = 1000
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("pre:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range r.nodes {
		if role(t, nd) == "master" {
			r.waitInSync(t, nd)
		}
	}
	stop := make(chan struct{})
	var mu sync.Mutex
	errs := map[string]int{}
	reads, writes := 0, 0
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 15 * time.Second})
			defer lc.Close()
			rnd := rand.New(rand.NewSource(int64(w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := rnd.Intn(n)
				v, err := lc.Get(ctx, fmt.Sprintf("pre:%d", k)).Int()
				if err == nil && v != k {
					err = fmt.Errorf("GET pre:%d = %d", k, v)
				}
				werr := lc.Set(ctx, fmt.Sprintf("fw%d:%d", w, i), i, 0).Err()
				mu.Lock()
				reads++
				writes++
				for _, e := range []error{err, werr} {
					if e != nil {
						errs[e.Error()]++
					}
				}
				mu.Unlock()
			}
		}()
	}
	// A client blocked in BLPOP on the master that is failed over: Redis
	// wakes it with UNBLOCKED; the proxy blocks it again on the new master.
	bkey := ""
	for i := 0; bkey == ""; i++ {
		if k := fmt.Sprintf("bq%d", i); hashkit.Slot([]byte(k)) < 100 {
			bkey = k
		}
	}
	popped := make(chan string, 1)
	go func() {
		bc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 30 * time.Second})
		defer bc.Close()
		v, err := bc.BLPop(ctx, 20*time.Second, bkey).Result()
		if err != nil {
			popped <- err.Error()
			return
		}
		popped <- v[1]
	}()
	time.Sleep(time.Second)
	master := r.nodeAt(r.masterOfSlot(t, 0))
	rep := r.replicaOf(t, master.addr())
	rc := rep.client()
	if err := rc.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for role(t, rep) != "master" {
		if time.Now().After(deadline) {
			t.Fatal("no failover")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.waitReady(t)
	if err := c.RPush(ctx, bkey, "job").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-popped:
		if v != "job" {
			t.Errorf("BLPOP across the failover: %s", v)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("BLPOP not woken after the failover")
	}
	time.Sleep(time.Second)
	r.resetStats(t)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	replicaGets := 0
	for _, nd := range r.nodes {
		if role(t, nd) == "replica" {
			replicaGets += commandCalls(t, nd, "get")
		}
	}
	t.Logf("%d reads, %d writes, errors %v; GETs on replicas in the last second %d", reads, writes, errs, replicaGets)
	if len(errs) > 0 {
		t.Errorf("errors through the failover: %v", errs)
	}
	if replicaGets == 0 {
		t.Errorf("no read on a replica after the failover")
	}
	// The old master now serves reads as a replica.
	if commandCalls(t, master, "get") == 0 {
		t.Errorf("the demoted master %s serves no read", master.addr())
	}
}
