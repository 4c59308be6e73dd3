package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// startRedisRigWith is startRedisRig with options for the redis-servers.
func startRedisRigWith(t *testing.T, n int, attrs string, redisArgs ...string) *redisRig {
	t.Helper()
	harness.Need(t, "redis-server")
	rg := &redisRig{}
	var b strings.Builder
	fmt.Fprintf(&b, "pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n  hash_tag = \"{}\"\n  timeout = \"1s\"\n%s\n", attrs)
	for i := 0; i < n; i++ {
		be := harness.Redis(t, redisArgs...)
		rg.backends = append(rg.backends, be)
		fmt.Fprintf(&b, "  server \"s%d\" { address = %q }\n", i, be.Addr)
	}
	b.WriteString("}\n")
	rg.px, rg.addr = serveHCL(t, b.String())
	return rg
}

// replyElems returns the bulk strings of an array reply, sorted.
func replyElems(t *testing.T, reply string) []string {
	t.Helper()
	var out []string
	if err := resp.ArrayElems([]byte(reply), func(e []byte) bool {
		s := string(e)
		out = append(out, s[strings.Index(s, "\r\n")+2:len(s)-2])
		return true
	}); err != nil {
		t.Fatalf("not an array: %q", reply)
	}
	slices.Sort(out)
	return out
}

// PUBSUB CHANNELS/NUMSUB/NUMPAT through the proxy over three servers
// answer as one redis-server with the same subscribers does (CHANNELS in
// another order), in RESP2 and RESP3.
func TestPubSubIntrospection(t *testing.T) {
	rg := startRedisRig(t, 3, "")
	direct := harness.Redis(t)
	var channels []string
	for i := 0; i < 12; i++ {
		channels = append(channels, fmt.Sprintf("ch:%d", i))
	}
	subscribe := func(addr string) {
		s1, s2, s3 := dialResp(t, addr), dialResp(t, addr), dialResp(t, addr)
		s1.send(append([]string{"SUBSCRIBE"}, channels...)...)
		for range channels {
			s1.read()
		}
		s2.send("SUBSCRIBE", "ch:1", "ch:2", "other")
		for i := 0; i < 3; i++ {
			s2.read()
		}
		s2.send("PSUBSCRIBE", "news.*", "ch:*")
		s2.read()
		s2.read()
		s3.send("PSUBSCRIBE", "news.*", "x?")
		s3.read()
		s3.read()
	}
	subscribe(direct.Addr)
	subscribe(rg.addr)
	for _, hello := range []bool{false, true} {
		q, qd := dialResp(t, rg.addr), dialResp(t, direct.Addr)
		if hello {
			q.do("HELLO", "3")
			qd.do("HELLO", "3")
		}
		for _, req := range [][]string{
			{"PUBSUB", "NUMSUB", "ch:1", "ch:2", "other", "none", "ch:7", "ch:1"},
			{"PUBSUB", "NUMSUB"},
			{"PUBSUB", "NUMPAT"},
			{"PUBSUB", "NUMPAT", "x"},
			{"PUBSUB", "CHANNELS", "a", "b"},
			{"PUBSUB", "NOSUCH"},
		} {
			if want, got := qd.do(req...), q.do(req...); want != got {
				t.Errorf("hello3=%v %q: redis %q, nuthatch %q", hello, req, want, got)
			}
		}
		for _, req := range [][]string{{"PUBSUB", "CHANNELS"}, {"PUBSUB", "CHANNELS", "ch:1*"}, {"PUBSUB", "CHANNELS", "zz*"}} {
			want, got := replyElems(t, qd.do(req...)), replyElems(t, q.do(req...))
			if !slices.Equal(want, got) {
				t.Errorf("hello3=%v %q: redis %q, nuthatch %q", hello, req, want, got)
			}
		}
	}
	q := dialResp(t, rg.addr)
	if got := q.do("PUBSUB", "SHARDCHANNELS"); !strings.Contains(got, "not supported by nuthatch") {
		t.Errorf("PUBSUB SHARDCHANNELS: %q", got)
	}
}

