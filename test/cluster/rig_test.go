// Package cluster tests cluster pools against a real Redis Cluster of
// Debian's redis-server 7.0 on loopback: three masters and three replicas,
// cluster-node-timeout 2000 ms, data ports below 22768 so that the bus
// ports (+10000) stay out of the ephemeral range
// (shared/research/redis_cluster.md §4).
package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

var ctx = context.Background()

func freePair(t *testing.T) int { return harness.LowPort(t, 10000) }

type node struct {
	proc *harness.Proc
	port int
	args []string
}

func (n *node) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }

// restart starts a killed node again with its command line (and its
// nodes.conf: it rejoins with its slots).
func (n *node) restart(t *testing.T) {
	t.Helper()
	n.proc = harness.Start(t, "redis-server", n.args...)
	harness.WaitPort(t, "tcp", n.addr(), 10*time.Second)
}

func (n *node) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.addr(), Protocol: 2, MaxRetries: -1, DialTimeout: time.Second})
}

type rig struct {
	nodes []*node
	hcl   string // the last proxy's configuration
	top   string // lines at the top of the next proxy's configuration (pid_file)
}

// clusterNode starts one redis-server in cluster mode.
func clusterNode(t *testing.T) *node {
	t.Helper()
	port := freePair(t)
	dir := t.TempDir()
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
		"--cluster-config-file", dir + "/nodes.conf", "--cluster-node-timeout", "2000", "--dir", dir,
		"--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"}
	n := &node{port: port, args: args, proc: harness.Start(t, "redis-server", args...)}
	harness.WaitPort(t, "tcp", n.addr(), 10*time.Second)
	return n
}

// addNode starts a node that is not in the cluster yet.
func (r *rig) addNode(t *testing.T) *node {
	t.Helper()
	n := clusterNode(t)
	r.nodes = append(r.nodes, n)
	return n
}

