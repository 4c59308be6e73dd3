package integration

// This file recreates twemproxy's own Redis test suite (tests/test_redis in
// twitter/twemproxy) against nuthatch, for the cases redis_test.go does not
// already cover. Where twemproxy's expectation is "the proxy closes the
// connection", nuthatch answers with the error redis itself would send and
// keeps the connection; each such test compares with a redis-server
// directly. docs/redis.md lists these differences.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

func encode(args ...string) string {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return string(resp.AppendCommand(nil, bs))
}

// sameAsRedis sends each request to a redis-server directly and through the
// proxy, on fresh connections, and requires the same bytes (and the same
// close) from both.
func sameAsRedis(t *testing.T, proxy, direct string, reqs ...string) {
	t.Helper()
	for _, req := range reqs {
		x, y := newRespSession(t, direct), newRespSession(t, proxy)
		a, b := x.Do([]byte(req)), y.Do([]byte(req))
		x.Close()
		y.Close()
		if a != b {
			t.Errorf("%q:\n redis:    %q\n nuthatch: %q", req, a, b)
		}
	}
}

// test_basic.py: test_msetnx. twemproxy closes the connection; nuthatch
// refuses with an error and the connection stays usable.
func TestTwemproxyMSetNX(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	r := dialRaw(t, rp.addr)
	r.send(encode("MSETNX", "a", "1", "b", "2"))
	r.expect("-ERR command 'msetnx' is not supported by nuthatch: keys may span servers\r\n")
	r.send(encode("PING"))
	r.expect("+PONG\r\n")
}

// test_basic.py: test_issue_323 (deeply nested multi-bulk replies) and
// test_fast_req_lua.
func TestTwemproxyNestedReplies(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	nested := "return {1, redis.call('set', KEYS[1], 'v')}"
	deep := "local r = {KEYS[1]} for i = 1, 20 do r = {i, r, 'x'} end return r"
	sameAsRedis(t, rp.addr, rp.backends[0].Addr,
		encode("EVAL", nested, "1", "k"),
		encode("EVAL", deep, "1", "k"),
		encode("EVAL", "local s = 0 for i=1,100 do s = s + i end return s", "1", "k"),
		encode("EVAL", "return {}", "1", "k"),
		encode("EVAL", "return {1, {}, {false}, {redis.error_reply('in')}}", "1", "k"),
	)
}

// test_protocol.py: test_slow. A slow but progressing client is served.
func TestTwemproxySlowClient(t *testing.T) {
	rp := startRedisPool(t, 1, "")
	r := dialRaw(t, rp.addr)
	req := "*1\r\n$4\r\nPING\r\n"
	gap := 100 * time.Millisecond
	if testing.Short() {
		gap = 20 * time.Millisecond
	}
	for i := range len(req) {
		r.send(req[i : i+1])
		time.Sleep(gap)
	}
	r.expect("+PONG\r\n")
}

// test_protocol.py: test_quit_without_recv. A client that sends QUIT and
// goes away at once does not disturb the proxy.
func TestTwemproxyQuitWithoutRecv(t *testing.T) {
	rp := startRedisPool(t, 1, "")
	for range 20 {
		c, err := net.Dial("tcp", rp.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("*1\r\n$4\r\nQUIT\r\n"))
		c.Close()
	}
	r := dialRaw(t, rp.addr)
	r.send("*1\r\n$4\r\nPING\r\n")
	r.expect("+PONG\r\n")
}