// KEYS and the admin commands are refused until the pool enables them,
// with a refusal that says how; enabled, KEYS answers every server's keys
// and FLUSHDB, CONFIG and DEBUG reach every server.
func TestKeysAndAdminCommandsOptIn(t *testing.T) {
	off := startRedisRig(t, 2, "")
	c := dialResp(t, off.addr)
	if got, want := c.do("KEYS", "*"), "-ERR command 'keys' is not supported by nuthatch: it walks every key of every server; set allow_keys = true in pool 'p' to enable it, or use SCAN\r\n"; got != want {
		t.Errorf("KEYS: %q, want %q", got, want)
	}
	for _, req := range [][]string{{"FLUSHDB"}, {"FLUSHALL"}, {"CONFIG", "GET", "maxmemory"}, {"DEBUG", "SLEEP", "0"}} {
		want := "-ERR command '" + strings.ToLower(req[0]) + "' is not supported by nuthatch: server command; set allow_admin_commands = true in pool 'p' to send it to every server\r\n"
		if got := c.do(req...); got != want {
			t.Errorf("%q: %q, want %q", req, got, want)
		}
	}

	rg := startRedisRigWith(t, 3, "allow_keys = true\nallow_admin_commands = true", "--enable-debug-command", "yes")
	c = dialResp(t, rg.addr)
	var want []string
	for i := 0; i < 200; i++ {
		k := fmt.Sprintf("key:%d", i)
		want = append(want, k)
		c.do("SET", k, "v")
	}
	slices.Sort(want)
	if got := replyElems(t, c.do("KEYS", "*")); !slices.Equal(got, want) {
		t.Errorf("KEYS * gave %d keys, want %d", len(got), len(want))
	}
	if got := replyElems(t, c.do("KEYS", "key:1?")); len(got) != 10 {
		t.Errorf("KEYS key:1? gave %q", got)
	}
	if got := c.do("DEBUG", "OBJECT", "key:7"); !strings.HasPrefix(got, "+Value at:") {
		t.Errorf("DEBUG OBJECT: %q", got)
	}
	if got := c.do("DEBUG", "OBJECT", "nokey"); got != "-ERR no such key\r\n" {
		t.Errorf("DEBUG OBJECT of a missing key: %q", got)
	}
	if got := c.do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"); got != "+OK\r\n" {
		t.Errorf("CONFIG SET: %q", got)
	}
	for i, be := range rg.backends {
		d := dialResp(t, be.Addr)
		if got := d.do("CONFIG", "GET", "maxmemory-policy"); !strings.Contains(got, "allkeys-lru") {
			t.Errorf("server %d after CONFIG SET through the proxy: %q", i, got)
		}
	}
	if got := c.do("CONFIG", "GET", "maxmemory-policy"); got != "*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n" {
		t.Errorf("CONFIG GET: %q", got)
	}
	if got := c.do("CONFIG", "SET", "nosuch", "1"); !strings.HasPrefix(got, "-ERR Unknown option") {
		t.Errorf("CONFIG SET of an unknown option: %q", got)
	}
	if got := c.do("DEBUG", "SLEEP", "0"); got != "+OK\r\n" {
		t.Errorf("DEBUG SLEEP 0: %q", got)
	}
	if got := c.do("FLUSHDB"); got != "+OK\r\n" {
		t.Errorf("FLUSHDB: %q", got)
	}
	if got := c.do("DBSIZE"); got != ":0\r\n" {
		t.Errorf("DBSIZE after FLUSHDB: %q", got)
	}
	c.do("SET", "a", "1")
	if got := c.do("FLUSHALL", "SYNC"); got != "+OK\r\n" {
		t.Errorf("FLUSHALL: %q", got)
	}
	if got := c.do("KEYS", "*"); got != "*0\r\n" {
		t.Errorf("KEYS after FLUSHALL: %q", got)
	}
}
