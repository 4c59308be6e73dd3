package integration

// Real clients through nuthatch: go-redis v9 (its HELLO / CLIENT SETINFO
// handshake, pipelines, AUTH, SELECT), redis-cli and redis-benchmark.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

func TestGoRedisHandshakes(t *testing.T) {
	plain := startRedisPool(t, 2, "")
	authed := startRedisPool(t, 2, `redis_auth = "s3cret"
  redis_db = 2`, "--requirepass", "s3cret")
	for _, tc := range []struct {
		name string
		rp   *redisPool
		opt  redis.Options
	}{
		{"resp3-default", plain, redis.Options{}},
		{"resp2", plain, redis.Options{Protocol: 2}},
		{"client-name", plain, redis.Options{ClientName: "app-1"}},
		{"no-identity", plain, redis.Options{DisableIdentity: true}},
		{"password-db", authed, redis.Options{Password: "s3cret", DB: 2}},
		{"password-db-resp2", authed, redis.Options{Password: "s3cret", DB: 2, Protocol: 2}},
		{"user-password", authed, redis.Options{Username: "default", Password: "s3cret", DB: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := tc.opt
			opt.Addr, opt.MaxRetries = tc.rp.addr, -1
			c := redis.NewClient(&opt)
			defer c.Close()
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatalf("ping: %v", err)
			}
			kv := []any{}
			keys := []string{}
			for i := range 50 {
				k := fmt.Sprintf("%s:%d", tc.name, i)
				kv = append(kv, k, i)
				keys = append(keys, k)
			}
			if err := c.MSet(ctx, kv...).Err(); err != nil {
				t.Fatalf("mset: %v", err)
			}
			vals, err := c.MGet(ctx, keys...).Result()
			if err != nil || len(vals) != 50 || vals[49] != "49" {
				t.Fatalf("mget: %v %v", vals, err)
			}
			cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.Incr(ctx, k)
				}
				return nil
			})
			if err != nil || cmds[10].(*redis.IntCmd).Val() != 11 {
				t.Fatalf("pipeline: %v", err)
			}
			if opt.ClientName != "" {
				if n := c.ClientGetName(ctx).Val(); n != opt.ClientName {
					t.Fatalf("client getname = %q", n)
				}
			}
			if opt.DB != 0 {
				// The keys went to the pool's database on the servers.
				found := int64(0)
				for _, b := range tc.rp.backends {
					d := redis.NewClient(&redis.Options{Addr: b.Addr, Password: "s3cret", DB: opt.DB})
					found += d.Exists(ctx, keys...).Val()
					d.Close()
				}
				if found != 50 {
					t.Fatalf("%d keys in db %d", found, opt.DB)
				}
			}
		})
	}
	// A wrong password and a database the pool does not serve fail the
	// connection set-up with redis's own kind of error.
	for name, opt := range map[string]redis.Options{
		"bad-password": {Addr: authed.addr, Password: "nope", DB: 2},
		"wrong-db":     {Addr: authed.addr, Password: "s3cret", DB: 5},
		"no-password":  {Addr: authed.addr, DB: 2},
	} {
		opt.MaxRetries = -1
		c := redis.NewClient(&opt)
		err := c.Ping(ctx).Err()
		c.Close()
		var rerr redis.Error
		if err == nil || !errors.As(err, &rerr) {
			t.Errorf("%s: %v, want a redis error", name, err)
		}
	}
}

func runCmd(t *testing.T, stdin io.Reader, name string, args ...string) string {
	t.Helper()
	harness.Need(t, name)
	cmd := exec.Command(name, args...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v timed out\n%s", name, args, out.String())
	}
	return out.String()
}

func TestRedisCLI(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	port := rp.addr[strings.LastIndexByte(rp.addr, ':')+1:]
	cli := func(stdin string, args ...string) string {
		return runCmd(t, strings.NewReader(stdin), "redis-cli", append([]string{"-p", port}, args...)...)
	}
	if out := cli("", "SET", "cli:a", "hello world"); out != "OK\n" {
		t.Fatalf("set: %q", out)
	}
	if out := cli("", "GET", "cli:a"); out != "hello world\n" {
		t.Fatalf("get: %q", out)
	}
	if out := cli("", "MGET", "cli:a", "nope"); out != "hello world\n\n" {
		t.Fatalf("mget: %q", out)
	}
	if out := cli("", "KEYS", "*"); !strings.Contains(out, "not supported by nuthatch") {
		t.Fatalf("keys: %q", out)
	}
	// Commands on stdin, one per line.
	if out := cli("SET cli:b 1\nINCR cli:b\nGET cli:b\n"); out != "OK\n2\n2\n" {
		t.Fatalf("stdin commands: %q", out)
	}

	// --pipe mass insertion.
	var b bytes.Buffer
	const n = 5000
	for i := range n {
		b.WriteString(encode("SET", fmt.Sprintf("pipe:%d", i), fmt.Sprint(i)))
	}
	out := runCmd(t, &b, "redis-cli", "-p", port, "--pipe")
	if !strings.Contains(out, fmt.Sprintf("errors: 0, replies: %d", n)) {
		t.Fatalf("--pipe: %q", out)
	}
	if out := cli("", "GET", "pipe:4999"); out != "4999\n" {
		t.Fatalf("after --pipe: %q", out)
	}

	// The interactive start-up on a terminal (redis-cli 7 asks for COMMAND
	// DOCS to show hints), typing slowly so that the line editor is ready.
	harness.Need(t, "script")
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		for _, line := range []string{"SET cli:c 42", "GET cli:c", "quit"} {
			time.Sleep(300 * time.Millisecond)
			pw.Write([]byte(line + "\r"))
		}
		time.Sleep(300 * time.Millisecond)
	}()
	out = runCmd(t, pr, "script", "-qec", "stty cols 80 rows 24; redis-cli -p "+port, "/dev/null")
	if !strings.Contains(out, "OK\r\n") || !strings.Contains(out, "\"42\"\r\n") {
		t.Fatalf("interactive redis-cli: %q", out)
	}
	r := dialRaw(t, rp.addr)
	r.send(encode("COMMAND", "DOCS"))
	r.expect("*0\r\n")
}

