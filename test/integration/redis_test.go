package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var ctx = context.Background()

func TestRedisSetGetAcrossBackends(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	seen := map[int]int{}
	for i := 0; i < 200; i++ {
		k := fmt.Sprintf("key:%d", i)
		if err := c.Set(ctx, k, "v"+k, 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		v, err := c.Get(ctx, k).Result()
		if err != nil || v != "v"+k {
			t.Fatalf("get %s = %q, %v", k, v, err)
		}
		seen[rp.owner(t, k)]++
	}
	if seen[0] == 0 || seen[1] == 0 || seen[-1] != 0 {
		t.Fatalf("keys not spread over both backends: %v", seen)
	}
}

func TestRedisNullKeyAndValue(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	if err := c.Set(ctx, "", "empty-key", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "").Result(); v != "empty-key" {
		t.Fatalf("empty key: %q", v)
	}
	if err := c.Set(ctx, "k", "", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); v != "" || err != nil {
		t.Fatalf("empty value: %q %v", v, err)
	}
	if err := c.MSet(ctx, "", "val", "k", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "").Result(); v != "val" {
		t.Fatalf("mset empty key: %q", v)
	}
}

func TestRedisPingEchoQuit(t *testing.T) {
	rp := startRedisPool(t, 1, "")
	r := dialRaw(t, rp.addr)
	r.send("*1\r\n$4\r\nPING\r\n")
	r.expect("+PONG\r\n")
	r.send("PING hello\r\n")
	r.expect("$5\r\nhello\r\n")
	r.send("*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n")
	r.expect("$3\r\nabc\r\n")
	r.send("*1\r\n$4\r\nQUIT\r\n")
	if got := r.expectClosed(); got != "+OK\r\n" {
		t.Fatalf("quit: %q", got)
	}
}

func TestRedisPipelineOrderAcrossServers(t *testing.T) {
	rp := startRedisPool(t, 3, "")
	c := rp.client(t)
	const n = 2000
	pipe := c.Pipeline()
	for i := 0; i < n; i++ {
		pipe.Set(ctx, fmt.Sprintf("p:%d", i), i, 0)
	}
	gets := make([]*redis.StringCmd, n)
	for i := 0; i < n; i++ {
		gets[i] = pipe.Get(ctx, fmt.Sprintf("p:%d", i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, g := range gets {
		if v, _ := g.Result(); v != fmt.Sprint(i) {
			t.Fatalf("reply %d out of order: %q", i, v)
		}
	}
}

func TestRedisInvalidPipeline(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	pipe := c.Pipeline()
	pipe.Set(ctx, "a", "1", 0)
	pipe.Set(ctx, "b", "2", 0)
	lp := pipe.LPush(ctx, "a", "x")
	pipe.Set(ctx, "c", "3", 0)
	g := pipe.Get(ctx, "c")
	pipe.Exec(ctx)
	if err := lp.Err(); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("lpush on string: %v", err)
	}
	if v, _ := g.Result(); v != "3" {
		t.Fatalf("after error: %q", v)
	}
	if err := c.Set(ctx, "d", "4", 0).Err(); err != nil {
		t.Fatalf("connection unusable after error: %v", err)
	}
}

func TestRedisMGetMSetDel(t *testing.T) {
	rp := startRedisPool(t, 3, "")
	c := rp.client(t)
	for _, count := range []int{1, 2, 10, 171, 1000} {
		var kv []any
		var keys []string
		for i := 0; i < count; i++ {
			k := fmt.Sprintf("m%d:%d", count, i)
			keys = append(keys, k)
			kv = append(kv, k, "v"+k)
		}
		if err := c.MSet(ctx, kv...).Err(); err != nil {
			t.Fatalf("mset %d: %v", count, err)
		}
		// Mix in missing keys at shuffled positions.
		query := []string{}
		for i, k := range keys {
			query = append(query, k)
			if i%3 == 0 {
				query = append(query, "missing:"+k)
			}
		}
		vals, err := c.MGet(ctx, query...).Result()
		if err != nil {
			t.Fatalf("mget %d: %v", count, err)
		}
		for i, k := range query {
			if strings.HasPrefix(k, "missing:") {
				if vals[i] != nil {
					t.Fatalf("mget %s = %v, want nil", k, vals[i])
				}
			} else if vals[i] != "v"+k {
				t.Fatalf("mget %s = %v", k, vals[i])
			}
		}
		if n, err := c.Exists(ctx, query...).Result(); err != nil || n != int64(count) {
			t.Fatalf("exists = %d %v, want %d", n, err, count)
		}
		if n, err := c.Del(ctx, query...).Result(); err != nil || n != int64(count) {
			t.Fatalf("del = %d %v, want %d", n, err, count)
		}
		vals, _ = c.MGet(ctx, keys...).Result()
		for i, v := range vals {
			if v != nil {
				t.Fatalf("after del %s = %v", keys[i], v)
			}
		}
	}
}

func TestRedisLargeBinaryValues(t *testing.T) {
	// 48 MiB in one MSET: twemproxy's 400 ms is too tight on a busy machine.
	rp := startRedisPool(t, 2, `timeout = "20s"`)
	c := rp.client(t)
	big := make([]byte, 16<<20+1024)
	for i := range big {
		big[i] = byte(i * 7)
	}
	var kv []any
	for i := 0; i < 3; i++ {
		kv = append(kv, fmt.Sprintf("big:%d", i), big, fmt.Sprintf("empty:%d", i), "")
	}
	if err := c.MSet(ctx, kv...).Err(); err != nil {
		t.Fatal(err)
	}
	vals, err := c.MGet(ctx, "big:0", "empty:0", "big:1", "empty:1", "big:2", "empty:2").Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if i%2 == 0 && v != string(big) {
			t.Fatalf("big value %d corrupted (len %d)", i, len(v.(string)))
		}
		if i%2 == 1 && v != "" {
			t.Fatalf("empty value %d = %v", i, v)
		}
	}
}

func TestRedisByteAtATime(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	r := dialRaw(t, rp.addr)
	req := "*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n*1\r\n$4\r\nPING\r\n"
	for i := 0; i < len(req); i++ {
		r.send(req[i : i+1])
		time.Sleep(time.Millisecond)
	}
	r.expect("+OK\r\n$3\r\nbar\r\n+PONG\r\n")
}

func TestRedisErrorsKeepConnection(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	r := dialRaw(t, rp.addr)
	r.send("*1\r\n$3\r\nGET\r\n")
	r.expect("-ERR wrong number of arguments for 'get' command\r\n")
	r.send("*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n")
	line, _ := r.r.ReadString('\n')
	if !strings.HasPrefix(line, "-ERR ") || !strings.Contains(line, "keys") {
		t.Fatalf("keys: %q", line)
	}
	r.send("*3\r\n$6\r\nRENAME\r\n$1\r\na\r\n$1\r\nb\r\n")
	line, _ = r.r.ReadString('\n')
	if !strings.HasPrefix(line, "-ERR ") {
		t.Fatalf("rename: %q", line)
	}
	r.send("*2\r\n$7\r\nNOTACMD\r\n$1\r\nx\r\n")
	r.expect("-ERR unknown command 'NOTACMD', with args beginning with: 'x' \r\n")
	r.send("*1\r\n$4\r\nPING\r\n")
	r.expect("+PONG\r\n")
}

func TestRedisProtocolErrorCloses(t *testing.T) {
	rp := startRedisPool(t, 1, "")
	for req, want := range map[string]string{
		"*3000000000\r\n": "-ERR Protocol error: invalid multibulk length\r\n",
		"*1\r\nfoo\r\n":   "-ERR Protocol error: expected '$', got 'f'\r\n",
		"*1\r\n$-10\r\n":  "-ERR Protocol error: invalid bulk length\r\n",
	} {
		r := dialRaw(t, rp.addr)
		r.send(req)
		if got := r.expectClosed(); got != want {
			t.Errorf("%q: got %q, want %q", req, got, want)
		}
	}
	// Other clients are untouched.
	c := rp.client(t)
	if err := c.Set(ctx, "still", "ok", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestRedisBackendDown(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	var onDead, onLive string
	for i := 0; onDead == "" || onLive == ""; i++ {
		k := fmt.Sprintf("d:%d", i)
		c.Set(ctx, k, "x", 0)
		if rp.owner(t, k) == 0 {
			onDead = k
		} else {
			onLive = k
		}
	}
	rp.backends[0].Kill()
	err := c.Get(ctx, onDead).Err()
	if err == nil || !strings.Contains(err.Error(), "Connection refused") && !strings.Contains(err.Error(), "reset by peer") {
		t.Fatalf("get on dead backend: %v", err)
	}
	if v, err := c.Get(ctx, onLive).Result(); err != nil || v != "x" {
		t.Fatalf("get on live backend: %q %v", v, err)
	}
	if err := c.MGet(ctx, onLive, onDead).Err(); err == nil {
		t.Fatal("mget spanning a dead backend succeeded")
	}
	if v, err := c.Get(ctx, onLive).Result(); err != nil || v != "x" {
		t.Fatalf("connection unusable after failure: %q %v", v, err)
	}
}

func TestRedisTimeout(t *testing.T) {
	rp := startRedisPool(t, 1, "")
	c := rp.client(t)
	start := time.Now()
	err := c.Eval(ctx, "local i = 0 while i < 300000000 do i = i + 1 end return i", []string{"x"}).Err()
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow eval: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	// The backend is busy for a while; a fast eval eventually succeeds again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := c.Eval(ctx, "local s = 0 for i=1,100 do s = s + i end return s", []string{"x"}).Int()
		if err == nil && v == 5050 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fast eval never recovered: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestRedisAuth(t *testing.T) {
	rp := startRedisPool(t, 2, `redis_auth = "hellopasswd"`, "--requirepass", "hellopasswd")
	r := dialRaw(t, rp.addr)
	r.send("*1\r\n$4\r\nPING\r\n")
	r.expect("-NOAUTH Authentication required.\r\n")
	r.send("*2\r\n$4\r\nAUTH\r\n$3\r\nbad\r\n")
	r.expect("-WRONGPASS invalid username-password pair or user is disabled.\r\n")
	r.send("*2\r\n$4\r\nAUTH\r\n$11\r\nhellopasswd\r\n")
	r.expect("+OK\r\n")
	r.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
	r.expect("+OK\r\n$1\r\nv\r\n")

	// go-redis authenticates through HELLO or AUTH and works.
	c := redis.NewClient(&redis.Options{Addr: rp.addr, Password: "hellopasswd"})
	defer c.Close()
	if err := c.Set(ctx, "x", "y", 0).Err(); err != nil {
		t.Fatalf("go-redis with password: %v", err)
	}
	bad := redis.NewClient(&redis.Options{Addr: rp.addr, Password: "nope", MaxRetries: -1})
	defer bad.Close()
	err := bad.Ping(ctx).Err()
	var rerr redis.Error
	if err == nil || !errors.As(err, &rerr) {
		t.Fatalf("wrong password accepted: %v", err)
	}
}

func TestRedisNoPassOnProxy(t *testing.T) {
	rp := startRedisPool(t, 1, "")
	r := dialRaw(t, rp.addr)
	r.send("*2\r\n$4\r\nAUTH\r\n$3\r\nabc\r\n")
	r.expect("-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n")
}

func TestRedisSelect(t *testing.T) {
	rp := startRedisPool(t, 2, `redis_db = 3`)
	c := redis.NewClient(&redis.Options{Addr: rp.addr, DB: 3})
	defer c.Close()
	if err := c.Set(ctx, "dbkey", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range rp.backends {
		d := redis.NewClient(&redis.Options{Addr: b.Addr, DB: 3})
		if n, _ := d.Exists(ctx, "dbkey").Result(); n == 1 {
			found = true
		}
		d.Close()
	}
	if !found {
		t.Fatal("key not written to database 3")
	}
	r := dialRaw(t, rp.addr)
	r.send("SELECT 3\r\n")
	r.expect("+OK\r\n")
	r.send("SELECT 0\r\n")
	line, _ := r.r.ReadString('\n')
	if !strings.HasPrefix(line, "-ERR ") {
		t.Fatalf("select 0: %q", line)
	}
}

func TestRedisClientConnectionsLimit(t *testing.T) {
	rp := startRedisPool(t, 1, `client_connections = 2`)
	time.Sleep(200 * time.Millisecond) // let the proxy see the start-up probe's close
	a, b := dialRaw(t, rp.addr), dialRaw(t, rp.addr)
	a.send("PING\r\n")
	a.expect("+PONG\r\n")
	b.send("PING\r\n")
	b.expect("+PONG\r\n")
	c := dialRaw(t, rp.addr)
	if got := c.expectClosed(); got != "-ERR max number of clients reached\r\n" {
		t.Fatalf("third client: %q", got)
	}
}

func TestRedisClientIdleTimeout(t *testing.T) {
	rp := startRedisPool(t, 1, `client_idle_timeout = "300ms"`)
	idle := dialRaw(t, rp.addr)
	stalled := dialRaw(t, rp.addr)
	stalled.send("*3\r\n$3\r\nSET\r\n$1\r\nk") // slowloris: half a request
	active := dialRaw(t, rp.addr)
	start := time.Now()
	for time.Since(start) < 900*time.Millisecond {
		active.send("PING\r\n")
		active.expect("+PONG\r\n")
		time.Sleep(100 * time.Millisecond)
	}
	for name, c := range map[string]*rawConn{"idle": idle, "stalled": stalled} {
		if got := c.expectClosed(); got != "" {
			t.Errorf("%s client got %q before close", name, got)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle clients closed after %v", d)
	}
}

func TestRedisSlowLog(t *testing.T) {
	rp := startRedisPool(t, 1, "slowlog_slower_than = \"50ms\"\n  slowlog_log_keys = true")
	c := rp.client(t)
	if err := c.Set(ctx, "fast", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slow := "local t = redis.call('TIME') local s = t[1]*1000000+t[2] while true do local n = redis.call('TIME') if n[1]*1000000+n[2] - s > 120000 then break end end return 1"
	if err := c.Eval(ctx, slow, []string{"slowkey"}).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(rp.proxy.Output(), "slow request") {
		if time.Now().After(deadline) {
			t.Fatalf("no slow-log record:\n%s", rp.proxy.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(rp.proxy.Output(), "\n") {
		if strings.Contains(l, "slow request") {
			line = l
		}
	}
	for _, want := range []string{"command=eval", "key=slowkey", "server="} {
		if !strings.Contains(line, want) {
			t.Errorf("slow-log record lacks %s: %s", want, line)
		}
	}
	if strings.Contains(rp.proxy.Output(), "command=set") {
		t.Error("a fast request was logged as slow")
	}
}

func TestRedisAuthRateLimited(t *testing.T) {
	rp := startRedisPool(t, 1, `redis_auth = "s3cret"`, "--requirepass", "s3cret")
	r := dialRaw(t, rp.addr)
	limited := 0
	// The limit is 100 checks per wall-clock second. A burst that crosses
	// a second's boundary is split between two seconds, so it takes more
	// than 200 to be sure one of them goes over (150 did not, now and then).
	for i := 0; i < 250; i++ {
		r.send("AUTH wrong\r\n")
		line, err := r.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(line, "-WRONGPASS"):
		case strings.HasPrefix(line, "-ERR too many failed AUTH attempts"):
			limited++
		default:
			t.Fatalf("AUTH wrong: %q", line)
		}
	}
	if limited == 0 {
		t.Fatal("250 failed AUTHs in a burst were never rate-limited")
	}
	// Once the second is over the right password works again.
	time.Sleep(1100 * time.Millisecond)
	r.send("AUTH s3cret\r\nPING\r\n")
	r.expect("+OK\r\n+PONG\r\n")
	if strings.Contains(rp.proxy.Output(), "s3cret") || strings.Contains(rp.proxy.Output(), "wrong") {
		t.Error("a password reached the log")
	}
}