// test_protocol.py: test_badreq and test_wrong_argc. twemproxy closes the
// connection on all of them. nuthatch answers as redis does: framing
// errors get redis's protocol error and a close, argument errors an error
// reply on an open connection.
func TestTwemproxyBadRequests(t *testing.T) {
	rp := startRedisPool(t, 1, "")
	sameAsRedis(t, rp.addr, rp.backends[0].Addr,
		"\r\n",                        // empty inline line: ignored
		"*3\r\n*abcde\r\n",            // nested array
		"*1\r\nfoo\r\n",               // missing '$'
		"*-1\r\n",                     // null request: ignored
		"*0\r\n",                      // empty request: ignored
		"*1\r\n$-1\r\n",               // null bulk
		"*1\r\n$abc\r\n",              // bad bulk length
		"*x\r\n",                      // bad count
		encode("MSET", "A", "A", "A"), // odd argument count
		encode("MSET", "A"),
		encode("GET"),
		encode("GET", "a", "b"),
		encode("SET", "a"),
		encode("HSET", "h", "f"),
		encode("EVAL", "return 1", "x", "k"),
		encode("EVAL", "return 1", "-1", "k"),
		encode("EVAL", "return 1", "3", "k"),
		"GET\r\n",          // inline, wrong arity
		"\"unbalanced\r\n", // inline quoting error
	)
	// A bulk longer than declared: redis skips two bytes blindly and reads
	// on out of step; nuthatch refuses it.
	r := dialRaw(t, rp.addr)
	r.send("*2\r\n$3\r\nGET\r\n$1\r\nab\r\n")
	if got := r.expectClosed(); got != "-ERR Protocol error: bulk data not terminated by CRLF\r\n" {
		t.Fatalf("bulk longer than declared: %q", got)
	}
}

// test_pipeline.py: test_pipeline and test_parse_error_raised.
func TestTwemproxyPipeline(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	pipe := c.Pipeline()
	set := pipe.Set(ctx, "a", "a1", 0)
	get := pipe.Get(ctx, "a")
	z1 := pipe.ZAdd(ctx, "z", redis.Z{Score: 1, Member: "z1"})
	z2 := pipe.ZAdd(ctx, "z", redis.Z{Score: 4, Member: "z2"})
	zi := pipe.ZIncrBy(ctx, "z", 1, "z1")
	zr := pipe.ZRangeWithScores(ctx, "z", 0, 5)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if set.Val() != "OK" || get.Val() != "a1" || z1.Val() != 1 || z2.Val() != 1 || zi.Val() != 2 {
		t.Fatalf("pipeline: %v %v %v %v %v", set.Val(), get.Val(), z1.Val(), z2.Val(), zi.Val())
	}
	if want := []redis.Z{{Score: 2, Member: "z1"}, {Score: 4, Member: "z2"}}; !slices.Equal(zr.Val(), want) {
		t.Fatalf("zrange: %v", zr.Val())
	}

	// ZREM without members is an error in the middle of the pipeline.
	r := dialRaw(t, rp.addr)
	r.send(encode("SET", "a", "1") + encode("ZREM", "z") + encode("GET", "a"))
	r.expect("+OK\r\n-ERR wrong number of arguments for 'zrem' command\r\n$1\r\n1\r\n")
}

