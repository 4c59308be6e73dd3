package reliability

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// sentinelRig is the soak's Sentinel shard, after test/sentinel's rig kept
// small: a master and a replica (redis-server) and three redis-sentinels
// (down-after 1000 ms), ports below 32768.
type sentinelRig struct {
	name      string
	nodes     []*harness.Proc
	sentinels []*harness.Proc
}

func startSentinelRig(t *testing.T, name string) *sentinelRig {
	t.Helper()
	harness.Need(t, "redis-server", "redis-sentinel")
	r := &sentinelRig{name: name}
	var master int
	for i := 0; i < 2; i++ {
		port := harness.LowPort(t, 0)
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", t.TempDir(), "--repl-diskless-sync-delay", "0"}
		if i == 0 {
			master = port
		} else {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(master))
		}
		p := harness.Start(t, "redis-server", args...)
		p.Port, p.Addr = port, fmt.Sprintf("127.0.0.1:%d", port)
		harness.WaitPort(t, "tcp", p.Addr, 10*time.Second)
		r.nodes = append(r.nodes, p)
	}
	for i := 0; i < 3; i++ {
		port := harness.LowPort(t, 0)
		dir := t.TempDir()
		conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel resolve-hostnames no\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n", port, dir, name, master, name, name, name)
		file := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		p := harness.Start(t, "redis-sentinel", file)
		p.Port, p.Addr = port, fmt.Sprintf("127.0.0.1:%d", port)
		harness.WaitPort(t, "tcp", p.Addr, 10*time.Second)
		r.sentinels = append(r.sentinels, p)
	}
	r.waitSettled(t)
	return r
}

