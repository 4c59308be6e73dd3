package sentinel

import (
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
)

// placer tells which shard the proxy's ring (ketama, fnv1a_64, by server
// name) puts a key on: the same as nutcracker with these names.
func placer(t *testing.T, names ...string) func(key string) string {
	t.Helper()
	h, err := hashkit.Hash("fnv1a_64")
	if err != nil {
		t.Fatal(err)
	}
	var nodes []hashkit.Node
	for _, n := range names {
		nodes = append(nodes, hashkit.Node{Name: n, Weight: 1})
	}
	ring, err := hashkit.Build("ketama", nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	return func(key string) string { return names[ring.Pick(h([]byte(key)))] }
}

// report sums a load's results per shard: errors, and the time from the
// first error to the last.
type shardReport struct {
	ok, failed  int
	first, last time.Time
	errs        map[string]int
}

func summarize(results []result, shardOf func(string) string) map[string]*shardReport {
	out := map[string]*shardReport{}
	for _, r := range results {
		s := shardOf(r.key)
		rep := out[s]
		if rep == nil {
			rep = &shardReport{errs: map[string]int{}}
			out[s] = rep
		}
		if r.err == nil {
			rep.ok++
			continue
		}
		rep.failed++
		rep.errs[r.err.Error()]++
		if rep.first.IsZero() {
			rep.first = r.at
		}
		rep.last = r.at
	}
	return out
}

// lostWrites counts acknowledged SETs of a shard missing from its master.
func lostWrites(t *testing.T, r *rig, results []result, shardOf func(string) string, name string) (acked, lost int) {
	t.Helper()
	var sh *shard
	for _, s := range r.shards {
		if s.name == name {
			sh = s
		}
	}
	return lostOn(t, sh.nodeAt(r.masterOf(t, name)), results, shardOf, name)
}

// lostOn counts acknowledged SETs of a shard missing from node n.
func lostOn(t *testing.T, n *node, results []result, shardOf func(string) string, name string) (acked, lost int) {
	t.Helper()
	c := n.client()
	defer c.Close()
	for _, res := range results {
		if !res.write || res.err != nil || shardOf(res.key) != name {
			continue
		}
		acked++
		if n, err := c.Exists(ctx, res.key).Result(); err != nil || n != 1 {
			lost++
		}
	}
	return acked, lost
}

func cmdCalls(t *testing.T, n *node, cmd string) int {
	t.Helper()
	c := n.client()
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`cmdstat_` + cmd + `:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// A master killed: its shard's requests wait for the new master instead of
// failing (failover ≈ down-after + 1.3 s, within failover_timeout), the
// other shard sees nothing, no key moves, and no acknowledged write is
// lost when the replica was in sync.
func TestSentinelKillMaster(t *testing.T) {
	r := startRig(t, "shard-a", "shard-b")
	addr, px := r.proxy(t, "")
	shardOf := placer(t, "shard-a", "shard-b")
	stop := make(chan struct{})
	wait := load(addr, 16, stop)
	time.Sleep(time.Second)
	r.waitInSync(t, r.shards[0])
	old := r.shards[0].nodeAt(r.masterOf(t, "shard-a"))
	killed := time.Now()
	old.proc.Kill()
	deadline := time.Now().Add(15 * time.Second)
	for r.masterOf(t, "shard-a") == old.addr() {
		if time.Now().After(deadline) {
			t.Fatal("the sentinels did not fail shard-a over in 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	switched := time.Since(killed)
	time.Sleep(2 * time.Second)
	close(stop)
	results := wait()
	rep := summarize(results, shardOf)
	a, b := rep["shard-a"], rep["shard-b"]
	t.Logf("failover after %v; shard-a: %d ok, %d failed %v; shard-b: %d ok, %d failed %v",
		switched.Round(time.Millisecond), a.ok, a.failed, a.errs, b.ok, b.failed, b.errs)
	if b.failed > 0 {
		t.Errorf("shard-b saw %d errors during shard-a's failover: %v", b.failed, b.errs)
	}
	if a.failed > 0 {
		if window := a.last.Sub(killed); window > 3*time.Second {
			t.Errorf("shard-a failed for %v after the kill (down-after + 2 s = 3 s): %v", window, a.errs)
		}
	}
	acked, lost := lostWrites(t, r, results, shardOf, "shard-a")
	t.Logf("shard-a: %d acknowledged writes, %d lost", acked, lost)
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost although the replica was in sync", lost, acked)
	}
	if _, lostB := lostWrites(t, r, results, shardOf, "shard-b"); lostB > 0 {
		t.Errorf("shard-b lost %d writes (a key moved?)", lostB)
	}
	if !strings.Contains(px.Output(), "server master moved") {
		t.Errorf("no switch logged:\n%s", px.Output())
	}
}

// SENTINEL FAILOVER under load: once the sentinels switched, no command
// reaches the old master (which still says it is master for ~10 s).
func TestSentinelManualFailover(t *testing.T) {
	r := startRig(t, "shard-a", "shard-b")
	addr, _ := r.proxy(t, "")
	shardOf := placer(t, "shard-a", "shard-b")
	stop := make(chan struct{})
	wait := load(addr, 16, stop)
	time.Sleep(time.Second)
	r.waitInSync(t, r.shards[0])
	old := r.shards[0].nodeAt(r.masterOf(t, "shard-a"))
	c := redis.NewClient(&redis.Options{Addr: r.sentAddrs[0], Protocol: 2})
	if err := c.Do(ctx, "SENTINEL", "FAILOVER", "shard-a").Err(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for r.masterOf(t, "shard-a") == old.addr() {
		if time.Now().After(deadline) {
			t.Fatal("no switch in 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The proxy hears of it from the event (or at most a refresh later).
	time.Sleep(1200 * time.Millisecond)
	before := cmdCalls(t, old, "set")
	time.Sleep(3 * time.Second)
	after := cmdCalls(t, old, "set")
	close(stop)
	results := wait()
	rep := summarize(results, shardOf)
	acked, lost := lostWrites(t, r, results, shardOf, "shard-a")
	t.Logf("shard-a: %d ok, %d failed %v; %d acknowledged writes, %d lost (written to the old master between its demotion and the switch)",
		rep["shard-a"].ok, rep["shard-a"].failed, rep["shard-a"].errs, acked, lost)
	if after != before {
		t.Errorf("the old master ran %d SETs after the switch", after-before)
	}
	// Writes wait from the failover's start (failover_in_progress), so
	// none is acknowledged by the old master after the replica took over:
	// without the pause, 488 of 17745 were lost here.
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, acked)
	}
	if rep["shard-a"].failed > 0 {
		t.Errorf("shard-a saw errors: %v", rep["shard-a"].errs)
	}
	if rep["shard-b"].failed > 0 {
		t.Errorf("shard-b saw errors: %v", rep["shard-b"].errs)
	}
}

// A master paused (SIGSTOP) for 5 s: the sentinels fail over; nothing is
// answered OK by the old master after the switch, and it receives nothing
// once woken.
func TestSentinelHungMaster(t *testing.T) {
	r := startRig(t, "shard-a")
	addr, _ := r.proxy(t, "")
	stop := make(chan struct{})
	wait := load(addr, 8, stop)
	time.Sleep(time.Second)
	r.waitInSync(t, r.shards[0])
	old := r.shards[0].nodeAt(r.masterOf(t, "shard-a"))
	old.proc.Signal(syscall.SIGSTOP)
	deadline := time.Now().Add(15 * time.Second)
	for r.masterOf(t, "shard-a") == old.addr() {
		if time.Now().After(deadline) {
			old.proc.Signal(syscall.SIGCONT)
			t.Fatal("no switch in 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	old.proc.Signal(syscall.SIGCONT)
	time.Sleep(300 * time.Millisecond)
	before := cmdCalls(t, old, "set")
	time.Sleep(2 * time.Second)
	after := cmdCalls(t, old, "set")
	close(stop)
	results := wait()
	shardOf := func(string) string { return "shard-a" }
	acked, lost := lostWrites(t, r, results, shardOf, "shard-a")
	rep := summarize(results, shardOf)
	t.Logf("%d ok, %d failed %v; %d acknowledged writes, %d lost", rep["shard-a"].ok, rep["shard-a"].failed, rep["shard-a"].errs, acked, lost)
	if after != before {
		t.Errorf("the woken old master ran %d SETs", after-before)
	}
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost: answered OK by the hung master after the switch?", lost)
	}
}

// A master name no sentinel knows: requests fail after failover_timeout
// with the documented error; the log says why.
func TestSentinelUnknownMaster(t *testing.T) {
	r := startRig(t, "shard-a")
	r.shards[0].name = "no-such-master"
	addr, px := r.proxy(t, "")
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer c.Close()
	start := time.Now()
	err := c.Set(ctx, "k", "v", 0).Err()
	if err == nil || err.Error() != "ERR nuthatch: server 'no-such-master' has no master (failover in progress)" {
		t.Fatalf("SET = %v", err)
	}
	if d := time.Since(start); d < 5*time.Second || d > 8*time.Second {
		t.Errorf("failed after %v, failover_timeout is 6s", d)
	}
	if !strings.Contains(px.Output(), "the sentinels do not know this master name") {
		t.Errorf("log does not say the name is unknown:\n%s", px.Output())
	}
}

// failover forces a failover of shard and waits for the sentinels to
// name a new master.
func (r *rig) failover(t *testing.T, sh *shard) string {
	t.Helper()
	r.waitInSync(t, sh)
	old := r.masterOf(t, sh.name)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := redis.NewClient(&redis.Options{Addr: r.sentAddrs[0], Protocol: 2, Password: r.pass})
		err := c.Do(ctx, "SENTINEL", "FAILOVER", sh.name).Err()
		c.Close()
		if err == nil {
			break
		}
		// -INPROG or -NOGOODSLAVE while the last one settles.
		if time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for r.masterOf(t, sh.name) == old {
		if time.Now().After(deadline) {
			t.Fatal("no switch in 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r.masterOf(t, sh.name)
}

// Two failovers in a row, back to the first node, with one sentinel
// down, then a worker killed (its replacement starts with the current
// master, not the file's): no error, no lost write, the proxy follows.
func TestSentinelRepeatedFailovers(t *testing.T) {
	r := startRig(t, "shard-a")
	addr, px := r.proxy(t, "")
	stop := make(chan struct{})
	wait := load(addr, 8, stop)
	time.Sleep(500 * time.Millisecond)
	sh := r.shards[0]
	first := r.masterOf(t, sh.name)
	second := r.failover(t, sh)
	r.sentinels[2].Kill() // two of three remain: still a majority
	time.Sleep(1500 * time.Millisecond)
	if back := r.failover(t, sh); back != first {
		t.Fatalf("second failover went to %s, want %s back", back, first)
	}
	time.Sleep(1500 * time.Millisecond)
	// A worker killed now is replaced with the current address.
	for _, pid := range harnessChildren(px.Cmd.Process.Pid)[:1] {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	results := wait()
	shardOf := func(string) string { return "shard-a" }
	rep := summarize(results, shardOf)
	acked, lost := lostWrites(t, r, results, shardOf, "shard-a")
	t.Logf("%s -> %s -> %s: %d ok, %d failed %v; %d acknowledged writes, %d lost",
		first, second, first, rep["shard-a"].ok, rep["shard-a"].failed, rep["shard-a"].errs, acked, lost)
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost", lost)
	}
	// The killed worker's clients see their connection drop (go-redis
	// reports it as an error); nothing else may fail.
	for e, n := range rep["shard-a"].errs {
		if !strings.Contains(e, "EOF") && !strings.Contains(e, "connection reset") && !strings.Contains(e, "broken pipe") {
			t.Errorf("%d × %s", n, e)
		}
	}
	if n := strings.Count(px.Output(), "server master moved"); n < 4 {
		t.Errorf("%d switches logged by the workers, want 2 per worker", n)
	}
}

// Sentinels with requirepass: the block's password authenticates.
func TestSentinelPassword(t *testing.T) {
	r := startRigAuth(t, "s3nt", "shard-a")
	// Without the password the proxy cannot learn the master.
	addr, px := r.proxy(t, "")
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	if err := c.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "has no master") {
		t.Fatalf("SET without the sentinels' password: %v", err)
	}
	c.Close()
	if !strings.Contains(px.Output(), "the sentinels refuse the proxy: NOAUTH") {
		t.Errorf("log does not say why:\n%s", px.Output())
	}
	if strings.Contains(px.Output(), "s3nt") {
		t.Errorf("the password is in the log")
	}
	addr2, px2 := r.proxyWith(t, `    password = "s3nt"`)
	c2 := redis.NewClient(&redis.Options{Addr: addr2, MaxRetries: -1})
	defer c2.Close()
	if err := c2.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET with the password: %v", err)
	}
	if strings.Contains(px2.Output(), "s3nt") {
		t.Errorf("the password is in the log")
	}
}

// The stats port shows a Sentinel server's master, its switches and
// when the last one was, and the pool's sentinels reachable.
func TestSentinelStats(t *testing.T) {
	r := startRig(t, "shard-a")
	statsListen = fmt.Sprintf("127.0.0.1:%d", lowPort(t))
	defer func() { statsListen = "" }()
	addr, _ := r.proxy(t, "")
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		conn, err := net.DialTimeout("tcp", statsListen, time.Second)
		if err != nil {
			return ""
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(conn)
		return string(b)
	}
	waitStats := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s := read()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("stats never showed %s:\n%s", what, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first := r.masterOf(t, "shard-a")
	waitStats("the master and 3 sentinels", func(s string) bool {
		return strings.Contains(s, `"master":"`+first+`"`) && strings.Contains(s, `"sentinels_reachable":3`)
	})
	r.sentinels[2].Kill()
	waitStats("2 sentinels reachable", func(s string) bool { return strings.Contains(s, `"sentinels_reachable":2`) })
	second := r.failover(t, r.shards[0])
	s := waitStats("the new master", func(s string) bool { return strings.Contains(s, `"master":"`+second+`"`) })
	if !strings.Contains(s, `"master_switches":1`) || strings.Contains(s, `"master_switched_at":0`) {
		t.Errorf("switch not counted or not dated:\n%s", s)
	}
}