// test_mget_mset.py: test_mget_special_key, adapted to nuthatch's 16 KiB
// read buffer: requests, keys and values whose end falls just before, on
// and just after the buffer's end, alone and behind pipelined requests.
func TestTwemproxyBufferBoundaries(t *testing.T) {
	rp := startRedisPool(t, 3, "")
	const N = 16 << 10
	r := dialRaw(t, rp.addr)
	for delta := -24; delta <= 24; delta++ {
		// A SET whose request is exactly N+delta bytes: SET, key, 1-byte value.
		overhead := len(encode("SET", "", "v")) + len(strconv.Itoa(N)) - 1
		klen := N + delta - overhead
		key := fmt.Sprintf("%05d", delta+100) + strings.Repeat("k", klen-5)
		set := encode("SET", key, "v")
		if len(set) != N+delta {
			t.Fatalf("request is %d bytes, want %d", len(set), N+delta)
		}
		r.send(set + encode("GET", key))
		r.expect("+OK\r\n$1\r\nv\r\n")

		// A value N+delta long: the reply straddles the proxy's server-side
		// buffer too.
		val := strings.Repeat("v", N+delta)
		r.send(encode("SET", "val", val) + encode("GET", "val"))
		r.expect("+OK\r\n" + fmt.Sprintf("$%d\r\n%s\r\n", len(val), val))

		// An MGET of three keys, the second ending at N+delta.
		pad := encode("PING")
		mget := func(k2 int) string { return encode("MGET", "short", strings.Repeat("m", k2), "other") }
		k2 := N + delta - len(pad) - (len(mget(0)) - len(encode("other")) - len("$0\r\n\r\n")) - len(fmt.Sprintf("$%d\r\n", N)) - 2
		if k2 < 1 {
			t.Fatalf("bad key length %d", k2)
		}
		r.send(pad + mget(k2))
		r.expect("+PONG\r\n*3\r\n$-1\r\n$-1\r\n$-1\r\n")
	}
	// Many small requests in one write, with one ending at every offset
	// around N.
	var b strings.Builder
	var want strings.Builder
	for i := 0; b.Len() < N+200; i++ {
		k := "p" + strconv.Itoa(i)
		b.WriteString(encode("SET", k, strconv.Itoa(i)))
		want.WriteString("+OK\r\n")
	}
	r.send(b.String())
	r.expect(want.String())
}

// test_mget_mset.py: test_mget_pipeline and test_multi_delete_20140525.
func TestTwemproxyMGetPipeline(t *testing.T) {
	rp := startRedisPool(t, 3, "")
	c := rp.client(t)
	const large = 1000
	pipe := c.Pipeline()
	keys := make([]string, 126)
	for i := range keys {
		keys[i] = fmt.Sprintf("mp:%d", i)
		pipe.Set(ctx, keys[i], i, 0)
	}
	mget := pipe.MGet(ctx, keys...)
	vals := make([][]byte, large)
	for i := range vals {
		vals[i] = make([]byte, 100)
		rand.Read(vals[i])
		pipe.Set(ctx, fmt.Sprintf("rnd:%d", i), vals[i], 0)
	}
	gets := make([]*redis.StringCmd, large)
	for i := range gets {
		gets[i] = pipe.Get(ctx, fmt.Sprintf("rnd:%d", i))
	}
	mget2 := pipe.MGet(ctx, keys...)
	del := pipe.Del(ctx, keys...)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, v := range mget.Val() {
		if v != strconv.Itoa(i) {
			t.Fatalf("mget[%d] = %v", i, v)
		}
	}
	for i, g := range gets {
		if g.Val() != string(vals[i]) {
			t.Fatalf("get rnd:%d corrupted", i)
		}
	}
	if len(mget2.Val()) != len(keys) || del.Val() != int64(len(keys)) {
		t.Fatalf("mget %d values, del %d", len(mget2.Val()), del.Val())
	}
}

// keysByOwner returns a key owned by each backend of rp, written with SET.
func keysByOwner(t *testing.T, rp *redisPool, prefix string) []string {
	t.Helper()
	c := rp.client(t)
	out := make([]string, len(rp.backends))
	for i, found := 0, 0; found < len(out); i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if err := c.Set(ctx, k, "v:"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if o := rp.owner(t, k); out[o] == "" {
			out[o] = k
			found++
		} else {
			c.Del(ctx, k)
		}
	}
	return out
}