// sentinelDo runs a command on sentinel i.
func (r *sentinelRig) sentinelDo(i int, args ...any) (any, error) {
	c := redis.NewClient(&redis.Options{Addr: r.sentinels[i].Addr, Protocol: 2, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	return c.Do(context.Background(), args...).Result()
}

// waitSettled waits until every sentinel sees the two others and the
// replica with its link up.
func (r *sentinelRig) waitSettled(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for i := range r.sentinels {
			v, err := r.sentinelDo(i, "SENTINEL", "MASTER", r.name)
			f := map[string]string{}
			arr, _ := v.([]any)
			for j := 0; j+1 < len(arr); j += 2 {
				k, _ := arr[j].(string)
				f[k], _ = arr[j+1].(string)
			}
			if err != nil || f["num-other-sentinels"] != "2" || f["num-slaves"] != "1" || f["flags"] != "master" {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("sentinels did not settle in 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *sentinelRig) master(t *testing.T) string {
	t.Helper()
	v, err := r.sentinelDo(0, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", r.name)
	arr, _ := v.([]any)
	if err != nil || len(arr) != 2 {
		t.Fatalf("master of %s: %v %v", r.name, v, err)
	}
	return fmt.Sprintf("%v:%v", arr[0], arr[1])
}

// failover has Sentinel promote the replica and waits until every
// sentinel names it and the rig has settled again (the old master
// demoted and in sync).
func (r *sentinelRig) failover(t *testing.T) {
	t.Helper()
	old := r.master(t)
	if _, err := r.sentinelDo(0, "SENTINEL", "FAILOVER", r.name); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.master(t) == old {
		if time.Now().After(deadline) {
			t.Fatalf("no failover of %s in 30 s", r.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.waitSettled(t)
}

// pool is the HCL of a Sentinel pool over the rig.
func (r *sentinelRig) pool(name, listen, timeout string) string {
	q := make([]string, len(r.sentinels))
	for i, s := range r.sentinels {
		q[i] = strconv.Quote(s.Addr)
	}
	return fmt.Sprintf("pool %q {\n  listen = %q\n  protocol = \"redis\"\n  timeout = %q\n  sentinel {\n    addresses = [%s]\n    failover_timeout = \"6s\"\n  }\n  server %q {}\n}\n",
		name, listen, timeout, strings.Join(q, ", "), r.name)
}

// clusterRig is the soak's Redis Cluster, after test/cluster's rig: three
// masters and three replicas, cluster-node-timeout 2000 ms, data ports
// below 22768 (the bus ports, +10000, stay below 32768).
type clusterRig struct {
	nodes []*harness.Proc
	moves int
}

func startClusterRig(t *testing.T) *clusterRig {
	t.Helper()
	harness.Need(t, "redis-server", "redis-cli")
	r := &clusterRig{}
	var addrs []string
	for range 6 {
		port := harness.LowPort(t, 10000)
		dir := t.TempDir()
		p := harness.Start(t, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes.conf", "--cluster-node-timeout", "2000", "--dir", dir,
			"--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")
		p.Port, p.Addr = port, fmt.Sprintf("127.0.0.1:%d", port)
		harness.WaitPort(t, "tcp", p.Addr, 10*time.Second)
		r.nodes = append(r.nodes, p)
		addrs = append(addrs, p.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	r.waitReady(t)
	return r
}

func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DialTimeout: time.Second})
}

// waitReady waits for cluster_state:ok on every node and every replica's
// link up.
func (r *clusterRig) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, n := range r.nodes {
			c := nodeClient(n.Addr)
			info, err := c.ClusterInfo(context.Background()).Result()
			repl, err2 := c.Info(context.Background(), "replication").Result()
			c.Close()
			if err != nil || err2 != nil || !strings.Contains(info, "cluster_state:ok") ||
				(strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up")) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not become ready in 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// roles returns the masters' and the replicas' addresses.
func (r *clusterRig) roles(t *testing.T) (masters, replicas []string) {
	t.Helper()
	for _, n := range r.nodes {
		c := nodeClient(n.Addr)
		repl, err := c.Info(context.Background(), "replication").Result()
		c.Close()
		switch {
		case err != nil:
			t.Fatalf("INFO of %s: %v", n.Addr, err)
		case strings.Contains(repl, "role:master"):
			masters = append(masters, n.Addr)
		default:
			replicas = append(replicas, n.Addr)
		}
	}
	return masters, replicas
}

// failover has a replica take its master over (CLUSTER FAILOVER: the
// master pauses its clients until the replica has caught up, so no
// acknowledged write is lost) and waits for the cluster to be ready.
func (r *clusterRig) failover(t *testing.T) {
	t.Helper()
	_, replicas := r.roles(t)
	addr := replicas[r.moves%len(replicas)]
	r.moves++
	c := nodeClient(addr)
	defer c.Close()
	if err := c.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER on %s: %v", addr, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		repl, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(repl, "role:master") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not promoted in 30 s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.waitReady(t)
}

// reshard moves slots (and their keys) from one master to another with
// redis-cli --cluster reshard, under the load.
func (r *clusterRig) reshard(t *testing.T, slots int) {
	t.Helper()
	masters, _ := r.roles(t)
	from, to := masters[r.moves%len(masters)], masters[(r.moves+1)%len(masters)]
	r.moves++
	id := func(addr string) string {
		c := nodeClient(addr)
		defer c.Close()
		v, err := c.Do(context.Background(), "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatalf("CLUSTER MYID of %s: %v", addr, err)
		}
		return v
	}
	out, err := exec.Command("redis-cli", "--cluster", "reshard", from, "--cluster-from", id(from), "--cluster-to", id(to),
		"--cluster-slots", strconv.Itoa(slots), "--cluster-yes").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out[max(0, len(out)-2000):])
	}
	r.waitReady(t)
}

// pool is the HCL of a cluster pool over the rig.
func (r *clusterRig) pool(name, listen, timeout string) string {
	return fmt.Sprintf("pool %q {\n  listen = %q\n  protocol = \"redis\"\n  timeout = %q\n  cluster {\n    seeds = [%q, %q]\n    failover_timeout = \"8s\"\n  }\n}\n",
		name, listen, timeout, r.nodes[0].Addr, r.nodes[1].Addr)
}
