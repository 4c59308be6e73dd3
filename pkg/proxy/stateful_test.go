package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// redisRig is an in-process proxy over real redis-servers.
type redisRig struct {
	px       *Proxy
	addr     string
	backends []*harness.Proc
}

func startRedisRig(t *testing.T, n int, attrs string) *redisRig {
	t.Helper()
	harness.Need(t, "redis-server")
	rg := &redisRig{}
	var b strings.Builder
	fmt.Fprintf(&b, "pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n  hash_tag = \"{}\"\n  timeout = \"1s\"\n%s\n", attrs)
	for i := 0; i < n; i++ {
		be := harness.Redis(t)
		rg.backends = append(rg.backends, be)
		fmt.Fprintf(&b, "  server \"s%d\" { address = %q }\n", i, be.Addr)
	}
	b.WriteString("}\n")
	rg.px, rg.addr = serveHCL(t, b.String())
	return rg
}

// tagOn returns a hash tag the pool places on server i.
func (rg *redisRig) tagOn(t *testing.T, i int) string {
	t.Helper()
	var tag string
	rg.px.lp.do(func() {
		p := rg.px.order[0]
		for n := 0; n < 1000; n++ {
			tg := fmt.Sprintf("{t%d}", n)
			if p.serverFor([]byte(tg)).idx == i {
				tag = tg
				return
			}
		}
	})
	return tag
}

// send writes a request without reading; read reads one reply.
func (rc *respClient) send(args ...string) {
	rc.t.Helper()
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.c.Write(resp.AppendCommand(nil, bs)); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *respClient) read() string {
	rc.t.Helper()
	out, err := rc.tryRead(10 * time.Second)
	if err != nil {
		rc.t.Fatal(err)
	}
	return out
}

func (rc *respClient) tryRead(d time.Duration) (string, error) {
	rc.c.SetReadDeadline(time.Now().Add(d))
	rd := make([]byte, 4096)
	for {
		if n, _, err := resp.ReplyLen(rc.buf, resp.DefaultLimits()); err != nil {
			return "", err
		} else if n > 0 {
			out := string(rc.buf[:n])
			rc.buf = rc.buf[n:]
			return out, nil
		}
		n, err := rc.c.Read(rd)
		if err != nil {
			return "", err
		}
		rc.buf = append(rc.buf, rd[:n]...)
	}
}

// txnStep is one request of a transaction script, by client A or B.
type txnStep struct {
	b    bool
	args []string
}

func txnScript(tag string) []txnStep {
	k := func(s string) string { return tag + s }
	a := func(args ...string) txnStep { return txnStep{args: args} }
	b := func(args ...string) txnStep { return txnStep{b: true, args: args} }
	return []txnStep{
		a("EXEC"), a("DISCARD"), a("UNWATCH"),
		// Success.
		a("MULTI"), a("SET", k("a"), "1"), a("INCR", k("a")), a("GET", k("a")), a("HSET", k("h"), "f", "v"), a("HGETALL", k("h")), a("EXEC"),
		// Keyless first, then keyed.
		a("MULTI"), a("PING"), a("ECHO", "hi"), a("SET", k("b"), "2"), a("PING", "x"), a("EXEC"),
		// Only keyless.
		a("MULTI"), a("PING"), a("EXEC"),
		a("MULTI"), a("EXEC"),
		// DISCARD.
		a("MULTI"), a("SET", k("a"), "discarded"), a("DISCARD"), a("GET", k("a")),
		a("MULTI"), a("DISCARD"),
		// Nested MULTI and WATCH inside MULTI do not abort.
		a("MULTI"), a("MULTI"), a("WATCH", k("a")), a("INCR", k("a")), a("EXEC"),
		// Errors at queue time abort.
		a("MULTI"), a("SET", k("a")), a("INCR", k("a")), a("EXEC"), a("GET", k("a")),
		a("MULTI"), a("NOSUCHCOMMAND", k("a")), a("EXEC"),
		// An error at run time does not.
		a("MULTI"), a("SET", k("s"), "x"), a("INCR", k("s")), a("GET", k("s")), a("EXEC"),
		// WATCH without conflict.
		a("WATCH", k("a"), k("b")), a("MULTI"), a("INCR", k("a")), a("EXEC"),
		// WATCH conflict from another client.
		a("WATCH", k("a")), b("SET", k("a"), "100"), a("MULTI"), a("INCR", k("a")), a("EXEC"), a("GET", k("a")),
		// UNWATCH clears it.
		a("WATCH", k("a")), b("SET", k("a"), "200"), a("UNWATCH"), a("MULTI"), a("INCR", k("a")), a("EXEC"),
		// DISCARD unwatches.
		a("WATCH", k("a")), a("MULTI"), a("DISCARD"), b("SET", k("a"), "300"), a("MULTI"), a("INCR", k("a")), a("EXEC"),
		// A blocking command inside MULTI does not block.
		a("MULTI"), a("BLPOP", k("nolist"), "0"), a("RPUSH", k("l"), "x"), a("BRPOP", k("l"), "0"), a("EXEC"),
		// EXEC after the abort is EXEC without MULTI.
		a("EXEC"),
		a("MULTI"), a("GET", k("a")), a("UNWATCH"), a("EXEC"),
	}
}