// restartRedis starts a new redis-server on a killed backend's port.
func restartRedis(t *testing.T, b *harness.Proc) *harness.Proc {
	t.Helper()
	p := harness.Start(t, "redis-server", "--port", strconv.Itoa(b.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	p.Port, p.Addr = b.Port, b.Addr
	harness.WaitPort(t, "tcp", p.Addr, 10*time.Second)
	return p
}

func isDownErr(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "Connection refused") || strings.Contains(s, "reset by peer") || strings.Contains(s, "Broken pipe")
}

// test_mget_mset.py: test_mget_on_backend_down, test_mset_on_backend_down,
// test_multi_delete_on_backend_down: keys on the dead server fail with the
// connection error, the others work, and a command spanning both fails as
// a whole. With both down everything fails; after a restart everything
// works again.
func TestTwemproxyBackendDown(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	k := keysByOwner(t, rp, "down:")
	dead, live := k[0], k[1]
	rp.backends[0].Kill()

	if err := c.Get(ctx, dead).Err(); !isDownErr(err) {
		t.Fatalf("get on dead: %v", err)
	}
	if err := c.Set(ctx, dead, "x", 0).Err(); !isDownErr(err) {
		t.Fatalf("set on dead: %v", err)
	}
	if v, err := c.Get(ctx, live).Result(); err != nil || v != "v:"+live {
		t.Fatalf("get on live: %q %v", v, err)
	}
	for name, err := range map[string]error{
		"mget": c.MGet(ctx, live, dead).Err(),
		"mset": c.MSet(ctx, live, "1", dead, "2").Err(),
		"del":  c.Del(ctx, live, dead).Err(),
	} {
		if !isDownErr(err) {
			t.Errorf("%s spanning the dead server: %v", name, err)
		}
	}
	// The live server ran its fragments: twemproxy does not roll back.
	if v, err := c.Get(ctx, live).Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("get on live after a partial del: %q %v", v, err)
	}

	rp.backends[1].Kill()
	if err := c.Get(ctx, live).Err(); !isDownErr(err) {
		t.Fatalf("get with both down: %v", err)
	}
	if err := c.MGet(ctx, live, dead).Err(); !isDownErr(err) {
		t.Fatalf("mget with both down: %v", err)
	}

	rp.backends[0] = restartRedis(t, rp.backends[0])
	rp.backends[1] = restartRedis(t, rp.backends[1])
	if err := c.MSet(ctx, live, "1", dead, "2").Err(); err != nil {
		t.Fatalf("mset after restart: %v", err)
	}
	if v, err := c.MGet(ctx, live, dead).Result(); err != nil || v[0] != "1" || v[1] != "2" {
		t.Fatalf("mget after restart: %v %v", v, err)
	}
}

