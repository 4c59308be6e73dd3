package cluster

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// nuthatch started while every node of the cluster is stopped (SIGSTOP:
// connections are accepted, nothing answers), so that no slot map can be
// read: a GET, an MGET, a transaction, a SUBSCRIBE, a BLPOP and a DBSIZE
// sent meanwhile all wait, none answered before the nodes go on (SIGCONT),
// and then each runs, with no error.
func TestClusterRequestsBeforeFirstMap(t *testing.T) {
	r := startCluster(t, 3, 0)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.nodes[0].addr()}, Protocol: 2})
	if err := cc.Set(ctx, "pre:k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cc.Close()
	for _, n := range r.nodes {
		n.proc.Signal(syscall.SIGSTOP)
	}
	stopped := true
	cont := func() {
		if stopped {
			for _, n := range r.nodes {
				n.proc.Signal(syscall.SIGCONT)
			}
			stopped = false
		}
	}
	defer cont()
	addr, px := r.proxy(t)
	client := func() *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 10 * time.Second,
			DialTimeout: time.Second})
	}
	var mu sync.Mutex
	answered := map[string]time.Time{}
	var errs []string
	var wg sync.WaitGroup
	run := func(what string, f func(c *redis.Client) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client()
			defer c.Close()
			err := f(c)
			mu.Lock()
			defer mu.Unlock()
			answered[what] = time.Now()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", what, err))
			}
		}()
	}
	run("GET", func(c *redis.Client) error {
		if v, err := c.Get(ctx, "pre:k").Result(); err != nil || v != "v" {
			return fmt.Errorf("%q %v", v, err)
		}
		return nil
	})
	run("SET+MGET", func(c *redis.Client) error {
		if err := c.Set(ctx, "early:a", "1", 0).Err(); err != nil {
			return err
		}
		vals, err := c.MGet(ctx, "early:a", "pre:k", "early:none").Result()
		if err != nil || len(vals) != 3 || vals[0] != "1" || vals[1] != "v" || vals[2] != nil {
			return fmt.Errorf("%v %v", vals, err)
		}
		return nil
	})
	run("MULTI", func(c *redis.Client) error {
		var incr *redis.IntCmd
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "{tx}a", "41", 0)
			incr = p.Incr(ctx, "{tx}a")
			return nil
		})
		if err != nil || incr.Val() != 42 {
			return fmt.Errorf("INCR in MULTI: %d %v", incr.Val(), err)
		}
		return nil
	})
	run("DBSIZE", func(c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		if err != nil || n < 1 {
			return fmt.Errorf("%d %v", n, err)
		}
		return nil
	})
	blpop := make(chan []string, 1)
	run("BLPOP", func(c *redis.Client) error {
		v, err := c.BLPop(ctx, 8*time.Second, "{q}list").Result()
		blpop <- v
		return err
	})
	sub := client()
	defer sub.Close()
	ps := sub.Subscribe(ctx) // no channel yet: it connects on the first
	defer ps.Close()
	subbed := make(chan time.Time, 1)
	go func() {
		err := ps.Subscribe(ctx, "news")
		if err == nil {
			_, err = ps.ReceiveTimeout(ctx, 10*time.Second) // the confirmation
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, fmt.Sprintf("SUBSCRIBE: %v", err))
			mu.Unlock()
		}
		subbed <- time.Now()
	}()
	// A raw client's PING, to see the wait without a client library.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte("*1\r\n$4\r\nPING\r\n"))

	time.Sleep(700 * time.Millisecond)
	mu.Lock()
	early := len(answered)
	for what, at := range answered {
		t.Errorf("%s answered before the cluster could be read (%v)", what, at)
	}
	mu.Unlock()
	resumed := time.Now()
	cont()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	pong, err := bufio.NewReader(raw).ReadString('\n')
	pongAt := time.Now()
	if err != nil || pong != "+PONG\r\n" {
		t.Errorf("raw PING: %q %v", pong, err)
	}
	subAt := <-subbed
	// Once everything else ran, the blocked BLPOP is woken by a push and
	// the subscriber gets a message, both through the proxy.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(answered)
		mu.Unlock()
		if n >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc := client()
	defer pc.Close()
	if err := pc.RPush(ctx, "{q}list", "job").Err(); err != nil {
		t.Errorf("RPUSH: %v", err)
	}
	if err := pc.Publish(ctx, "news", "hello").Err(); err != nil {
		t.Errorf("PUBLISH: %v", err)
	}
	if msg, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Errorf("message: %v", err)
	} else if m, ok := msg.(*redis.Message); !ok || m.Payload != "hello" {
		t.Errorf("message: %v", msg)
	}
	wg.Wait()
	if v := <-blpop; len(v) != 2 || v[1] != "job" {
		t.Errorf("BLPOP: %v", v)
	}
	for _, e := range errs {
		t.Error(e)
	}
	waited := []string{}
	for what, at := range answered {
		if at.Before(resumed) {
			t.Errorf("%s answered at %v, before the nodes went on at %v", what, at, resumed)
		}
		waited = append(waited, fmt.Sprintf("%s %v", what, at.Sub(resumed).Round(time.Millisecond)))
	}
	if subAt.Before(resumed) {
		t.Errorf("SUBSCRIBE confirmed before the nodes went on")
	}
	t.Logf("nodes stopped until %v after nuthatch was up; answered after SIGCONT: PING %v, SUBSCRIBE %v, %s (0 early of %d)",
		700*time.Millisecond, pongAt.Sub(resumed).Round(time.Millisecond), subAt.Sub(resumed).Round(time.Millisecond),
		strings.Join(waited, ", "), early)
	if t.Failed() {
		t.Logf("nuthatch:\n%s", tail(px.Output()))
	}
}

// No node of the cluster reachable at all (nothing listens on the seeds):
// requests wait failover_timeout (1 s here) for a first map, then fail
// with the documented errors; the connection stays usable.
func TestClusterNoMapTimeout(t *testing.T) {
	r := &rig{nodes: []*node{{port: harness.LowPort(t, 0)}, {port: harness.LowPort(t, 0)}}}
	failoverTimeout = "1s"
	defer func() { failoverTimeout = "8s" }()
	addr, _ := r.proxy(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, st := range []struct{ req, want string }{
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", fmt.Sprintf("-ERR nuthatch: slot %d has no reachable owner (failover in progress)\r\n", hashkit.Slot([]byte("k")))},
		{"*3\r\n$5\r\nBLPOP\r\n$1\r\nk\r\n$1\r\n0\r\n", "-ERR nuthatch: no slot map read from the cluster yet (failover_timeout passed)\r\n"},
		{"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n", "-ERR nuthatch: no slot map read from the cluster yet (failover_timeout passed)\r\n"},
	} {
		start := time.Now()
		c.Write([]byte(st.req))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		took := time.Since(start)
		if err != nil || line != st.want {
			t.Errorf("%q: %q %v, want %q", st.req, line, err, st.want)
		}
		if took < 900*time.Millisecond || took > 3*time.Second {
			t.Errorf("%q answered after %v; failover_timeout is 1 s", st.req, took)
		}
		t.Logf("%q after %v: %q", st.req, took.Round(time.Millisecond), line)
	}
}