func runTxnScript(t *testing.T, addrA, addrB string, hello bool, steps []txnStep) []string {
	ca, cb := dialResp(t, addrA), dialResp(t, addrB)
	if hello {
		ca.do("HELLO", "3")
		cb.do("HELLO", "3")
	}
	var out []string
	for _, st := range steps {
		c := ca
		if st.b {
			c = cb
		}
		out = append(out, c.do(st.args...))
	}
	return out
}

// Transactions whose keys share a hash tag get redis-server's replies,
// byte for byte, in RESP2 and RESP3.
func TestTransactionsDifferential(t *testing.T) {
	rg := startRedisRig(t, 2, "")
	direct := harness.Redis(t)
	for _, proto := range []int{2, 3} {
		for srv := 0; srv < 2; srv++ {
			tag := rg.tagOn(t, srv)
			steps := txnScript(tag + fmt.Sprint(proto))
			want := runTxnScript(t, direct.Addr, direct.Addr, proto == 3, steps)
			got := runTxnScript(t, rg.addr, rg.addr, proto == 3, steps)
			for i := range steps {
				if want[i] != got[i] {
					t.Errorf("RESP%d server %d step %d %q: redis %q, nuthatch %q", proto, srv, i, steps[i].args, want[i], got[i])
				}
			}
		}
	}
}

// A command whose key maps to another server than the transaction's fails
// at queue time and aborts the transaction; the link is given back clean.
func TestTransactionCrossServer(t *testing.T) {
	rg := startRedisRig(t, 2, "")
	t0, t1 := rg.tagOn(t, 0), rg.tagOn(t, 1)
	c := dialResp(t, rg.addr)
	steps := [][]string{
		{"MULTI"}, {"SET", t0 + "a", "1"}, {"SET", t1 + "b", "1"}, {"EXEC"}, {"GET", t0 + "a"},
		{"WATCH", t0 + "a"}, {"WATCH", t1 + "a"}, {"WATCH", t0 + "a", t1 + "a"}, {"UNWATCH"},
	}
	want := []string{"+OK\r\n", "+QUEUED\r\n", "-" + txnServerError("set") + "\r\n",
		"-EXECABORT Transaction discarded because of previous errors.\r\n", "$-1\r\n",
		"+OK\r\n", "-" + txnServerError("watch") + "\r\n",
		"-ERR keys of 'watch' map to different servers; use a hash_tag to keep them together\r\n", "+OK\r\n"}
	for i, s := range steps {
		if got := c.do(s...); got != want[i] {
			t.Errorf("%q: got %q, want %q", s, got, want[i])
		}
	}
	st := rg.pinStats(t)
	if st.opened != 1 || st.idle != 1 {
		t.Errorf("pinned links: %+v, want one opened and idle again", st)
	}
}

