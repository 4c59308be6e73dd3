// Package sentinel tests Sentinel pools against real redis-servers and
// redis-sentinels on loopback: per shard a master and a replica, three
// sentinels watching every shard (down-after 1000 ms: shorter flaps on a
// small machine, shared/research/sentinel_failover.md §2.2).
package sentinel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

func lowPort(t *testing.T) int { return harness.LowPort(t, 0) }

// node is one redis-server of the rig.
type node struct {
	proc *harness.Proc
	port int
	dir  string
	args []string
}

func (n *node) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }

func startNode(t *testing.T, port int, extra ...string) *node {
	t.Helper()
	dir := t.TempDir()
	// No diskless-sync delay: a demoted master resyncs at once, so that a
	// second failover need not wait 5 s more.
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--repl-diskless-sync-delay", "0"}, extra...)
	n := &node{port: port, dir: dir, args: args}
	n.proc = harness.Start(t, "redis-server", args...)
	harness.WaitPort(t, "tcp", n.addr(), 10*time.Second)
	return n
}

// restart starts the node again with its last command line (after a kill).
func (n *node) restart(t *testing.T, extra ...string) {
	t.Helper()
	n.proc = harness.Start(t, "redis-server", append(append([]string{}, n.args...), extra...)...)
	harness.WaitPort(t, "tcp", n.addr(), 10*time.Second)
}

func (n *node) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.addr(), Protocol: 2, MaxRetries: -1, DialTimeout: time.Second})
}

// shard is a replication group: a Sentinel master name, master, replica.
type shard struct {
	name  string
	nodes []*node // nodes[0] started as master
}

type rig struct {
	pass      string // the sentinels' requirepass
	shards    []*shard
	sentinels []*harness.Proc
	sentAddrs []string
	sentConfs []string // each sentinel's config file (Sentinel rewrites it)
}

// startRig starts n shards of a master and a replica each, and three
// sentinels monitoring all of them, and waits until the sentinels see
// every replica and each other.
func startRig(t *testing.T, names ...string) *rig {
	t.Helper()
	return startRigAuth(t, "", names...)
}

// startRigAuth is startRig with sentinels that require pass.
func startRigAuth(t *testing.T, pass string, names ...string) *rig {
	t.Helper()
	return startRigConf(t, pass, "", names...)
}

// startRigConf is startRigAuth with lines added to each sentinel's file.
func startRigConf(t *testing.T, pass, extra string, names ...string) *rig {
	t.Helper()
	return startRigNodes(t, pass, extra, nil, nil, names...)
}

// startRigNodes is startRigConf with nodeArgs on every data node's
// command line and perMaster's lines after each master's in the
// sentinels' files.
func startRigNodes(t *testing.T, pass, extra string, nodeArgs []string, perMaster func(name string) string, names ...string) *rig {
	t.Helper()
	harness.Need(t, "redis-server", "redis-sentinel")
	r := &rig{pass: pass}
	for _, name := range names {
		m := startNode(t, lowPort(t), nodeArgs...)
		rep := startNode(t, lowPort(t), append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(m.port)}, nodeArgs...)...)
		r.shards = append(r.shards, &shard{name: name, nodes: []*node{m, rep}})
	}
	for range 3 {
		port := lowPort(t)
		dir := t.TempDir()
		var conf strings.Builder
		fmt.Fprintf(&conf, "port %d\nbind 127.0.0.1\ndir %s\nsentinel resolve-hostnames no\n", port, dir)
		if pass != "" {
			fmt.Fprintf(&conf, "requirepass %s\n", pass)
		}
		conf.WriteString(extra)
		for _, sh := range r.shards {
			fmt.Fprintf(&conf, "sentinel monitor %s 127.0.0.1 %d 2\n", sh.name, sh.nodes[0].port)
			fmt.Fprintf(&conf, "sentinel down-after-milliseconds %s 1000\n", sh.name)
			fmt.Fprintf(&conf, "sentinel failover-timeout %s 5000\n", sh.name)
			fmt.Fprintf(&conf, "sentinel parallel-syncs %s 1\n", sh.name)
			if perMaster != nil {
				conf.WriteString(perMaster(sh.name))
			}
		}
		file := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(file, []byte(conf.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		p := harness.Start(t, "redis-sentinel", file)
		p.Port, p.Addr = port, fmt.Sprintf("127.0.0.1:%d", port)
		harness.WaitPort(t, "tcp", p.Addr, 10*time.Second)
		r.sentinels = append(r.sentinels, p)
		r.sentAddrs = append(r.sentAddrs, p.Addr)
		r.sentConfs = append(r.sentConfs, file)
	}
	r.waitSettled(t)
	return r
}

// waitSettled waits until every sentinel sees two others and one replica
// of every shard with its link up (Sentinel discovers them within ~5 s).
func (r *rig) waitSettled(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, s := range r.sentinels {
			c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, MaxRetries: -1, Password: r.pass})
			for _, sh := range r.shards {
				m, err := c.Do(ctx, "SENTINEL", "MASTER", sh.name).Result()
				f := flat(m)
				if err != nil || f["num-other-sentinels"] != "2" || f["num-slaves"] != "1" || f["flags"] != "master" {
					ok = false
				}
			}
			c.Close()
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("sentinels did not discover each other and the replicas in 20 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func flat(v any) map[string]string {
	out := map[string]string{}
	arr, _ := v.([]any)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		out[k] = val
	}
	return out
}