// test_mget_mset.py: test_multi_delete_on_readonly. One backend is a
// replica of the other. twemproxy answers a DEL spanning both with
// "-ERR Invalid argument"; nuthatch passes on the replica's own error, as
// it does for any error reply of a fragment.
func TestTwemproxyMultiDeleteOnReadonly(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	k := keysByOwner(t, rp, "ro:")
	onReplica, onMaster := k[0], k[1]
	replica := direct(t, rp.backends[0])
	direct(t, rp.backends[1]).ConfigSet(ctx, "repl-diskless-sync-delay", "0")
	if err := replica.Do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(rp.backends[1].Port)).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Do(ctx, "REPLICAOF", "NO", "ONE") })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(replica.Info(ctx, "replication").Val(), "master_link_status:up") {
		if time.Now().After(deadline) {
			t.Fatal("replica never synced")
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := "-READONLY You can't write against a read only replica.\r\n"
	if got := newRespSession(t, rp.backends[0].Addr).Do([]byte(encode("DEL", onReplica))); got != want {
		t.Fatalf("redis itself answers %q", got)
	}
	r := dialRaw(t, rp.addr)
	r.send(encode("DEL", onReplica))
	r.expect(want)
	r.send(encode("DEL", onMaster))
	r.expect(":1\r\n")
	r.send(encode("DEL", onMaster, onReplica, "other"))
	r.expect(want)
	r.send(encode("UNLINK", onReplica, onMaster))
	r.expect(want)
	r.send(encode("MSET", onReplica, "1", onMaster, "2"))
	r.expect(want)
	// The connection and both servers stay usable.
	r.send(encode("MGET", onReplica, onMaster))
	r.expect("*2\r\n$-1\r\n$1\r\n2\r\n")
}

// test_auth.py: test_auth_basic. Against redis directly and through the
// proxy, with the same password on both, every reply is the same.
func TestTwemproxyAuthBasic(t *testing.T) {
	rp := startRedisPool(t, 2, `redis_auth = "hellopasswd"`, "--requirepass", "hellopasswd")
	script := []string{
		encode("PING"), encode("SET", "a", "1"), encode("GET", "a"),
		encode("AUTH", "badpasswd"), encode("GET", "a"),
		encode("AUTH", "hellopasswd"),
		encode("SET", "a", "1"), encode("GET", "a"), encode("PING"),
		// Redis 6+ keeps a connection authenticated after a failed AUTH.
		encode("AUTH", "badpasswd"), encode("GET", "a"),
		encode("AUTH", "default", "hellopasswd"), encode("AUTH", "nobody", "hellopasswd"),
		encode("AUTH", "a", "b", "c"),
	}
	a := newRespSession(t, rp.backends[0].Addr)
	b := newRespSession(t, rp.addr)
	for _, req := range script {
		// The key a lives on one backend; compare with the one that has it
		// after the first SET.
		x, y := a.Do([]byte(req)), b.Do([]byte(req))
		if x != y {
			t.Errorf("%q:\n redis:    %q\n nuthatch: %q", req, x, y)
		}
	}
	// HELLO with AUTH, as RESP2.
	sameAsRedis(t, rp.addr, rp.backends[0].Addr,
		encode("HELLO", "2", "AUTH", "default", "wrong"),
		encode("HELLO", "2", "AUTH", "default"),
		encode("HELLO", "2"),
	)
}

// test_auth.py: test_nopass_on_proxy. The servers want a password, the
// proxy has none: PING is answered by the proxy, commands get the
// servers' NOAUTH, AUTH is refused by the proxy.
func TestTwemproxyAuthNoPassOnProxy(t *testing.T) {
	rp := startRedisPool(t, 2, "", "--requirepass", "hellopasswd")
	r := dialRaw(t, rp.addr)
	r.send(encode("PING"))
	r.expect("+PONG\r\n")
	r.send(encode("SET", "a", "1") + encode("GET", "a"))
	r.expect("-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n")
	r.send(encode("AUTH", "hellopasswd"))
	r.expect("-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n")
	// An error on one MGET fragment fails the whole command with that
	// server's error text.
	r.send(encode("MGET", "a", "b", "c", "d", "e", "f"))
	r.expect("-NOAUTH Authentication required.\r\n")
}

// test_auth.py: test_badpass_on_proxy. The proxy's password is not the
// servers': clients authenticate with the proxy's, then the servers refuse
// every command.
func TestTwemproxyAuthBadPassOnProxy(t *testing.T) {
	rp := startRedisPool(t, 2, `redis_auth = "badpasswd"`, "--requirepass", "hellopasswd")
	r := dialRaw(t, rp.addr)
	r.send(encode("PING") + encode("SET", "a", "1"))
	r.expect("-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n")
	r.send(encode("AUTH", "badpasswd"))
	r.expect("+OK\r\n")
	r.send(encode("PING"))
	r.expect("+PONG\r\n")
	r.send(encode("SET", "a", "1") + encode("GET", "a"))
	r.expect("-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n")
}

// test_commands.py: linsert, exists, lpush/lrange, and the SCAN family,
// through the proxy and directly.
func TestTwemproxyCommands(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	c.RPush(ctx, "mylist", "Hello", "World")
	if n, err := c.LInsert(ctx, "mylist", "BEFORE", "World", "There").Result(); err != nil || n != 3 {
		t.Fatalf("linsert: %d %v", n, err)
	}
	if v := c.LRange(ctx, "mylist", 0, -1).Val(); !slices.Equal(v, []string{"Hello", "There", "World"}) {
		t.Fatalf("lrange: %v", v)
	}
	c.Set(ctx, "exists:a", "1", 0)
	if n := c.Exists(ctx, "exists:a").Val(); n != 1 {
		t.Fatalf("exists: %d", n)
	}
	if n := c.Exists(ctx, "exists:none").Val(); n != 0 {
		t.Fatalf("exists missing: %d", n)
	}
	c.LPush(ctx, "lp", "1", "2", "3")
	if v := c.LRange(ctx, "lp", 0, -1).Val(); !slices.Equal(v, []string{"3", "2", "1"}) {
		t.Fatalf("lpush/lrange: %v", v)
	}

	c.HSet(ctx, "hs", "a", "1", "b", "2")
	keys, cur, err := c.HScan(ctx, "hs", 0, "", 0).Result()
	if err != nil || cur != 0 || !slices.Equal(keys, []string{"a", "1", "b", "2"}) {
		t.Fatalf("hscan: %v %d %v", keys, cur, err)
	}
	keys, _, _ = c.HScan(ctx, "hs", 0, "a", 0).Result()
	if !slices.Equal(keys, []string{"a", "1"}) {
		t.Fatalf("hscan match: %v", keys)
	}
	c.ZAdd(ctx, "zs", redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2, Member: "b"})
	keys, cur, _ = c.ZScan(ctx, "zs", 0, "", 0).Result()
	if cur != 0 || !slices.Equal(keys, []string{"a", "1", "b", "2"}) {
		t.Fatalf("zscan: %v", keys)
	}
	c.SAdd(ctx, "ss", "a", "b")
	keys, cur, _ = c.SScan(ctx, "ss", 0, "", 0).Result()
	slices.Sort(keys)
	if cur != 0 || !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("sscan: %v", keys)
	}
	keys, _, _ = c.SScan(ctx, "ss", 0, "a", 0).Result()
	if !slices.Equal(keys, []string{"a"}) {
		t.Fatalf("sscan match: %v", keys)
	}

	// test_hscan_large: 1000 fields with long names, COUNT 10.
	prefix := strings.Repeat("x", 100)
	fields := make([]any, 0, 2000)
	for i := range 1000 {
		fields = append(fields, fmt.Sprintf("%skkk-%d", prefix, i), i)
	}
	c.HSet(ctx, "hl", fields...)
	for _, tc := range []struct {
		match string
		want  int
	}{{"", 1000}, {"*kkk-5*", 111}} {
		seen := map[string]bool{}
		var cursor uint64
		for {
			kv, next, err := c.HScan(ctx, "hl", cursor, tc.match, 10).Result()
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(kv); i += 2 {
				seen[kv[i]] = true
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		if len(seen) != tc.want {
			t.Errorf("hscan match %q: %d fields, want %d", tc.match, len(seen), tc.want)
		}
	}
}

// A client that pipelines 10k GETs and goes away without reading must not
// disturb the server connection it shared: a later GET gets its own reply.
func TestRedisClientGoneMidPipeline(t *testing.T) {
	rp := startRedisPool(t, 1, "")
	c := rp.client(t)
	if err := c.Set(ctx, "mine", "own value", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		c.Set(ctx, fmt.Sprintf("g:%d", i), strings.Repeat("x", 1000), 0)
	}
	for range 5 {
		conn, err := net.Dial("tcp", rp.addr)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for i := range 10000 {
			b.WriteString(encode("GET", fmt.Sprintf("g:%d", i%1000)))
		}
		conn.Write(b.Bytes())
		conn.Close()
	}
	for i := range 200 {
		k := fmt.Sprintf("after:%d", i)
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(ctx, k).Result(); err != nil || v != k {
			t.Fatalf("get %s = %q %v: server connection out of sync", k, v, err)
		}
	}
	if v := c.Get(ctx, "mine").Val(); v != "own value" {
		t.Fatalf("get mine = %q", v)
	}
}

// blackhole is a server that accepts connections and reads, never replying.
func blackhole(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// startCustomPool runs nuthatch over the given server addresses.
func startCustomPool(t *testing.T, attrs string, addrs ...string) string {
	t.Helper()
	var servers strings.Builder
	for i, a := range addrs {
		fmt.Fprintf(&servers, "  server \"s%d\" { address = %q }\n", i+1, a)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes = 1
log {
  level = "debug"
}
stats {
  listen = ""
}
pool "test" {
  listen   = %q
  protocol = "redis"
  distribution = "modula"
%s
%s}
`, addr, attrs, servers.String())
	p := harness.Nuthatch(t, hcl, addr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nuthatch log:\n%s", p.Output())
		}
	})
	return addr
}

// The timeout reply is twemproxy's: "-ERR Connection timed out", for a
// single-key command and for a split command with one slow fragment.
func TestRedisTimeoutText(t *testing.T) {
	live := harness.Redis(t)
	addr := startCustomPool(t, `timeout = "200ms"`, live.Addr, blackhole(t))
	// modula with fnv1a_64: find a key on each server through the replies.
	r := dialRaw(t, addr)
	var slow, fast string
	for i := 0; slow == "" || fast == ""; i++ {
		k := fmt.Sprintf("t:%d", i)
		r.send(encode("GET", k))
		r.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := r.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		switch line {
		case "-ERR Connection timed out\r\n":
			slow = k
		case "$-1\r\n":
			fast = k
		default:
			t.Fatalf("get %s: %q", k, line)
		}
	}
	start := time.Now()
	r.send(encode("MGET", fast, slow, fast))
	r.expect("-ERR Connection timed out\r\n")
	if d := time.Since(start); d > time.Second {
		t.Errorf("timed out after %v, timeout is 200ms", d)
	}
	r.send(encode("GET", fast))
	r.expect("$-1\r\n")
}

// serverConnections counts a redis-server's clients, other than the
// connection asking.
func serverConnections(t *testing.T, addr string) int {
	t.Helper()
	s := newRespSession(t, addr)
	defer s.Close()
	out := s.Do([]byte(encode("CLIENT", "LIST")))
	return strings.Count(out, "id=") - 1
}

// preconnect opens server_connections links to every server at start-up,
// and requests spread over them.
func TestRedisPreconnectServerConnections(t *testing.T) {
	b1, b2 := harness.Redis(t), harness.Redis(t)
	addr := startCustomPool(t, "preconnect = true\n  server_connections = 3", b1.Addr, b2.Addr)
	deadline := time.Now().Add(5 * time.Second)
	for serverConnections(t, b1.Addr) != 3 || serverConnections(t, b2.Addr) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("preconnect: %d and %d server connections, want 3 each",
				serverConnections(t, b1.Addr), serverConnections(t, b2.Addr))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// RESP2 clients use the preconnected links; RESP3 clients get a set of
	// server_connections links of their own, opened on first use.
	for _, tc := range []struct{ proto, want int }{{2, 3}, {3, 6}} {
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 8, Protocol: tc.proto})
		trafficOver(t, c)
		c.Close()
		if n := serverConnections(t, b1.Addr); n != tc.want {
			t.Fatalf("RESP%d: %d server connections after traffic, want %d", tc.proto, n, tc.want)
		}
	}
}

// trafficOver runs 8 goroutines of SET/GET round trips through c.
func trafficOver(t *testing.T, c *redis.Client) {
	done := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := range 200 {
				k := fmt.Sprintf("w%d:%d", w, i)
				if err := c.Set(ctx, k, k, 0).Err(); err != nil {
					done <- err
					return
				}
				if v, err := c.Get(ctx, k).Result(); err != nil || v != k {
					done <- fmt.Errorf("get %s = %q, %v", k, v, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// ejectTrace kills the first server behind proxy and returns how many
// requests for one of its keys fail before the key moves to the other
// server, then how many fail once server_retry_timeout (1s) has passed.
// It speaks raw RESP: go-redis v9 starts every connection with HELLO, on
// which nutcracker closes the connection.
func ejectTrace(t *testing.T, proxy string, b1, b2 *harness.Proc) (before, after int) {
	t.Helper()
	c := newRespSession(t, proxy)
	defer c.Close()
	set := func(k string) string { return c.Do([]byte(encode("SET", k, "moved"))) }
	var onDead []string
	d1 := direct(t, b1)
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("ej:%d", i)
		if r := set(k); r != "+OK\r\n" {
			t.Fatalf("set %s: %q", k, r)
		}
		if d1.Exists(ctx, k).Val() == 1 {
			onDead = append(onDead, k)
		}
	}
	if len(onDead) == 0 || len(onDead) == 40 {
		t.Fatalf("%d of 40 keys on the first server", len(onDead))
	}
	b1.Kill()
	time.Sleep(100 * time.Millisecond) // let the proxy see the idle connection close
	count := func() int {
		for n := 0; n <= 10; n++ {
			switch r := set(onDead[0]); r {
			case "+OK\r\n":
				return n
			case "-ERR Connection refused\r\n":
			default:
				t.Fatalf("%s: unexpected reply %q", proxy, r)
			}
		}
		t.Fatalf("%s: still failing after 10 errors", proxy)
		return 0
	}
	before = count()
	// Every key of the dead server now lives on the second one.
	for _, k := range onDead {
		if r := set(k); r != "+OK\r\n" {
			t.Fatalf("set %s after ejection: %q", k, r)
		}
	}
	if n := direct(t, b2).Exists(ctx, onDead...).Val(); n != int64(len(onDead)) {
		t.Fatalf("%d of %d moved keys on the live server", n, len(onDead))
	}
	time.Sleep(1200 * time.Millisecond)
	after = count()
	return before, after
}

// auto_eject_hosts: a dead server is ejected after server_failure_limit
// consecutive failures (the close of its idle connection counts, as in
// twemproxy's server_close), its keys move to the other servers, and after
// server_retry_timeout it is tried again. nutcracker and nuthatch must fail
// the same number of requests.
func TestRedisAutoEject(t *testing.T) {
	const attrs = `timeout = "500ms"
  auto_eject_hosts = true
  server_failure_limit = 2
  server_retry_timeout = "1s"`
	b1, b2 := harness.Redis(t), harness.Redis(t)
	nh := startCustomPool(t, attrs, b1.Addr, b2.Addr)
	nhBefore, nhAfter := ejectTrace(t, nh, b1, b2)

	// Restarted, the server is used again for its keys (empty: it lost them).
	b1 = restartRedis(t, b1)
	c := redis.NewClient(&redis.Options{Addr: nh, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n1 := direct(t, b1).DBSize(ctx).Val()
		if err := c.Set(ctx, fmt.Sprintf("back:%d", n1), "v", 0).Err(); err == nil && n1 > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted server never used again")
		}
		time.Sleep(100 * time.Millisecond)
	}

	harness.Need(t, "nutcracker")
	c1, c2 := harness.Redis(t), harness.Redis(t)
	ncAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	harness.Nutcracker(t, fmt.Sprintf(`eject:
  listen: %s
  redis: true
  distribution: modula
  timeout: 500
  auto_eject_hosts: true
  server_failure_limit: 2
  server_retry_timeout: 1000
  servers:
   - %s:1 s1
   - %s:1 s2
`, ncAddr, c1.Addr, c2.Addr), ncAddr)
	ncBefore, ncAfter := ejectTrace(t, ncAddr, c1, c2)
	t.Logf("failures before ejection: nutcracker %d, nuthatch %d; after the retry timeout: %d, %d",
		ncBefore, nhBefore, ncAfter, nhAfter)
	if ncBefore != nhBefore || ncAfter != nhAfter {
		t.Errorf("nuthatch failed %d then %d requests, nutcracker %d then %d", nhBefore, nhAfter, ncBefore, ncAfter)
	}
	if nhBefore == 0 || nhAfter == 0 {
		t.Errorf("no failure seen (%d, %d)", nhBefore, nhAfter)
	}
}