type pinCounts struct{ opened, reused, refused, open, idle int }

func (rg *redisRig) pinStats(t *testing.T) pinCounts {
	var pc pinCounts
	rg.px.lp.do(func() {
		p := rg.px.order[0]
		pc.opened, pc.reused, pc.refused = int(p.stats.PinnedOpened.Load()), int(p.stats.PinnedReused.Load()), int(p.stats.PinnedRefused.Load())
		for _, s := range p.servers {
			pc.open += len(s.pins)
			pc.idle += len(s.pinIdle)
		}
	})
	return pc
}

// waitPins waits until the pool's pinned links are as wanted.
func (rg *redisRig) waitPins(t *testing.T, ok func(pinCounts) bool) pinCounts {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pc := rg.pinStats(t)
		if ok(pc) || time.Now().After(deadline) {
			return pc
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// max_pinned_links bounds the links lent per server; a client that dies
// in a transaction gives its link back (after DISCARD) for reuse.
func TestPinnedLimitAndReuse(t *testing.T) {
	rg := startRedisRig(t, 1, "max_pinned_links = 2")
	c1, c2, c3 := dialResp(t, rg.addr), dialResp(t, rg.addr), dialResp(t, rg.addr)
	for _, c := range []*respClient{c1, c2} {
		c.do("MULTI")
		if got := c.do("SET", "k", "v"); got != "+QUEUED\r\n" {
			t.Fatalf("SET in MULTI: %q", got)
		}
	}
	c3.do("MULTI")
	want := "-ERR nuthatch: too many pinned connections (max_pinned_links 2)\r\n"
	if got := c3.do("SET", "k", "v"); got != want {
		t.Fatalf("third pin: %q, want %q", got, want)
	}
	if got := c3.do("EXEC"); got != "-EXECABORT Transaction discarded because of previous errors.\r\n" {
		t.Fatalf("EXEC after the refused pin: %q", got)
	}
	if got := c3.do("BLPOP", "k2", "1"); got != want {
		t.Fatalf("BLPOP over the limit: %q", got)
	}
	c1.c.Close()
	pc := rg.waitPins(t, func(pc pinCounts) bool { return pc.idle == 1 })
	if pc.idle != 1 || pc.open != 2 {
		t.Fatalf("after a client died in MULTI: %+v", pc)
	}
	c3.do("MULTI")
	c3.do("INCR", "n")
	if got := c3.do("EXEC"); got != "*1\r\n:1\r\n" {
		t.Fatalf("EXEC on the reused link: %q (the dead client's MULTI leaked?)", got)
	}
	if pc := rg.pinStats(t); pc.reused != 1 {
		t.Errorf("reused %d links, want 1", pc.reused)
	}
	c2.do("DISCARD")
}

// BLPOP woken by an RPUSH of another client, BLPOP timing out (past the
// pool's timeout of 1s), 100 concurrent blockers, a blocker that
// disconnects.
func TestBlockingCommands(t *testing.T) {
	rg := startRedisRig(t, 2, "")
	c, pusher := dialResp(t, rg.addr), dialResp(t, rg.addr)
	c.send("BLPOP", "q", "0")
	time.Sleep(100 * time.Millisecond)
	if got := pusher.do("RPUSH", "q", "x"); got != ":1\r\n" {
		// redis answers 1 or, when the blocker already popped, still 1.
		t.Fatalf("RPUSH: %q", got)
	}
	if got := c.read(); got != "*2\r\n$1\r\nq\r\n$1\r\nx\r\n" {
		t.Fatalf("woken BLPOP: %q", got)
	}
	start := time.Now()
	if got := c.do("BLPOP", "empty", "1.5"); got != "*-1\r\n" {
		t.Fatalf("timed out BLPOP: %q", got)
	}
	if d := time.Since(start); d < 1400*time.Millisecond {
		t.Fatalf("BLPOP returned after %v", d)
	}
	t0, t1 := rg.tagOn(t, 0), rg.tagOn(t, 1)
	if got := c.do("BLPOP", t0+"a", t1+"b", "1"); !strings.Contains(got, "map to different servers") {
		t.Fatalf("BLPOP across servers: %q", got)
	}
	if got := c.do("BLMOVE", t0+"a", t0+"b", "LEFT", "RIGHT", "0.1"); got != "*-1\r\n" {
		t.Fatalf("BLMOVE: %q", got)
	}
	pusher.do("XADD", "st", "1-1", "f", "v")
	if got := c.do("XREAD", "BLOCK", "0", "STREAMS", "st", "0"); !strings.Contains(got, "1-1") {
		t.Fatalf("XREAD BLOCK: %q", got)
	}
	if got := c.do("XREAD", "STREAMS", "st", "0"); !strings.Contains(got, "1-1") {
		t.Fatalf("XREAD: %q", got)
	}

	// 100 concurrent blockers, each woken by its own push.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b := dialResp(t, rg.addr)
			b.send("BRPOP", fmt.Sprintf("bq%d", i), "0")
			got, err := b.tryRead(10 * time.Second)
			if want := fmt.Sprintf("*2\r\n$%d\r\nbq%d\r\n$1\r\n%d\r\n", len(fmt.Sprintf("bq%d", i)), i, i%10); err != nil || got != want {
				errs <- fmt.Errorf("blocker %d: %q %v, want %q", i, got, err, want)
			}
		}(i)
	}
	time.Sleep(300 * time.Millisecond)
	if pc := rg.pinStats(t); pc.open-pc.idle < 100 {
		t.Errorf("%d links lent for 100 blockers", pc.open-pc.idle)
	}
	for i := 0; i < 100; i++ {
		pusher.do("LPUSH", fmt.Sprintf("bq%d", i), fmt.Sprint(i%10))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	pc := rg.waitPins(t, func(pc pinCounts) bool { return pc.idle == pc.open })
	if pc.idle != pc.open {
		t.Errorf("after the blockers: %+v", pc)
	}

	// A blocker that disconnects: its link is closed, not leaked.
	before := rg.pinStats(t)
	d := dialResp(t, rg.addr)
	d.send("BLPOP", "never", "0")
	time.Sleep(100 * time.Millisecond)
	d.c.Close()
	pc = rg.waitPins(t, func(pc pinCounts) bool { return pc.open == before.open-1 || pc.open == before.open })
	time.Sleep(100 * time.Millisecond)
	pc = rg.pinStats(t)
	if pc.open-pc.idle != 0 {
		t.Errorf("after a blocker disconnected: %+v", pc)
	}
	// The list gets the value: no one is blocked on the server.
	pusher.do("RPUSH", "never", "v")
	if got := pusher.do("LLEN", "never"); got != ":1\r\n" {
		t.Errorf("LLEN after the blocker left: %q (a dead blocker popped it)", got)
	}
}

// subStep: client A or B sends args (unless nil) and reads n frames.
type subStep struct {
	b    bool
	args []string
	n    int
	two  bool // RESP2 only
}

func subScript() []subStep {
	a := func(n int, args ...string) subStep { return subStep{args: args, n: n} }
	b := func(args ...string) subStep { return subStep{b: true, args: args, n: 1} }
	resp2 := func(s subStep) subStep { s.two = true; return s }
	return []subStep{
		a(2, "SUBSCRIBE", "ch:a", "ch:b"), a(1, "SUBSCRIBE", "ch:a"),
		b("PUBLISH", "ch:a", "hello"), a(1), b("PUBLISH", "ch:b", "world"), a(1), b("PUBLISH", "ch:none", "x"),
		a(1, "PSUBSCRIBE", "pat:*"), b("PUBLISH", "pat:1", "p1"), a(1), b("PUBLISH", "pat:2", "p2"), a(1),
		a(2, "PSUBSCRIBE", "ch:*", "pat:*"), b("PUBLISH", "ch:a", "both"), a(2),
		a(1, "GET", "k"), a(1, "PING"), a(1, "PING", "x"), resp2(a(1, "CLIENT", "ID")), resp2(a(1, "MULTI")),
		a(2, "UNSUBSCRIBE", "ch:b", "ch:zz"), a(1, "PUNSUBSCRIBE", "ch:*"), a(1, "UNSUBSCRIBE"),
		b("PUBLISH", "ch:a", "gone"), b("PUBLISH", "pat:3", "p3"), a(1),
		a(1, "PUNSUBSCRIBE"), a(1, "UNSUBSCRIBE"), a(1, "PUNSUBSCRIBE"), a(1, "PING"),
		b("PUBLISH", "pat:4", "none"),
		a(1, "SUBSCRIBE", "ch:c"), a(1, "RESET"), b("PUBLISH", "ch:c", "after reset"), a(1, "PING"),
	}
}

func runSubScript(t *testing.T, addr string, hello bool) []string {
	ca, cb := dialResp(t, addr), dialResp(t, addr)
	if hello {
		ca.do("HELLO", "3")
		cb.do("HELLO", "3")
	}
	var out []string
	for si, st := range subScript() {
		if st.two && hello {
			out = append(out, "")
			continue
		}
		c := ca
		if st.b {
			c = cb
		}
		if st.args != nil {
			c.send(st.args...)
		}
		got := ""
		for i := 0; i < st.n; i++ {
			r, err := c.tryRead(2 * time.Second)
			if err != nil {
				t.Fatalf("%s step %d %q: after %q: %v", addr, si, st.args, got, err)
			}
			got += r
		}
		out = append(out, got)
	}
	return out
}

// Pub/sub through the proxy answers as one redis-server: confirmations
// and their counts, messages and pattern messages from every server,
// the RESP2 subscribe-mode rules, RESP3 pushes.
func TestPubSubDifferential(t *testing.T) {
	rg := startRedisRig(t, 3, "")
	direct := harness.Redis(t)
	for _, hello := range []bool{false, true} {
		want := runSubScript(t, direct.Addr, hello)
		got := runSubScript(t, rg.addr, hello)
		for i, st := range subScript() {
			if want[i] != got[i] {
				t.Errorf("hello3=%v step %d %q: redis %q, nuthatch %q", hello, i, st.args, want[i], got[i])
			}
		}
	}
	pc := rg.waitPins(t, func(pc pinCounts) bool { return pc.open == pc.idle })
	if pc.open != pc.idle {
		t.Errorf("after the subscribers: %+v", pc)
	}
}

// A subscriber that does not read is closed by the output limit; its links
// are closed with it.
func TestSlowSubscriberClosed(t *testing.T) {
	rg := startRedisRig(t, 1, "client_output_pubsub_hard_limit = \"1mb\"")
	sub := dialResp(t, rg.addr)
	sub.c.(*net.TCPConn).SetReadBuffer(4096)
	sub.send("SUBSCRIBE", "flood")
	sub.read()
	pub := dialResp(t, rg.addr)
	big := strings.Repeat("x", 64<<10)
	for i := 0; i < 200; i++ {
		pub.do("PUBLISH", "flood", big)
	}
	pc := rg.waitPins(t, func(pc pinCounts) bool { return pc.open == 0 })
	if pc.open != 0 {
		t.Errorf("the slow subscriber's link is still open: %+v", pc)
	}
	var closed uint64
	rg.px.lp.do(func() { closed = rg.px.order[0].stats.ClientOutputClosed.Load() })
	if closed != 1 {
		t.Errorf("%d clients closed by the output limit, want 1", closed)
	}
}

// SCAN walks every server with a cursor that names the server; DBSIZE
// sums; RANDOMKEY answers a key; SCRIPT LOAD reaches every server, so that
// EVALSHA runs wherever its key lives.
func TestWholePoolCommands(t *testing.T) {
	rg := startRedisRig(t, 3, "")
	c := dialResp(t, rg.addr)
	want := map[string]bool{}
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("key:%d", i)
		want[k] = true
		c.do("SET", k, "v")
	}
	c.do("HSET", "hash:1", "f", "v")
	if got := c.do("DBSIZE"); got != ":301\r\n" {
		t.Fatalf("DBSIZE: %q", got)
	}
	scanAll := func(extra ...string) map[string]bool {
		seen := map[string]bool{}
		cur := "0"
		for n := 0; ; n++ {
			if n > 1000 {
				t.Fatal("SCAN does not end")
			}
			reply := c.do(append([]string{"SCAN", cur}, extra...)...)
			var elems [][]byte
			if err := resp.ArrayElems([]byte(reply), func(e []byte) bool { elems = append(elems, e); return true }); err != nil || len(elems) != 2 {
				t.Fatalf("SCAN reply %q", reply)
			}
			v, _ := bulkUint(elems[0])
			cur = fmt.Sprint(v)
			resp.ArrayElems(elems[1], func(e []byte) bool {
				s := string(e)
				seen[s[strings.Index(s, "\r\n")+2:len(s)-2]] = true
				return true
			})
			if cur == "0" {
				return seen
			}
		}
	}
	got := scanAll("COUNT", "7")
	if len(got) != 301 {
		t.Errorf("SCAN saw %d keys, want 301", len(got))
	}
	if got := scanAll("MATCH", "key:1*"); len(got) != 111 {
		t.Errorf("SCAN MATCH key:1* saw %d keys, want 111", len(got))
	}
	if got := scanAll("TYPE", "hash"); len(got) != 1 || !got["hash:1"] {
		t.Errorf("SCAN TYPE hash saw %v", got)
	}
	if got := c.do("SCAN", "x"); got != "-ERR invalid cursor\r\n" {
		t.Errorf("SCAN x: %q", got)
	}
	if got := c.do("RANDOMKEY"); !strings.HasPrefix(got, "$") || got == "$-1\r\n" {
		t.Errorf("RANDOMKEY: %q", got)
	}
	sha := c.do("SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])")
	if !strings.HasPrefix(sha, "$40\r\n") {
		t.Fatalf("SCRIPT LOAD: %q", sha)
	}
	hash := sha[5:45]
	for i := 0; i < 3; i++ {
		k := rg.tagOn(t, i) + "k"
		c.do("SET", k, "on"+fmt.Sprint(i))
		if got := c.do("EVALSHA", hash, "1", k); got != fmt.Sprintf("$3\r\non%d\r\n", i) {
			t.Errorf("EVALSHA on server %d: %q", i, got)
		}
	}
	if got := c.do("SCRIPT", "EXISTS", hash, "ffff"); got != "*2\r\n:1\r\n:0\r\n" {
		t.Errorf("SCRIPT EXISTS: %q", got)
	}
	if got := c.do("SCRIPT", "FLUSH"); got != "+OK\r\n" {
		t.Errorf("SCRIPT FLUSH: %q", got)
	}
	if got := c.do("SCRIPT", "EXISTS", hash); got != "*1\r\n:0\r\n" {
		t.Errorf("SCRIPT EXISTS after FLUSH: %q", got)
	}
	if got := c.do("SCRIPT", "KILL"); !strings.Contains(got, "not supported") {
		t.Errorf("SCRIPT KILL: %q", got)
	}
}