// masterOf asks the first sentinel that answers for a shard's master.
func (r *rig) masterOf(t *testing.T, name string) string {
	t.Helper()
	for _, s := range r.sentinels {
		if s.Exited() {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, MaxRetries: -1, Password: r.pass})
		v, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name).StringSlice()
		c.Close()
		if err == nil && len(v) == 2 {
			return v[0] + ":" + v[1]
		}
	}
	t.Fatalf("no sentinel knows %s", name)
	return ""
}

// nodeAt returns the shard's node at addr.
func (sh *shard) nodeAt(addr string) *node {
	for _, n := range sh.nodes {
		if n.addr() == addr {
			return n
		}
	}
	return nil
}

// waitInSync waits until the shard's replica has every write of its master.
func (r *rig) waitInSync(t *testing.T, sh *shard) {
	t.Helper()
	master := sh.nodeAt(r.masterOf(t, sh.name))
	re := regexp.MustCompile(`master_repl_offset:(\d+)`)
	// A demoted master is converted to a replica ~10 s after a failover.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		offsets := map[string]bool{}
		for _, n := range sh.nodes {
			c := n.client()
			info, err := c.Info(ctx, "replication").Result()
			c.Close()
			if m := re.FindStringSubmatch(info); err == nil && m != nil {
				offsets[m[1]] = true
			}
		}
		if len(offsets) == 1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica of %s (master %s) not in sync", sh.name, master.addr())
}

// proxy starts nuthatch with two workers over the rig's shards.
func (r *rig) proxy(t *testing.T, extra string) (string, *harness.Proc) {
	return r.proxyWithPool(t, extra, "")
}

// proxyWith adds sentinelAttrs to the sentinel block.
func (r *rig) proxyWith(t *testing.T, sentinelAttrs string) (string, *harness.Proc) {
	return r.proxyWithPool(t, "", sentinelAttrs)
}

func (r *rig) proxyWithPool(t *testing.T, extra, sentinelAttrs string) (string, *harness.Proc) {
	t.Helper()
	return r.proxyConf(t, "", extra, sentinelAttrs)
}

// proxyConf is proxyWithPool with top-level attributes too.
func (r *rig) proxyConf(t *testing.T, top, extra, sentinelAttrs string) (string, *harness.Proc) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	var servers strings.Builder
	for _, sh := range r.shards {
		fmt.Fprintf(&servers, "  server %q {}\n", sh.name)
	}
	quoted := make([]string, len(r.sentAddrs))
	for i, a := range r.sentAddrs {
		quoted[i] = strconv.Quote(a)
	}
	hcl := fmt.Sprintf(`
worker_processes = 2
%s
log {
  level = "debug"
}
stats {
  listen   = %q
  interval = "100ms"
}
pool "sessions" {
  listen       = %q
  protocol     = "redis"
  hash         = "fnv1a_64"
  distribution = "ketama"
  timeout      = "2s"
  sentinel {
    addresses        = [%s]
    failover_timeout = "6s"
%s
  }
%s%s}
`, top, statsListen, addr, strings.Join(quoted, ", "), sentinelAttrs, extra, servers.String())
	p := harness.Nuthatch(t, hcl, addr)
	return addr, p
}

// statsListen is the stats address of the next proxy ("" for none).
var statsListen = ""

// harnessChildren lists the worker processes of a master.
func harnessChildren(pid int) []int { return harness.Children(pid) }

// result is one request of a load.
type result struct {
	at    time.Time
	key   string
	write bool
	err   error
}

// load runs n clients through addr writing numbered keys (SET k i, then
// GET k) until stop; it returns every result.
func load(addr string, n int, stop <-chan struct{}) func() []result {
	return loadWith(func() *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 10 * time.Second,
			DialTimeout: time.Second})
	}, "w", n, stop)
}

// loadWith is load with clients from newClient and keys prefix<n>:<i>.
func loadWith(newClient func() *redis.Client, prefix string, n int, stop <-chan struct{}) func() []result {
	var mu sync.Mutex
	var out []result
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%s%d:%d", prefix, w, i)
				err := c.Set(ctx, k, k, 0).Err()
				mu.Lock()
				out = append(out, result{at: time.Now(), key: k, write: true, err: err})
				mu.Unlock()
				if err == nil {
					v, gerr := c.Get(ctx, k).Result()
					if gerr == nil && v != k {
						gerr = fmt.Errorf("GET %s = %q", k, v)
					}
					mu.Lock()
					out = append(out, result{at: time.Now(), key: k, err: gerr})
					mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return func() []result {
		wg.Wait()
		return out
	}
}

// restartSentinel starts sentinel i again (after a kill) from file.
func (r *rig) restartSentinel(t *testing.T, i int, file string) {
	t.Helper()
	old := r.sentinels[i]
	p := harness.Start(t, "redis-sentinel", file)
	p.Port, p.Addr = old.Port, old.Addr
	harness.WaitPort(t, "tcp", p.Addr, 10*time.Second)
	r.sentinels[i] = p
}

// sentinelView is what sentinel i says of name: its master and config-epoch.
func (r *rig) sentinelView(i int, name string) (addr, epoch string) {
	c := redis.NewClient(&redis.Options{Addr: r.sentAddrs[i], Protocol: 2, MaxRetries: -1, Password: r.pass})
	defer c.Close()
	m, err := c.Do(ctx, "SENTINEL", "MASTER", name).Result()
	if err != nil {
		return "", err.Error()
	}
	f := flat(m)
	return f["ip"] + ":" + f["port"], f["config-epoch"]
}