// startCluster starts masters+replicas nodes and creates the cluster.
func startCluster(t *testing.T, masters, replicasEach int) *rig {
	t.Helper()
	harness.Need(t, "redis-server", "redis-cli")
	r := &rig{}
	var addrs []string
	for range masters * (1 + replicasEach) {
		n := clusterNode(t)
		r.nodes = append(r.nodes, n)
		addrs = append(addrs, n.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasEach), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	r.waitReady(t)
	return r
}

// waitReady waits for cluster_state:ok everywhere and every replica's
// link up, and for CLUSTER SLOTS to list the replicas.
func (r *rig) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, n := range r.nodes {
			if n.proc.Exited() {
				continue
			}
			c := n.client()
			info, err := c.ClusterInfo(ctx).Result()
			repl, err2 := c.Info(ctx, "replication").Result()
			c.Close()
			if err != nil || err2 != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
				continue
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not become ready in 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// masterOfSlot asks a live node which address owns slot.
func (r *rig) masterOfSlot(t *testing.T, slot int) string {
	t.Helper()
	for _, n := range r.nodes {
		if n.proc.Exited() {
			continue
		}
		c := n.client()
		slots, err := c.ClusterSlots(ctx).Result()
		c.Close()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int(s.Start) <= slot && slot <= int(s.End) && len(s.Nodes) > 0 {
				return s.Nodes[0].Addr
			}
		}
	}
	t.Fatalf("no node knows slot %d", slot)
	return ""
}

func (r *rig) nodeAt(addr string) *node {
	for _, n := range r.nodes {
		if n.addr() == addr {
			return n
		}
	}
	return nil
}

// replicaOf returns a replica of the master at addr.
func (r *rig) replicaOf(t *testing.T, addr string) *node {
	t.Helper()
	for _, n := range r.nodes {
		if n.proc.Exited() {
			continue
		}
		c := n.client()
		repl, err := c.Info(ctx, "replication").Result()
		c.Close()
		host, port, _ := net.SplitHostPort(addr)
		if err == nil && strings.Contains(repl, "master_host:"+host) && strings.Contains(repl, "master_port:"+port+"\r\n") {
			return n
		}
	}
	t.Fatalf("no replica of %s", addr)
	return nil
}

// waitInSync waits until a master's replicas have all its writes.
func (r *rig) waitInSync(t *testing.T, master *node) {
	t.Helper()
	re := regexp.MustCompile(`master_repl_offset:(\d+)`)
	rep := r.replicaOf(t, master.addr())
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		a, b := master.client(), rep.client()
		ia, _ := a.Info(ctx, "replication").Result()
		ib, _ := b.Info(ctx, "replication").Result()
		a.Close()
		b.Close()
		ma, mb := re.FindStringSubmatch(ia), re.FindStringSubmatch(ib)
		if ma != nil && mb != nil && ma[1] == mb[1] {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica of %s not in sync", master.addr())
}

// proxy starts nuthatch with two workers over the cluster.
func (r *rig) proxy(t *testing.T) (string, *harness.Proc) {
	return r.proxyWithStats(t, "")
}

// failoverTimeout is the pools' failover_timeout in the rig.
var failoverTimeout = "8s"

// readStats reads the twemproxy-style stats port once.
func readStats(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

func (r *rig) proxyWithStats(t *testing.T, statsAddr string) (string, *harness.Proc) {
	t.Helper()
	return r.proxyWith(t, statsAddr, "")
}

// proxyWith is proxyWithStats with more attributes of the cluster block.
func (r *rig) proxyWith(t *testing.T, statsAddr, clusterExtra string) (string, *harness.Proc) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`%s
worker_processes = 2
log {
  level = "debug"
}
stats {
  listen   = %q
  interval = "100ms"
}
pool "store" {
  listen   = %q
  protocol = "redis"
  timeout  = "2s"
  cluster {
    seeds            = [%q, %q]
    failover_timeout = %q
    %s
  }
}
`, r.top, statsAddr, addr, r.nodes[0].addr(), r.nodes[1].addr(), failoverTimeout, clusterExtra)
	r.hcl = hcl
	return addr, harness.Nuthatch(t, hcl, addr)
}

// loadRetries is the load clients' MaxRetries: -1, none, but for a test
// that kills a worker (whose clients' connections close, as any client
// sees when its server's process dies).
var loadRetries = -1

// result is one request of a load.
type result struct {
	at    time.Time
	key   string
	write bool
	err   error
}

// load runs n clients through addr writing numbered keys (SET k k, then
// GET k, and every tenth an MGET of three keys) until stop.
func load(addr string, n int, stop <-chan struct{}) func() []result {
	var mu sync.Mutex
	var out []result
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: loadRetries, PoolSize: 1, ReadTimeout: 15 * time.Second,
				DialTimeout: time.Second})
			defer c.Close()
			note := func(r result) {
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d:%d", w, i)
				err := c.Set(ctx, k, k, 0).Err()
				note(result{at: time.Now(), key: k, write: true, err: err})
				if err == nil {
					v, gerr := c.Get(ctx, k).Result()
					if gerr == nil && v != k {
						gerr = fmt.Errorf("GET %s = %q", k, v)
					}
					note(result{at: time.Now(), key: k, err: gerr})
				}
				if i%10 == 9 {
					ks := []string{k, fmt.Sprintf("w%d:%d", w, i-1), fmt.Sprintf("w%d:%d", w, i-2)}
					vals, merr := c.MGet(ctx, ks...).Result()
					if merr == nil && (len(vals) != 3 || vals[0] != k) {
						merr = fmt.Errorf("MGET %v = %v", ks, vals)
					}
					note(result{at: time.Now(), key: k, err: merr})
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return func() []result {
		wg.Wait()
		return out
	}
}

// check sums a load: errors by text, and acknowledged writes missing from
// the cluster at the end (read straight from the cluster).
func (r *rig) check(t *testing.T, results []result) (ok, failed int, errs map[string]int, acked, lost int) {
	t.Helper()
	errs = map[string]int{}
	var seeds []string
	for _, n := range r.nodes {
		if !n.proc.Exited() {
			seeds = append(seeds, n.addr())
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds, Protocol: 2})
	defer cc.Close()
	for _, res := range results {
		if res.err != nil {
			failed++
			errs[res.err.Error()]++
			continue
		}
		ok++
		if res.write {
			acked++
			if v, err := cc.Get(ctx, res.key).Result(); err != nil || v != res.key {
				lost++
			}
		}
	}
	return
}