// startRigHCL serves the config's pool "p" in-process.
func startRigHCL(t *testing.T, hcl string) *redisRig {
	t.Helper()
	px, addr := serveHCL(t, hcl)
	return &redisRig{px: px, addr: addr}
}

// A pinned link to a Sentinel server whose master moved is closed: the
// blocked client and the client in a transaction get an error, and later
// pins go to the new master.
func TestPinnedLinkMasterMoved(t *testing.T) {
	harness.Need(t, "redis-server")
	a, b := harness.Redis(t), harness.Redis(t)
	rg := startRigHCL(t, `pool "p" {
  listen = "127.0.0.1:1"
  protocol = "redis"
  sentinel {
    addresses = ["127.0.0.1:1"]
  }
  server "s0" {}
}`)
	rg.px.SetServerAddresses([]ServerAddress{{Pool: "p", Server: "s0", Addr: a.Addr, Version: 1}})
	blocked, txn := dialResp(t, rg.addr), dialResp(t, rg.addr)
	txn.do("MULTI")
	if got := txn.do("SET", "k", "v"); got != "+QUEUED\r\n" {
		t.Fatalf("SET in MULTI: %q", got)
	}
	blocked.send("BLPOP", "q", "0")
	time.Sleep(100 * time.Millisecond)
	rg.px.SetServerAddresses([]ServerAddress{{Pool: "p", Server: "s0", Addr: b.Addr, Version: 2}})
	want := "-ERR nuthatch: server 's0' master moved; the pinned connection was closed\r\n"
	if got := blocked.read(); got != want {
		t.Errorf("blocked client: %q, want %q", got, want)
	}
	if got := txn.do("INCR", "n"); got != want {
		t.Errorf("next command of the transaction: %q, want %q", got, want)
	}
	if got := txn.do("EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
		t.Errorf("EXEC: %q", got)
	}
	txn.do("MULTI")
	txn.do("SET", "k", "new")
	if got := txn.do("EXEC"); got != "*1\r\n+OK\r\n" {
		t.Errorf("EXEC on the new master: %q", got)
	}
	direct := dialResp(t, b.Addr)
	if got := direct.do("GET", "k"); got != "$3\r\nnew\r\n" {
		t.Errorf("the new master has k = %q", got)
	}
}

