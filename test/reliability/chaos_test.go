package reliability

import (
	"context"
	"fmt"
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

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// chaos is the real binary (two workers) with a Redis pool over two
// redis-servers and a memcached pool over two memcacheds, under a mixed
// write-then-read load whose every acknowledged write is remembered.
type chaos struct {
	t       *testing.T
	dir     string
	conf    string
	pidFile string
	proc    *harness.Proc
	redisL  string
	mcL     string
	redis   []*backendProc
	mc      []*backendProc
	owner   map[string]func(key string) int // pool -> key owner
	// restarted[pool][i]: backend i lost its data at some point.
	restarted map[string][]bool
	mu        sync.Mutex

	ok, failed, wrong atomic.Int64
	errs              sync.Map
	wrongs            []string
	stop              chan struct{}
	wg                sync.WaitGroup
	acked             []map[string]string // per load goroutine: key -> last acknowledged value
	uncertain         []map[string]bool   // a write failed: outcome unknown

	// The soak's Sentinel pool "s" (topology_test.go), when set: its
	// writers come after the redis and memcached ones; a write
	// acknowledged near a failover may be lost by redis (asynchronous
	// replication) and is not verified.
	sent      *sentinelRig
	sentL     string
	sentN     int
	failovers []time.Time
	ackedAt   []map[string]time.Time

	// The soak's cluster pool "c": its writers come last; its failovers
	// (CLUSTER FAILOVER) and reshards lose nothing, so every write is
	// verified.
	clus  *clusterRig
	clusL string
	clusN int

	// The soak's TLS pool "t" (soak_tls_test.go): its writers come after
	// the cluster's and connect over TLS; the rig counts their requests
	// apart too.
	tlsr *tlsRig
	tlsN int
	// lastFault: when the last reload, worker kill or backend restart
	// ended, unix nanos (a restart may run beside a reload).
	lastFault atomic.Int64
}

// backendProc is a redis-server or memcached that can be killed and
// restarted on the same port.
type backendProc struct {
	kind string
	port int
	proc *harness.Proc
	dir  string
	tls  []string // redis-server: TLS only, with these options
}

func (b *backendProc) start(t testing.TB) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", b.port)
	if b.kind == "redis" {
		port := []string{"--port", strconv.Itoa(b.port)}
		if b.tls != nil {
			port = append([]string{"--port", "0", "--tls-port", strconv.Itoa(b.port)}, b.tls...)
		}
		b.proc = harness.Start(t, "redis-server", append(port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", b.dir)...)
	} else {
		args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(b.port), "-U", "0"}
		if os.Getuid() == 0 {
			args = append(args, "-u", "root")
		}
		b.proc = harness.Start(t, "memcached", args...)
	}
	harness.WaitPort(t, "tcp", addr, 10*time.Second)
}

func (b *backendProc) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

func newChaos(t *testing.T, workers int) *chaos {
	return newChaosWith(t, workers, 0, 0, 0)
}

// newChaosWith adds the Sentinel pool "s" for sentinelWriters writers,
// the cluster pool "c" for clusterWriters and the TLS pool "t" for
// tlsWriters, when not 0.
func newChaosWith(t *testing.T, workers, sentinelWriters, clusterWriters, tlsWriters int) *chaos {
	harness.Need(t, "redis-server", "memcached")
	// Masters started by an upgrade are re-parented to this process.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	ch := &chaos{t: t, dir: t.TempDir(), stop: make(chan struct{}),
		restarted: map[string][]bool{"r": make([]bool, 2), "m": make([]bool, 2), "t": make([]bool, 2)}}
	for i := 0; i < 2; i++ {
		r := &backendProc{kind: "redis", port: harness.FreePort(t), dir: t.TempDir()}
		r.start(t)
		ch.redis = append(ch.redis, r)
		m := &backendProc{kind: "memcache", port: harness.FreePort(t)}
		m.start(t)
		ch.mc = append(ch.mc, m)
	}
	ch.redisL = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	ch.mcL = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	if sentinelWriters > 0 {
		ch.sent = startSentinelRig(t, "soak")
		ch.sentL = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
		ch.sentN = sentinelWriters
	}
	if clusterWriters > 0 {
		ch.clus = startClusterRig(t)
		ch.clusL = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
		ch.clusN = clusterWriters
	}
	if tlsWriters > 0 {
		ch.tlsr = startTLSRig(t)
		ch.tlsN = tlsWriters
	}
	ch.conf = filepath.Join(ch.dir, "nuthatch.hcl")
	ch.pidFile = filepath.Join(ch.dir, "nuthatch.pid")
	ch.writeConf(workers, "2s")
	cfg, err := config.Load(ch.conf)
	if err != nil {
		t.Fatal(err)
	}
	ch.owner = map[string]func(string) int{}
	for _, p := range cfg.Pools {
		if p.Name != "r" && p.Name != "m" && p.Name != "t" {
			continue // placement by Sentinel's names or cluster slots
		}
		var nodes []hashkit.Node
		for _, s := range p.Servers {
			nodes = append(nodes, hashkit.Node{Name: s.PlacementName(), Weight: s.Weight})
		}
		ring, err := hashkit.Build(p.Distribution, nodes, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := hashkit.Hash(p.Hash)
		ch.owner[p.Name] = func(k string) int { return ring.Pick(h([]byte(k))) }
	}
	ch.proc = harness.Start(t, harness.Binary(t), "-c", ch.conf)
	t.Cleanup(ch.killAll)
	harness.WaitPort(t, "tcp", ch.redisL, 10*time.Second)
	harness.WaitPort(t, "tcp", ch.mcL, 10*time.Second)
	if ch.sent != nil {
		harness.WaitPort(t, "tcp", ch.sentL, 10*time.Second)
	}
	if ch.clus != nil {
		harness.WaitPort(t, "tcp", ch.clusL, 10*time.Second)
	}
	if ch.tlsr != nil {
		harness.WaitPort(t, "tcp", ch.tlsr.plainL, 10*time.Second)
		harness.WaitPort(t, "tcp", ch.tlsr.tlsL, 10*time.Second)
	}
	ch.waitWorkers(workers)
	return ch
}

// sentinelFailover fails the Sentinel shard over, under the load.
func (ch *chaos) sentinelFailover() {
	ch.mu.Lock()
	ch.failovers = append(ch.failovers, time.Now())
	ch.mu.Unlock()
	ch.sent.failover(ch.t)
}

// writeConf writes the configuration; timeout varies so that a reload
// really changes something.
func (ch *chaos) writeConf(workers int, timeout string) {
	var b strings.Builder
	fmt.Fprintf(&b, "worker_processes = %d\nworker_shutdown_timeout = \"5s\"\npid_file = %q\nstats {\n  listen = \"\"\n}\n", workers, ch.pidFile)
	for _, p := range []struct {
		name, listen, proto string
		be                  []*backendProc
	}{{"r", ch.redisL, "redis", ch.redis}, {"m", ch.mcL, "memcache", ch.mc}} {
		fmt.Fprintf(&b, "pool %q {\n  listen = %q\n  protocol = %q\n  timeout = %q\n", p.name, p.listen, p.proto, timeout)
		for _, be := range p.be {
			fmt.Fprintf(&b, "  server %q {}\n", be.addr())
		}
		b.WriteString("}\n")
	}
	if ch.sent != nil {
		b.WriteString(ch.sent.pool("s", ch.sentL, timeout))
	}
	if ch.clus != nil {
		b.WriteString(ch.clus.pool("c", ch.clusL, timeout))
	}
	if ch.tlsr != nil {
		b.WriteString(ch.tlsr.pool("t", timeout))
	}
	if err := os.WriteFile(ch.conf, []byte(b.String()), 0o644); err != nil {
		ch.t.Fatal(err)
	}
}

// master is the current master's pid (it changes with an upgrade).
func (ch *chaos) master() int {
	if b, err := os.ReadFile(ch.pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
			return pid
		}
	}
	return ch.proc.Cmd.Process.Pid
}