// benchLine matches a result of redis-benchmark -q; progress updates are
// separated by carriage returns.
var benchLine = regexp.MustCompile(`(?m)^\s*([A-Z]+)[^:\r]*: ([0-9.]+) requests per second`)

func TestRedisBenchmark(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	port := rp.addr[strings.LastIndexByte(rp.addr, ':')+1:]
	for _, args := range [][]string{
		{"-t", "set,get,mset", "-n", "20000", "-q"},
		{"-t", "set,get,mset", "-n", "20000", "-q", "-P", "16"},
		{"-t", "set,get,mset,incr,lpush,rpop,sadd,hset,zadd", "-n", "10000", "-q", "-r", "100000", "-P", "16"},
	} {
		out := runCmd(t, nil, "redis-benchmark", append([]string{"-p", port}, args...)...)
		out = strings.ReplaceAll(out, "\r", "\n")
		if strings.Contains(strings.ToLower(out), "error") && !strings.Contains(out, "CONFIG") {
			t.Errorf("redis-benchmark %v reported errors:\n%s", args, out)
		}
		seen := map[string]bool{}
		for _, m := range benchLine.FindAllStringSubmatch(out, -1) {
			seen[m[1]] = true
			t.Logf("%v: %s %s req/s", args, m[1], m[2])
		}
		for _, want := range strings.Split(args[1], ",") {
			if !seen[strings.ToUpper(want)] {
				t.Errorf("redis-benchmark %v: no result for %s:\n%s", args, want, out)
			}
		}
	}
}

// The connection commands clients send while setting up (PING, ECHO,
// CLIENT SETNAME/GETNAME, HELLO 2, SELECT of the served database) get the
// same bytes as from a redis-server, on one connection.
func TestRedisLocalCommandsLikeRedis(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	script := []string{
		encode("PING"), encode("PING", "msg"), encode("PING", "a", "b"), encode("ECHO", "x"), encode("ECHO"),
		encode("CLIENT", "GETNAME"), encode("CLIENT", "SETNAME", "app"), encode("CLIENT", "GETNAME"),
		encode("CLIENT", "SETNAME", "bad name"), encode("CLIENT", "SETNAME"), encode("CLIENT", "GETNAME", "x"),
		encode("HELLO", "2", "SETNAME", "app2"), encode("CLIENT", "GETNAME"),
		encode("HELLO", "2", "setname"), encode("HELLO", "2", "Bogus"), encode("HELLO", "x"), encode("HELLO", "4"),
		encode("HELLO", "2", "AUTH", "default", "anything"), encode("HELLO", "2", "AUTH", "other", "pw"),
		encode("SELECT", "0"), encode("SELECT", "x"), encode("AUTH", "pw"), encode("AUTH", "user", "pw"),
		encode("QUIT"),
	}
	a, b := newRespSession(t, rp.backends[0].Addr), newRespSession(t, rp.addr)
	for _, req := range script {
		x, y := a.Do([]byte(req)), b.Do([]byte(req))
		// HELLO's map names the server and its version.
		// The values after "server" and "version" differ by design.
		serverVersion := regexp.MustCompile(`(\$6\r\nserver\r\n|\$7\r\nversion\r\n)\$\d+\r\n[^\r]*\r\n`)
		x = serverVersion.ReplaceAllString(x, "$1")
		y = serverVersion.ReplaceAllString(y, "$1")
		if strings.HasPrefix(x, "*14\r\n") { // the connection id
			x = regexp.MustCompile(`\$2\r\nid\r\n:\d+\r\n`).ReplaceAllString(x, "")
			y = regexp.MustCompile(`\$2\r\nid\r\n:\d+\r\n`).ReplaceAllString(y, "")
		}
		if x != y {
			t.Errorf("%q:\n redis:    %q\n nuthatch: %q", req, x, y)
		}
	}
}