// A drain waits for a client in a transaction to finish it, then closes
// it; a subscriber is ended at the shutdown timeout.
func TestDrainWaitsForPinnedSessions(t *testing.T) {
	rg := startRedisRig(t, 1, "")
	c := dialResp(t, rg.addr)
	c.do("MULTI")
	c.do("SET", "k", "v")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- rg.px.Shutdown(ctx)
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the drain ended during the transaction: %v", err)
	default:
	}
	if got := c.do("INCR", "n"); got != "+QUEUED\r\n" {
		t.Fatalf("INCR in MULTI while draining: %q", got)
	}
	if got := c.do("EXEC"); got != "*2\r\n+OK\r\n:1\r\n" {
		t.Fatalf("EXEC while draining: %q", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the drain did not end after EXEC")
	}

	rg = startRedisRig(t, 1, "")
	s := dialResp(t, rg.addr)
	s.send("SUBSCRIBE", "ch")
	s.read()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := rg.px.Shutdown(ctx); err == nil {
		t.Error("the drain did not wait for the subscriber")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("the drain ended after %v", d)
	}
	if _, err := s.tryRead(2 * time.Second); err == nil {
		t.Error("the subscriber is still connected")
	}
}

// A link lent for a blocking call, then to the same client for a
// transaction, is given back clean (DISCARD) when the client leaves in
// MULTI, not closed as a blocked one.
func TestPinnedLinkRelentToSameClient(t *testing.T) {
	rg := startRedisRig(t, 1, "max_pinned_links = 1")
	c := dialResp(t, rg.addr)
	if got := c.do("BLPOP", "q", "0.01"); got != "*-1\r\n" {
		t.Fatalf("BLPOP: %q", got)
	}
	rg.waitPins(t, func(pc pinCounts) bool { return pc.idle == 1 })
	c.do("MULTI")
	c.do("SET", "k", "v")
	c.c.Close()
	pc := rg.waitPins(t, func(pc pinCounts) bool { return pc.idle == 1 })
	if pc.open != 1 || pc.idle != 1 {
		t.Fatalf("after the client left in MULTI: %+v", pc)
	}
	d := dialResp(t, rg.addr)
	d.do("MULTI")
	d.do("INCR", "n")
	if got := d.do("EXEC"); got != "*1\r\n:1\r\n" {
		t.Fatalf("EXEC on the reused link: %q", got)
	}
	if got := d.do("GET", "k"); got != "$-1\r\n" {
		t.Fatalf("the left transaction ran: k = %q", got)
	}
}