func (ch *chaos) waitWorkers(n int) []int {
	deadline := time.Now().Add(15 * time.Second)
	for {
		w := children(ch.master())
		if len(w) == n {
			return w
		}
		if time.Now().After(deadline) {
			ch.t.Fatalf("master %d has workers %v, want %d", ch.master(), w, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ch *chaos) killAll() {
	if pid := ch.master(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	syscall.Kill(-ch.proc.Cmd.Process.Pid, syscall.SIGKILL)
	for {
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}

// startLoad runs n Redis and n memcached writers; each owns its keys,
// writes a new value and reads it back.
// Half of the Redis writers speak RESP3 (HELLO 3), half RESP2.
func (ch *chaos) startLoad(n int) {
	total := 2*n + ch.sentN + ch.clusN + ch.tlsN
	for i := 0; i < total; i++ {
		ch.acked = append(ch.acked, map[string]string{})
		ch.uncertain = append(ch.uncertain, map[string]bool{})
		ch.ackedAt = append(ch.ackedAt, map[string]time.Time{})
	}
	opts := func(addr string, proto int) *redis.Options {
		return &redis.Options{Addr: addr, PoolSize: n, MaxRetries: -1, Protocol: proto,
			DialTimeout: time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second}
	}
	// TLS: half RESP2, half RESP3, resuming their sessions on reconnect.
	var tc, tc3 *redis.Client
	if ch.tlsr != nil {
		o2, o3 := opts(ch.tlsr.tlsL, 2), opts(ch.tlsr.tlsL, 3)
		o2.TLSConfig, o3.TLSConfig = ch.tlsr.clientConfig(true), ch.tlsr.clientConfig(true)
		o2.DialTimeout, o3.DialTimeout = 3*time.Second, 3*time.Second
		tc, tc3 = redis.NewClient(o2), redis.NewClient(o3)
	}
	rc := redis.NewClient(opts(ch.redisL, 2))
	rc3 := redis.NewClient(opts(ch.redisL, 3))
	var sc, cc *redis.Client
	if ch.sent != nil {
		sc = redis.NewClient(opts(ch.sentL, 2))
	}
	if ch.clus != nil {
		cc = redis.NewClient(opts(ch.clusL, 3))
	}
	mc := memcache.New(ch.mcL)
	mc.Timeout = 3 * time.Second
	mc.MaxIdleConns = n
	for i := 0; i < total; i++ {
		ch.wg.Add(1)
		go func(g int) {
			defer ch.wg.Done()
			acked, unc := ch.acked[g], ch.uncertain[g]
			for j := 0; ; j++ {
				select {
				case <-ch.stop:
					return
				default:
				}
				key := fmt.Sprintf("chaos:%d:%d", g, j%200)
				val := fmt.Sprintf("%d-%d", g, j)
				var werr, rerr error
				var got string
				if c := ch.redisFor(g, n, rc, rc3, sc, cc, tc, tc3); c != nil {
					werr = c.Set(context.Background(), key, val, 0).Err()
					if werr == nil {
						got, rerr = c.Get(context.Background(), key).Result()
					}
				} else {
					werr = mc.Set(&memcache.Item{Key: key, Value: []byte(val)})
					if werr == nil {
						var it *memcache.Item
						it, rerr = mc.Get(key)
						if rerr == nil {
							got = string(it.Value)
						}
					}
				}
				pool := ch.poolOf(g, n)
				now := time.Now()
				// The TLS writers' requests are counted apart too.
				var tlsr *tlsRig
				if pool == "t" {
					tlsr = ch.tlsr
				}
				switch {
				case werr != nil:
					ch.fail(werr)
					tlsr.fail(werr)
					unc[key] = true
				case rerr != nil:
					acked[key], unc[key] = val, false
					ch.ackedAt[g][key] = now
					ch.fail(rerr)
					tlsr.fail(rerr)
				case got != val:
					acked[key], unc[key] = val, false
					ch.ackedAt[g][key] = now
					// A concurrent restart of the owner, or a failover,
					// may lose the write.
					if !ch.mayHaveLost(pool, key, now) {
						ch.wrong.Add(1)
						tlsr.addWrong()
						ch.mu.Lock()
						ch.wrongs = append(ch.wrongs, fmt.Sprintf("%s: wrote %q, read %q", key, val, got))
						ch.mu.Unlock()
					}
				default:
					acked[key], unc[key] = val, false
					ch.ackedAt[g][key] = now
					ch.ok.Add(1)
					tlsr.addOK()
				}
			}
		}(i)
	}
	ch.t.Cleanup(func() {
		rc.Close()
		rc3.Close()
		if sc != nil {
			sc.Close()
		}
		if cc != nil {
			cc.Close()
		}
		if tc != nil {
			tc.Close()
			tc3.Close()
		}
	})
}

// poolOf is writer g's pool: n redis, n memcached, then the sentinel
// pool's writers, the cluster pool's and the TLS pool's.
func (ch *chaos) poolOf(g, n int) string {
	switch {
	case g < n:
		return "r"
	case g < 2*n:
		return "m"
	case g < 2*n+ch.sentN:
		return "s"
	case g < 2*n+ch.sentN+ch.clusN:
		return "c"
	}
	return "t"
}

func (ch *chaos) redisFor(g, n int, rc, rc3, sc, cc, tc, tc3 *redis.Client) *redis.Client {
	switch ch.poolOf(g, n) {
	case "c":
		return cc
	case "t":
		if g%2 == 1 {
			return tc3
		}
		return tc
	case "r":
		if g%2 == 1 {
			return rc3
		}
		return rc
	case "s":
		return sc
	}
	return nil
}

// failoverWindow: a write acknowledged this long before a failover or
// after it may be lost (redis replicates asynchronously; the old master
// takes writes until the proxy learns of the new one and until Sentinel
// demotes it).
const failoverBefore, failoverAfter = 2 * time.Second, 20 * time.Second

// mayHaveLost: the backend may have lost key's write acknowledged at.
func (ch *chaos) mayHaveLost(pool, key string, at time.Time) bool {
	switch pool {
	case "c":
		return false
	case "r", "m", "t":
		return ch.wasRestarted(pool, ch.owner[pool](key))
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, f := range ch.failovers {
		if at.After(f.Add(-failoverBefore)) && at.Before(f.Add(failoverAfter)) {
			return true
		}
	}
	return false
}

func (ch *chaos) fail(err error) {
	ch.failed.Add(1)
	ch.errs.Store(portRE.ReplaceAllString(err.Error(), ":N"), true)
}

var portRE = regexp.MustCompile(`:\d+`)

func (ch *chaos) wasRestarted(pool string, i int) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.restarted[pool][i]
}

func (ch *chaos) stopLoad() {
	close(ch.stop)
	ch.wg.Wait()
}

// verify reads back every acknowledged write to a backend that never lost
// its data.
func (ch *chaos) verify(n int) (checked int) {
	t := ch.t
	rc := redis.NewClient(&redis.Options{Addr: ch.redisL})
	defer rc.Close()
	var sc, cc *redis.Client
	if ch.sent != nil {
		sc = redis.NewClient(&redis.Options{Addr: ch.sentL})
		defer sc.Close()
	}
	if ch.clus != nil {
		cc = redis.NewClient(&redis.Options{Addr: ch.clusL})
		defer cc.Close()
	}
	// The TLS writers' keys are read over TLS, and over the pool's
	// plaintext listener, which serves the same keys.
	var tc, tp *redis.Client
	if ch.tlsr != nil {
		tc = redis.NewClient(&redis.Options{Addr: ch.tlsr.tlsL, TLSConfig: ch.tlsr.clientConfig(false)})
		defer tc.Close()
		tp = redis.NewClient(&redis.Options{Addr: ch.tlsr.plainL})
		defer tp.Close()
	}
	mc := memcache.New(ch.mcL)
	lost := 0
	for g, acked := range ch.acked {
		pool := ch.poolOf(g, n)
		for key, val := range acked {
			if ch.uncertain[g][key] || ch.mayHaveLost(pool, key, ch.ackedAt[g][key]) {
				continue
			}
			var got string
			var err error
			if pool == "r" {
				got, err = rc.Get(context.Background(), key).Result()
			} else if pool == "s" {
				got, err = sc.Get(context.Background(), key).Result()
			} else if pool == "c" {
				got, err = cc.Get(context.Background(), key).Result()
			} else if pool == "t" {
				got, err = tc.Get(context.Background(), key).Result()
				if plain, perr := tp.Get(context.Background(), key).Result(); err == nil && (perr != nil || plain != got) {
					got, err = plain, fmt.Errorf("over TLS %q, over plaintext %q (%v)", got, plain, perr)
				}
				ch.tlsr.verified++
			} else {
				var it *memcache.Item
				if it, err = mc.Get(key); err == nil {
					got = string(it.Value)
				}
			}
			checked++
			if err != nil || got != val {
				lost++
				if lost <= 5 {
					t.Errorf("acknowledged write lost: %s = %q, read %q (%v)", key, val, got, err)
				}
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, checked)
	}
	return checked
}

// restartBackend kills a backend with SIGKILL and starts it again on the
// same port (empty: no persistence).
func (ch *chaos) restartBackend(pool string, i int) {
	be := ch.redis[i]
	switch pool {
	case "m":
		be = ch.mc[i]
	case "t":
		be = ch.tlsr.backends[i]
	}
	ch.mu.Lock()
	ch.restarted[pool][i] = true
	ch.mu.Unlock()
	be.proc.Kill()
	time.Sleep(300 * time.Millisecond)
	be.start(ch.t)
	ch.lastFault.Store(time.Now().UnixNano())
}

func (ch *chaos) killWorker(workers int) {
	w := ch.waitWorkers(workers)
	syscall.Kill(w[0], syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := children(ch.master())
		if len(now) == workers && !containsPid(now, w[0]) {
			ch.lastFault.Store(time.Now().UnixNano())
			return
		}
		if time.Now().After(deadline) {
			ch.t.Fatalf("worker %d not replaced: %v", w[0], now)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (ch *chaos) reload(workers int, timeout string) {
	before := ch.waitWorkers(workers)
	ch.writeConf(workers, timeout)
	syscall.Kill(ch.master(), syscall.SIGHUP)
	ch.waitReplaced(before, workers)
	ch.lastFault.Store(time.Now().UnixNano())
}

func (ch *chaos) upgrade(workers int) {
	old := ch.master()
	before := ch.waitWorkers(workers)
	syscall.Kill(old, syscall.SIGUSR2)
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(old, 0) == nil || ch.master() == old {
		var ws syscall.WaitStatus
		syscall.Wait4(old, &ws, syscall.WNOHANG, nil)
		if time.Now().After(deadline) {
			ch.t.Fatalf("upgrade: old master %d still in charge", old)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ch.waitReplaced(before, workers)
}

func (ch *chaos) waitReplaced(before []int, workers int) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := children(ch.master())
		fresh := 0
		for _, p := range now {
			if !containsPid(before, p) {
				fresh++
			}
		}
		if fresh == workers && len(now) == workers {
			return
		}
		if time.Now().After(deadline) {
			ch.t.Fatalf("workers %v not replaced (before %v)", now, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsPid(s []int, p int) bool {
	for _, x := range s {
		if x == p {
			return true
		}
	}
	return false
}

// unexpectedLogs returns error-level or panic lines the faults the test
// caused do not explain.
func (ch *chaos) unexpectedLogs() []string {
	var out []string
	for _, l := range strings.Split(ch.proc.Output(), "\n") {
		low := strings.ToLower(l)
		if !strings.Contains(low, "level=error") && !strings.Contains(low, "panic") && !strings.Contains(low, "level=fatal") {
			continue
		}
		if strings.Contains(l, "worker died, respawning") || strings.Contains(l, "worker keeps dying") {
			continue // the test kills workers
		}
		out = append(out, l)
	}
	return out
}

func (ch *chaos) errSummary() []string {
	var msgs []string
	ch.errs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
	return msgs
}

// Worker SIGKILL, reload and binary upgrade, repeatedly, under mixed load,
// combined with backend kills: no reply is ever wrong, every acknowledged
// write to a backend that kept its data is readable, the service is clean
// once the faults stop, and the master keeps its fds.
func TestProcessFaultsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary and backends under load")
	}
	const workers, writers = 2, 6
	ch := newChaos(t, workers)
	defer func() {
		if t.Failed() {
			t.Logf("nuthatch output:\n%s", ch.proc.Output())
		}
	}()
	baseFds := fdCount(ch.master())
	ch.startLoad(writers)
	time.Sleep(300 * time.Millisecond)
	steps := []struct {
		name string
		do   func()
	}{
		{"kill a worker", func() { ch.killWorker(workers) }},
		{"reload", func() { ch.reload(workers, "3s") }},
		{"restart redis backend 1", func() { ch.restartBackend("r", 1) }},
		{"kill a worker", func() { ch.killWorker(workers) }},
		{"binary upgrade", func() { ch.upgrade(workers) }},
		{"restart memcached backend 1 during a reload", func() {
			go ch.restartBackend("m", 1)
			ch.reload(workers, "2s")
		}},
		{"kill a worker", func() { ch.killWorker(workers) }},
	}
	for _, s := range steps {
		start := time.Now()
		s.do()
		t.Logf("%s: %v", s.name, time.Since(start).Round(time.Millisecond))
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	// A clean window: no fault, no error.
	f0 := ch.failed.Load()
	time.Sleep(time.Second)
	if n := ch.failed.Load() - f0; n > 0 {
		t.Errorf("%d requests failed after the faults stopped", n)
	}
	ch.stopLoad()
	checked := ch.verify(writers)
	t.Logf("%d requests ok, %d failed during faults (%v), %d wrong; %d acknowledged writes verified",
		ch.ok.Load(), ch.failed.Load(), ch.errSummary(), ch.wrong.Load(), checked)
	if ch.wrong.Load() > 0 {
		t.Errorf("%d wrong replies: %v", ch.wrong.Load(), ch.wrongs[:min(5, len(ch.wrongs))])
	}
	if got := fdCount(ch.master()); got != baseFds {
		t.Errorf("master fds %d after the faults, %d before", got, baseFds)
	}
	if l := ch.unexpectedLogs(); len(l) > 0 {
		t.Errorf("unexpected error lines: %q", l)
	}
}
