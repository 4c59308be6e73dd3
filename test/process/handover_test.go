package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// Hand-over of idle client connections across reloads and upgrades
// (issue #24), on the real binary against real redis-servers and
// memcacheds: clients keep their socket, their session and see the new
// configuration.

// hoRig is a nuthatch with three pools: "main" (redis, 2 or 3 servers),
// "auth" (redis with redis_auth) and "mc" (memcached, 2 or 3 servers).
type hoRig struct {
	dir, conf, pidFile string
	redis              []*harness.Proc
	authRedis          *harness.Proc
	mc                 []*harness.Proc
	ports              map[string]int
	metricsPort        int
	proxy              *harness.Proc
	master             int
}

// hoConf is what a configuration of the rig varies.
type hoConf struct {
	servers int            // servers of main and mc (2 or 3)
	timeout string         // main's timeout
	pools   []string       // pools present (default all three)
	listen  map[string]int // port overrides
	auth    string         // the auth pool's redis_auth (default hunter2)
	main    string         // extra attributes of main
	extra   string
}

func newHoRig(t *testing.T) *hoRig {
	t.Helper()
	r := &hoRig{dir: t.TempDir(), ports: map[string]int{}}
	r.conf = filepath.Join(r.dir, "nuthatch.hcl")
	r.pidFile = filepath.Join(r.dir, "nuthatch.pid")
	for range 3 {
		r.redis = append(r.redis, harness.Redis(t))
		r.mc = append(r.mc, harness.Memcached(t))
	}
	r.authRedis = harness.Redis(t, "--requirepass", "hunter2")
	for _, p := range []string{"main", "auth", "mc"} {
		r.ports[p] = harness.LowPort(t, 0)
	}
	r.metricsPort = harness.LowPort(t, 0)
	return r
}

func (r *hoRig) addr(pool string) string { return fmt.Sprintf("127.0.0.1:%d", r.ports[pool]) }

func (r *hoRig) write(t *testing.T, c hoConf) {
	t.Helper()
	if c.servers == 0 {
		c.servers = 2
	}
	if c.timeout == "" {
		c.timeout = "5s"
	}
	if c.auth == "" {
		c.auth = "hunter2"
	}
	if c.pools == nil {
		c.pools = []string{"main", "auth", "mc"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "worker_processes = 2\nworker_shutdown_timeout = \"5s\"\npid_file = %q\n%s\n", r.pidFile, c.extra)
	fmt.Fprintf(&b, "stats {\n  listen = \"\"\n  interval = \"200ms\"\n}\nmetrics {\n  listen = \"127.0.0.1:%d\"\n}\n", r.metricsPort)
	port := func(p string) int {
		if v, ok := c.listen[p]; ok {
			return v
		}
		return r.ports[p]
	}
	for _, p := range c.pools {
		switch p {
		case "main":
			fmt.Fprintf(&b, "pool \"main\" {\n  listen = \"127.0.0.1:%d\"\n  protocol = \"redis\"\n  timeout = %q\n  preconnect = true\n%s\n", port(p), c.timeout, c.main)
			for _, s := range r.redis[:c.servers] {
				fmt.Fprintf(&b, "  server %q {}\n", s.Addr)
			}
		case "auth":
			fmt.Fprintf(&b, "pool \"auth\" {\n  listen = \"127.0.0.1:%d\"\n  protocol = \"redis\"\n  redis_auth = %q\n  preconnect = true\n  server %q {}\n", port(p), c.auth, r.authRedis.Addr)
		case "mc":
			fmt.Fprintf(&b, "pool \"mc\" {\n  listen = \"127.0.0.1:%d\"\n  protocol = \"memcache\"\n  preconnect = true\n", port(p))
			for _, s := range r.mc[:c.servers] {
				fmt.Fprintf(&b, "  server %q {}\n", s.Addr)
			}
		}
		b.WriteString("}\n")
	}
	if err := os.WriteFile(r.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *hoRig) start(t *testing.T, c hoConf) {
	t.Helper()
	r.write(t, c)
	r.proxy = harness.Start(t, harness.Binary(t), "-c", r.conf)
	r.master = r.proxy.Cmd.Process.Pid
	for _, p := range []string{"main", "auth", "mc"} {
		harness.WaitPort(t, "tcp", r.addr(p), 10*time.Second)
	}
	waitWorkers(t, r.master, 2, 5*time.Second)
	for deadline := time.Now().Add(5 * time.Second); readPid(t, r.pidFile) != r.master; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no pid file")
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nuthatch log:\n%s", r.proxy.Output())
		}
	})
}

// reload runs `nuthatch -s reload -w` and waits until the old workers
// are gone.
func (r *hoRig) reload(t *testing.T) {
	t.Helper()
	before := children(r.master)
	if out, code := runBinary(t, "-s", "reload", "-w", "-c", r.conf); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	r.waitFresh(t, before)
}

func (r *hoRig) waitFresh(t *testing.T, before []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := children(r.master)
		fresh := 0
		for _, p := range now {
			if !containsInt(before, p) {
				fresh++
			}
		}
		if fresh == 2 && len(now) == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v after a reload (before %v)", now, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// upgrade runs `nuthatch -s upgrade` and waits until the new master
// serves with its own workers and the old master is gone.
func (r *hoRig) upgrade(t *testing.T) {
	t.Helper()
	// The new master outlives the old one, its parent: re-parented to the
	// test, which reaps it. Reset at the end, or later tests' orphans
	// (a killed master's workers) would stay as zombies here.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	old := r.master
	if out, code := runBinary(t, "-s", "upgrade", "-c", r.conf); code != 0 {
		t.Fatalf("upgrade: exit %d: %s", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(old, 0) == nil || readPid(t, r.pidFile) == old {
		if time.Now().After(deadline) {
			t.Fatal("the old master did not hand over")
		}
		var ws syscall.WaitStatus
		syscall.Wait4(old, &ws, syscall.WNOHANG, nil)
		time.Sleep(10 * time.Millisecond)
	}
	r.master = readPid(t, r.pidFile)
	pid := r.master
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			time.Sleep(10 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	})
	waitWorkers(t, r.master, 2, 5*time.Second)
}

// metric sums a pool metric of /metrics.
func (r *hoRig) metric(t *testing.T, name, pool string) int64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", r.metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + `\{pool="` + pool + `"\} (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("/metrics lacks %s{pool=%q}", name, pool)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// respConn is a raw RESP client on one socket.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialResp(t *testing.T, addr string) *respConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &respConn{c: c, r: bufio.NewReader(c)}
}

func (rc *respConn) send(args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := rc.c.Write([]byte(b.String()))
	return err
}

// do sends one request and reads its reply, flattened to a string:
// the type byte, then the value or elements.
func (rc *respConn) do(args ...string) (string, error) {
	rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := rc.send(args...); err != nil {
		return "", err
	}
	return readResp(rc.r)
}

func readResp(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 {
		return "", fmt.Errorf("short line %q", line)
	}
	typ, body := line[0], strings.TrimSuffix(line[1:], "\r\n")
	switch typ {
	case '$', '=', '!':
		n, _ := strconv.Atoi(body)
		if n < 0 {
			return "$nil", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(typ) + string(buf[:n]), nil
	case '*', '~', '>', '%':
		n, _ := strconv.Atoi(body)
		if typ == '%' {
			n *= 2
		}
		parts := []string{string(typ)}
		for range n {
			s, err := readResp(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " "), nil
	}
	return string(typ) + body, nil
}

// TestHandOverKeepsIdleClientsAcrossReloads: 200 idle clients on one
// socket each, through 5 reloads that keep their pools (a timeout
// changed, a server added) and a binary upgrade: every next request on
// the same socket is answered with the client's name, protocol and
// authentication intact, and with the new placement.
func TestHandOverKeepsIdleClientsAcrossReloads(t *testing.T) {
	r := newHoRig(t)
	r.start(t, hoConf{})
	// Every backend of main holds each probe key with its own index as
	// the value: a GET through the proxy says which server it went to.
	const probes = 200
	for i, s := range r.redis {
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		for k := range probes {
			if err := c.Set(ctx, probeKey(k), strconv.Itoa(i), 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}

	type rawClient struct {
		rc        *respConn
		name      string
		resp3, au bool
	}
	var raws []*rawClient
	for i := range 150 {
		pool, au := "main", false
		if i >= 100 {
			pool, au = "auth", true
		}
		c := &rawClient{rc: dialResp(t, r.addr(pool)), name: fmt.Sprintf("raw-%d", i), resp3: i%3 == 0, au: au}
		if au {
			if got, err := c.rc.do("AUTH", "hunter2"); err != nil || got != "+OK" {
				t.Fatalf("AUTH: %q %v", got, err)
			}
		}
		if c.resp3 {
			if got, err := c.rc.do("HELLO", "3"); err != nil || !strings.HasPrefix(got, "%") {
				t.Fatalf("HELLO 3: %q %v", got, err)
			}
		}
		if got, err := c.rc.do("CLIENT", "SETNAME", c.name); err != nil || got != "+OK" {
			t.Fatalf("SETNAME: %q %v", got, err)
		}
		raws = append(raws, c)
	}
	// go-redis clients that never retry, one connection each; a dial
	// after the first is a reconnect.
	var dials atomic.Int64
	type grClient struct {
		c     *redis.Client
		name  string
		resp3 bool
	}
	var grs []*grClient
	for i := range 50 {
		name := fmt.Sprintf("gr-%d", i)
		proto := 2
		if i%2 == 0 {
			proto = 3
		}
		c := redis.NewClient(&redis.Options{Addr: r.addr("main"), ClientName: name, Protocol: proto, MaxRetries: -1,
			PoolSize: 1, ReadTimeout: 5 * time.Second, ConnMaxIdleTime: -1,
			Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}})
		t.Cleanup(func() { c.Close() })
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		grs = append(grs, &grClient{c: c, name: name, resp3: proto == 3})
	}
	if n := dials.Load(); n != 50 {
		t.Fatalf("%d dials for 50 go-redis clients", n)
	}

	check := func(round int) {
		t.Helper()
		for _, c := range raws {
			info, err := c.rc.do("CLIENT", "INFO")
			if err != nil {
				time.Sleep(6 * time.Second) // for the master's account of the hand-over, in the log
				t.Fatalf("round %d: %s: the same socket failed: %v", round, c.name, err)
			}
			if !strings.Contains(info, "name="+c.name+" ") || strings.Contains(info, "resp=3") != c.resp3 {
				t.Fatalf("round %d: %s (resp3 %v): CLIENT INFO %q", round, c.name, c.resp3, info)
			}
			key := "k:" + c.name
			if got, err := c.rc.do("SET", key, strconv.Itoa(round)); err != nil || got != "+OK" {
				t.Fatalf("round %d: %s: SET %q %v (authenticated %v)", round, c.name, got, err, c.au)
			}
		}
		for _, c := range grs {
			info, err := c.c.Do(ctx, "CLIENT", "INFO").Text()
			if err != nil {
				t.Fatalf("round %d: %s: %v", round, c.name, err)
			}
			if !strings.Contains(info, "name="+c.name+" ") || strings.Contains(info, "resp=3") != c.resp3 {
				t.Fatalf("round %d: %s: CLIENT INFO %q", round, c.name, info)
			}
		}
	}
	check(0)
	placement := func(rc *respConn) []string {
		out := make([]string, probes)
		for k := range probes {
			got, err := rc.do("GET", probeKey(k))
			if err != nil {
				t.Fatal(err)
			}
			out[k] = got
		}
		return out
	}
	old := placement(raws[1].rc)
	for round := 1; round <= 5; round++ {
		conf := hoConf{timeout: fmt.Sprintf("%ds", 1+round)}
		if round >= 2 {
			conf.servers = 3
		}
		r.write(t, conf)
		r.reload(t)
		check(round)
		if round == 2 {
			// The new placement, as a fresh connection sees it, is what
			// every handed-over client sees, and some keys moved to the
			// added server.
			want := placement(dialResp(t, r.addr("main")))
			moved := 0
			for k := range want {
				if want[k] == "$2" {
					moved++
				}
			}
			if moved == 0 {
				t.Fatalf("no probe key moved to the added server: %v (was %v)", want, old)
			}
			for _, c := range raws[:100] {
				if got := placement(c.rc); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Fatalf("%s reads probes from %v, a fresh client from %v", c.name, got, want)
				}
			}
			t.Logf("%d of %d probe keys moved to the added server", moved, probes)
		}
	}
	// The same across a binary upgrade: old workers -> old master -> new
	// master -> new workers.
	r.upgrade(t)
	check(6)
	if n := dials.Load(); n != 50 {
		t.Errorf("go-redis reconnected: %d dials for 50 clients", n)
	}
	if !strings.Contains(r.proxy.Output(), "idle clients handed over to the new master") {
		t.Error("the old master did not log its hand-over to the new master")
	}
	// The counters reach /metrics with the next stats poll.
	var handed, adopted int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		handed = r.metric(t, "nuthatch_pool_client_handed_over_total", "main") + r.metric(t, "nuthatch_pool_client_handed_over_total", "auth")
		adopted = r.metric(t, "nuthatch_pool_client_adopted_total", "main") + r.metric(t, "nuthatch_pool_client_adopted_total", "auth")
		if handed >= 5*200 && adopted >= 5*200 {
			break
		}
	}
	if handed < 5*200 || adopted < 5*200 {
		t.Errorf("metrics: %d handed over, %d adopted over 5 reloads of 200 clients", handed, adopted)
	}
	logs := r.proxy.Output()
	if n := strings.Count(logs, "idle clients handed over to the new workers"); n < 5 {
		t.Errorf("%d hand-over lines in the log for 5 reloads", n)
	}
	if strings.Contains(logs, "some were closed") {
		t.Errorf("clients were closed during the reloads")
	}
	t.Logf("metrics after 5 reloads: %d handed over, %d adopted", handed, adopted)
}

// probeKey spreads keys over the ring (keys alike hash alike under fnv1a).
func probeKey(k int) string { return fmt.Sprintf("%x-probe-%d", (k*2654435761)%(1<<32), k) }

// TestHandOverPipeliningUnderReloads: 24 go-redis clients pipelining
// (never retrying, one connection each) and 8 memcached clients
// pipelining on raw sockets, through 10 reloads and a binary upgrade:
// no error, no reconnect, every reply in order.
func TestHandOverPipeliningUnderReloads(t *testing.T) {
	r := newHoRig(t)
	r.start(t, hoConf{})
	var dials, ok, failed atomic.Int64
	var errs sync.Map
	fail := func(err error) {
		failed.Add(1)
		errs.Store(err.Error(), true)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 24 {
		c := redis.NewClient(&redis.Options{Addr: r.addr("main"), MaxRetries: -1, PoolSize: 1, ReadTimeout: 5 * time.Second,
			ConnMaxIdleTime: -1, Protocol: 2 + i%2,
			Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			seq := fmt.Sprintf("seq:%d", i)
			c.Del(ctx, seq)
			var n int64
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				// INCR's replies count up: one lost, doubled or
				// reordered shows.
				pipe := c.Pipeline()
				incrs := make([]*redis.IntCmd, 8)
				gets := make([]*redis.StringCmd, 8)
				for k := range 8 {
					incrs[k] = pipe.Incr(ctx, seq)
					key := fmt.Sprintf("pl:%d:%d", i, k)
					pipe.Set(ctx, key, fmt.Sprintf("%d-%d", j, k), 0)
					gets[k] = pipe.Get(ctx, key)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					fail(err)
					return
				}
				for k := range 8 {
					n++
					if incrs[k].Val() != n || gets[k].Val() != fmt.Sprintf("%d-%d", j, k) {
						fail(fmt.Errorf("client %d: reply out of order: INCR %d want %d, GET %q", i, incrs[k].Val(), n, gets[k].Val()))
						return
					}
				}
				ok.Add(1)
			}
		}()
	}
	for i := range 8 {
		conn, err := net.Dial("tcp", r.addr("mc"))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			br := bufio.NewReader(conn)
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				var req strings.Builder
				for k := range 8 {
					v := fmt.Sprintf("%d-%d-%d", i, j, k)
					fmt.Fprintf(&req, "set mc:%d:%d 0 0 %d\r\n%s\r\nget mc:%d:%d\r\n", i, k, len(v), v, i, k)
				}
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Write([]byte(req.String())); err != nil {
					fail(err)
					return
				}
				for k := range 8 {
					v := fmt.Sprintf("%d-%d-%d", i, j, k)
					want := []string{"STORED", fmt.Sprintf("VALUE mc:%d:%d 0 %d", i, k, len(v)), v, "END"}
					for _, w := range want {
						line, err := br.ReadString('\n')
						if err != nil {
							fail(fmt.Errorf("memcached client %d: %w", i, err))
							return
						}
						if strings.TrimSuffix(line, "\r\n") != w {
							fail(fmt.Errorf("memcached client %d: got %q, want %q", i, line, w))
							return
						}
					}
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	// (go-redis may dial more than once while it starts: count from here.)
	base := dials.Load()
	for round := range 10 {
		// Changes that move no key: the INCR counters stay where they are.
		// (Timeouts of seconds: a loaded test machine is slow, not the point.)
		r.write(t, hoConf{timeout: fmt.Sprintf("%ds", 5+round%3)})
		r.reload(t)
		time.Sleep(100 * time.Millisecond)
	}
	r.upgrade(t)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		var msgs []string
		errs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Errorf("%d clients failed: %v", failed.Load(), msgs)
	}
	if n := dials.Load(); n != base {
		t.Errorf("go-redis reconnected: %d dials after the first %d", n-base, base)
	}
	if strings.Contains(r.proxy.Output(), "some were closed") {
		t.Error("clients were closed instead of handed over")
	}
	if ok.Load() < 100 {
		t.Errorf("only %d pipelines answered", ok.Load())
	}
	t.Logf("%d pipelines of 8 answered in order through 10 reloads and an upgrade; no reconnect", ok.Load())
}

// TestHandOverClosesClientsOfRemovedAndMovedPools: a reload that removes
// a pool, and one that moves a pool's listen address, close those pools'
// clients cleanly (EOF, not a reset); the other pools' clients are handed
// over.
func TestHandOverClosesClientsOfRemovedAndMovedPools(t *testing.T) {
	r := newHoRig(t)
	r.start(t, hoConf{})
	var mains, auths, mcs []*respConn
	for range 10 {
		mains = append(mains, dialResp(t, r.addr("main")))
		a := dialResp(t, r.addr("auth"))
		if got, err := a.do("AUTH", "hunter2"); err != nil || got != "+OK" {
			t.Fatalf("AUTH: %q %v", got, err)
		}
		auths = append(auths, a)
		m := dialResp(t, r.addr("mc"))
		m.c.Write([]byte("version\r\n"))
		if line, err := m.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "VERSION") {
			t.Fatalf("memcached version: %q %v", line, err)
		}
		mcs = append(mcs, m)
	}
	for _, c := range mains {
		if got, err := c.do("PING"); err != nil || got != "+PONG" {
			t.Fatalf("PING: %q %v", got, err)
		}
	}
	// "auth" removed, "mc" moved to another port.
	moved := harness.LowPort(t, 0)
	r.write(t, hoConf{pools: []string{"main", "mc"}, listen: map[string]int{"mc": moved}})
	r.reload(t)
	harness.WaitPort(t, "tcp", fmt.Sprintf("127.0.0.1:%d", moved), 5*time.Second)
	for name, cs := range map[string][]*respConn{"auth": auths, "mc": mcs} {
		for i, c := range cs {
			c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Fatalf("%s client %d: read %v %v, want a clean EOF", name, i, n, err)
			}
		}
	}
	for i, c := range mains {
		if got, err := c.do("PING"); err != nil || got != "+PONG" {
			t.Fatalf("main client %d after the reload: %q %v", i, got, err)
		}
	}
	// The master logs the hand-over once the old workers are reaped.
	for _, want := range []string{"refused_pool_gone=10", "refused_listen_moved=10"} {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(r.proxy.Output(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("the master's log lacks %s", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestHandOverLeaksNoDescriptor: after 50 reloads that hand 20 idle
// clients over each time, the old workers are gone and neither the
// master nor the workers hold one descriptor more than after the first.
func TestHandOverLeaksNoDescriptor(t *testing.T) {
	r := newHoRig(t)
	r.start(t, hoConf{})
	var clients []*respConn
	for i := range 20 {
		pool := "main"
		if i%2 == 1 {
			pool = "mc"
		}
		clients = append(clients, dialResp(t, r.addr(pool)))
	}
	ping := func(round int) {
		t.Helper()
		for i, c := range clients {
			c.c.SetDeadline(time.Now().Add(5 * time.Second))
			if i%2 == 1 {
				c.c.Write([]byte("version\r\n"))
				if line, err := c.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "VERSION") {
					t.Fatalf("round %d: memcached client %d: %q %v", round, i, line, err)
				}
				continue
			}
			if got, err := c.do("PING"); err != nil || got != "+PONG" {
				t.Fatalf("round %d: client %d: %q %v", round, i, got, err)
			}
		}
	}
	fds := func() (master, workers int) {
		count := func(pid int) int {
			ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			if err != nil {
				t.Fatal(err)
			}
			return len(ents)
		}
		for _, w := range children(r.master) {
			workers += count(w)
		}
		return count(r.master), workers
	}
	ping(0)
	r.reload(t)
	ping(1)
	time.Sleep(200 * time.Millisecond)
	m1, w1 := fds()
	for round := 2; round <= 50; round++ {
		r.write(t, hoConf{timeout: fmt.Sprintf("%dms", 1000+round)})
		r.reload(t)
	}
	ping(50)
	time.Sleep(200 * time.Millisecond)
	m50, w50 := fds()
	// The new workers share the clients evenly.
	ws := children(r.master)
	if a, b := socketCount(ws[0]), socketCount(ws[1]); a-b > 4 || b-a > 4 {
		t.Errorf("the workers hold %d and %d sockets for 20 clients", a, b)
	}
	if m50 != m1 || w50 != w1 {
		t.Errorf("descriptors after 50 reloads: master %d (was %d), workers %d (was %d)", m50, m1, w50, w1)
	}
	t.Logf("descriptors after 1 and 50 reloads: master %d/%d, workers %d/%d", m1, m50, w1, w50)
}

// TestHandOverNewPasswordAuthenticatesAgain: a client authenticated
// against the old redis_auth is handed over unauthenticated when a reload
// changes the password, and one that never authenticated stays so.
func TestHandOverNewPasswordAuthenticatesAgain(t *testing.T) {
	r := newHoRig(t)
	r.start(t, hoConf{})
	authed := dialResp(t, r.addr("auth"))
	if got, err := authed.do("AUTH", "hunter2"); err != nil || got != "+OK" {
		t.Fatalf("AUTH: %q %v", got, err)
	}
	if got, err := authed.do("SET", "k", "v"); err != nil || got != "+OK" {
		t.Fatalf("SET: %q %v", got, err)
	}
	stranger := dialResp(t, r.addr("auth"))
	if got, _ := stranger.do("GET", "k"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("GET before AUTH: %q", got)
	}
	// The same password again: still authenticated.
	r.write(t, hoConf{timeout: "3s"})
	r.reload(t)
	if got, err := authed.do("GET", "k"); err != nil || got != "$v" {
		t.Fatalf("GET after a reload keeping the password: %q %v", got, err)
	}
	// A new password (the backend's too).
	be := redis.NewClient(&redis.Options{Addr: r.authRedis.Addr, Password: "hunter2"})
	defer be.Close()
	if err := be.ConfigSet(ctx, "requirepass", "swordfish").Err(); err != nil {
		t.Fatal(err)
	}
	r.write(t, hoConf{auth: "swordfish"})
	r.reload(t)
	for name, c := range map[string]*respConn{"authenticated": authed, "stranger": stranger} {
		if got, err := c.do("GET", "k"); err != nil || !strings.HasPrefix(got, "-NOAUTH") {
			t.Fatalf("%s client after the password changed: %q %v, want NOAUTH on the same socket", name, got, err)
		}
	}
	if got, err := authed.do("AUTH", "swordfish"); err != nil || got != "+OK" {
		t.Fatalf("AUTH with the new password: %q %v", got, err)
	}
	if got, err := authed.do("GET", "k"); err != nil || got != "$v" {
		t.Fatalf("GET after AUTH: %q %v", got, err)
	}
}

// TestHandOverHoldsClientConnections: a reload that lowers
// client_connections below the clients connected hands over what fits and
// closes the rest cleanly; the limit holds across the generations.
func TestHandOverHoldsClientConnections(t *testing.T) {
	r := newHoRig(t)
	r.start(t, hoConf{})
	var cs []*respConn
	for range 12 {
		c := dialResp(t, r.addr("main"))
		if got, err := c.do("PING"); err != nil || got != "+PONG" {
			t.Fatalf("PING: %q %v", got, err)
		}
		cs = append(cs, c)
	}
	r.write(t, hoConf{main: "client_connections = 5"})
	r.reload(t)
	answered, closed := 0, 0
	for i, c := range cs {
		got, err := c.do("PING")
		switch {
		case err == nil && got == "+PONG":
			answered++
		case errors.Is(err, io.EOF):
			closed++
		default:
			t.Fatalf("client %d: %q %v, want PONG or a clean EOF", i, got, err)
		}
	}
	if answered != 5 || closed != 7 {
		t.Errorf("%d clients answered and %d closed, want 5 and 7", answered, closed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.proxy.Output(), "refused_client_connections=7") {
		if time.Now().After(deadline) {
			t.Fatal("the master's log lacks refused_client_connections=7")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
