package integration

// The real-client matrix of issue #17: each client with its default
// options, then its RESP2 and RESP3 options, through the same scenario —
// strings, a hash (HGETALL as the client's map type; a RESP3 map where the
// protocol is RESP3), MGET of 50 keys with misses across the backends, a
// pipeline of 100 commands, an error reply, INFO through the client's own
// parser (redis-py, ioredis), and a backend restart. The Node clients come
// from test/clients/node (npm ci), the Python ones are Debian's packages
// for /usr/bin/python3, both installed by test/scripts/deps.sh; a client
// that is missing fails its rows, it is not skipped.
//
// Every Redis row runs twice: direct/ against one redis-server, which
// proves the scenario and its expectations are real Redis behaviour, and
// proxy/ through nuthatch in front of three.
//
// Each row is a subtest with one subtest per check, so that a failure
// names the check: TestClientMatrix/proxy/redis-py/default/info.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// matrixTarget is where a row's client connects, and how to restart one
// of the servers behind it.
type matrixTarget struct {
	addr    string
	version string // redis_version of the backends
	restart func() error
}

// checkResult is one line of a client script: a check passed or failed.
type checkResult struct {
	Check  string          `json:"check"`
	OK     bool            `json:"ok"`
	Error  string          `json:"error"`
	Detail json.RawMessage `json:"detail"`
	Event  string          `json:"event"`
}

var (
	redisChecks   = []string{"connect", "strings", "hash", "proto", "mget", "pipeline", "error", "restart"}
	redisInfo     = []string{"connect", "strings", "hash", "proto", "mget", "pipeline", "error", "info", "restart"}
	memcacheCheck = []string{"connect", "strings", "incr", "mget", "error", "restart"}
)

func clientsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "clients")
}

// needClientTools fails (never skips) when node, its packages or Debian's
// python3 modules are missing.
func needClientTools(t *testing.T) {
	t.Helper()
	hint := "run test/scripts/deps.sh (make deps)"
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed: %s", hint)
	}
	if _, err := os.Stat(filepath.Join(clientsDir(), "node", "node_modules", ".package-lock.json")); err != nil {
		t.Fatalf("test/clients/node has no node_modules: %s (it runs npm ci there)", hint)
	}
	out, err := exec.Command("/usr/bin/python3", "-c", "import redis, pymemcache").CombinedOutput()
	if err != nil {
		t.Fatalf("/usr/bin/python3 lacks Debian's python3-redis or python3-pymemcache: %s\n%s", hint, out)
	}
	for _, p := range []string{"redis-server", "redis-cli", "memcached"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed: %s", p, hint)
		}
	}
}

// restartRedisAt kills b and starts a fresh redis-server on its port; the
// new process belongs to owner (the whole matrix), not to the row.
func restartRedisAt(owner *testing.T, b **harness.Proc) error {
	(*b).Kill()
	p := harness.Start(owner, "redis-server", "--port", strconv.Itoa((*b).Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", owner.TempDir())
	p.Port, p.Addr = (*b).Port, (*b).Addr
	*b = p
	return waitAccept(p.Addr)
}

func restartMemcachedAt(owner *testing.T, b **harness.Proc) error {
	(*b).Kill()
	args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa((*b).Port), "-U", "0"}
	if os.Getuid() == 0 {
		args = append(args, "-u", "root")
	}
	p := harness.Start(owner, "memcached", args...)
	p.Port, p.Addr = (*b).Port, (*b).Addr
	*b = p
	return waitAccept(p.Addr)
}

func waitAccept(addr string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting after the restart: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func redisVersion(t *testing.T, addr string) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer c.Close()
	s, err := c.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^redis_version:(\S+)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no redis_version in %q", s)
	}
	return m[1]
}

func TestClientMatrix(t *testing.T) {
	needClientTools(t)
	start := time.Now()
	defer func() { t.Logf("client matrix took %v", time.Since(start).Round(time.Millisecond)) }()

	// Redis: one redis-server alone, and nuthatch in front of three.
	single := harness.Redis(t)
	rp := startRedisPool(t, 3, "")
	version := redisVersion(t, single.Addr)
	redisTargets := []struct {
		name string
		tg   matrixTarget
	}{
		{"direct", matrixTarget{addr: single.Addr, version: version, restart: func() error { return restartRedisAt(t, &single) }}},
		{"proxy", matrixTarget{addr: rp.addr, version: version, restart: func() error { return restartRedisAt(t, &rp.backends[0]) }}},
	}
	type row struct {
		name   string
		checks []string
		run    func(t *testing.T, tg matrixTarget, prefix string) []checkResult
	}
	node := func(script, module string, opts map[string]any, proto int) func(*testing.T, matrixTarget, string) []checkResult {
		return func(t *testing.T, tg matrixTarget, prefix string) []checkResult {
			return runClientScript(t, tg, []string{"node", filepath.Join(clientsDir(), "node", script)},
				map[string]any{"module": module, "addr": tg.addr, "prefix": prefix, "opts": opts, "expectProto": proto, "expectVersion": tg.version})
		}
	}
	py := func(script string, opts map[string]any, proto int) func(*testing.T, matrixTarget, string) []checkResult {
		return func(t *testing.T, tg matrixTarget, prefix string) []checkResult {
			return runClientScript(t, tg, []string{"/usr/bin/python3", filepath.Join(clientsDir(), "python", script)},
				map[string]any{"addr": tg.addr, "prefix": prefix, "opts": opts, "expectProto": proto, "expectVersion": tg.version})
		}
	}
	goredis := func(opt redis.Options, proto int) func(*testing.T, matrixTarget, string) []checkResult {
		return func(t *testing.T, tg matrixTarget, prefix string) []checkResult {
			return goRedisScenario(tg, opt, proto, prefix)
		}
	}
	cli := func(resp3 bool) func(*testing.T, matrixTarget, string) []checkResult {
		return func(t *testing.T, tg matrixTarget, prefix string) []checkResult {
			return redisCliScenario(tg, resp3, prefix)
		}
	}
	rows := []row{
		// node-redis 4 speaks RESP2 only; 6 sends HELLO 3 by default.
		{"node-redis4/default", redisChecks, node("redis_client.js", "redis4", nil, 2)},
		{"node-redis6/default", redisChecks, node("redis_client.js", "redis6", nil, 3)},
		{"node-redis6/resp2", redisChecks, node("redis_client.js", "redis6", map[string]any{"RESP": 2}, 2)},
		{"node-redis6/resp3", redisChecks, node("redis_client.js", "redis6", map[string]any{"RESP": 3}, 3)},
		// ioredis: the ready check (enableReadyCheck, on by default) sends
		// INFO and parses it before the client is ready. ioredis 6 sends
		// HELLO 3 by default (protocol: 3) and falls back to RESP2 when it is
		// refused; a RESP3 row expects RESP3 to be negotiated, as with Redis.
		{"ioredis5/default", redisInfo, node("ioredis_client.js", "ioredis5", nil, 2)},
		{"ioredis5/no-ready-check", redisInfo, node("ioredis_client.js", "ioredis5", map[string]any{"enableReadyCheck": false}, 2)},
		{"ioredis6/default", redisInfo, node("ioredis_client.js", "ioredis6", nil, 3)},
		{"ioredis6/resp2", redisInfo, node("ioredis_client.js", "ioredis6", map[string]any{"protocol": 2}, 2)},
		{"ioredis6/resp3-mapping", redisInfo, node("ioredis_client.js", "ioredis6", map[string]any{"protocol": 3, "replyMapping": "resp3"}, 3)},
		// go-redis v9 sends HELLO 3 by default and falls back to RESP2 on
		// an error reply; the proto check reads HGETALL raw (a map in RESP3).
		{"go-redis/default", redisChecks, goredis(redis.Options{}, 3)},
		{"go-redis/resp2", redisChecks, goredis(redis.Options{Protocol: 2}, 2)},
		{"go-redis/resp3", redisChecks, goredis(redis.Options{Protocol: 3}, 3)},
		// Debian bookworm's redis-py 4.3.4 has no protocol= option (RESP3
		// came in 5.0): its default, RESP2, only.
		{"redis-py/default", redisInfo, py("redis_client.py", nil, 2)},
		{"redis-cli/default", redisChecks, cli(false)},
		{"redis-cli/resp3", redisChecks, cli(true)},
	}
	// memcached: nuthatch in front of three, and one memcached alone.
	mcSingle := harness.Memcached(t)
	mp := startMemcachePool(t, 3, "")
	mcTargets := []struct {
		name string
		tg   matrixTarget
	}{
		{"direct", matrixTarget{addr: mcSingle.Addr, restart: func() error { return restartMemcachedAt(t, &mcSingle) }}},
		{"proxy", matrixTarget{addr: mp.addr, restart: func() error { return restartMemcachedAt(t, &mp.backends[0]) }}},
	}
	mcRows := []row{
		{"memcached-npm/default", memcacheCheck, node("memcached_client.js", "memcached", nil, 0)},
		{"pymemcache/default", memcacheCheck, py("pymemcache_client.py", nil, 0)},
		{"gomemcache/default", memcacheCheck, func(t *testing.T, tg matrixTarget, prefix string) []checkResult {
			return gomemcacheScenario(tg, prefix)
		}},
	}
	// direct/ then proxy/, each with the Redis rows and the memcached rows;
	// one row at a time (the machine is small, and rows restart backends).
	for ti, name := range []string{"direct", "proxy"} {
		t.Run(name, func(t *testing.T) {
			for i, r := range rows {
				t.Run(r.name, func(t *testing.T) {
					reportChecks(t, r.checks, r.run(t, redisTargets[ti].tg, fmt.Sprintf("cm%d-%s", i, name)))
				})
			}
			for i, r := range mcRows {
				t.Run(r.name, func(t *testing.T) {
					reportChecks(t, r.checks, r.run(t, mcTargets[ti].tg, fmt.Sprintf("mc%d-%s", i, name)))
				})
			}
		})
	}
}

// reportChecks makes one subtest per expected check: passed, failed with
// the client's message, or not run (the script stopped before it).
func reportChecks(t *testing.T, want []string, got []checkResult) {
	t.Helper()
	byName := map[string]checkResult{}
	var firstFail string
	for _, r := range got {
		if r.Check == "" {
			continue
		}
		byName[r.Check] = r
		if !r.OK && firstFail == "" {
			firstFail = r.Check + ": " + r.Error
		}
	}
	for _, name := range want {
		t.Run(name, func(t *testing.T) {
			r, ok := byName[name]
			switch {
			case !ok && firstFail != "":
				t.Fatalf("not run: the client stopped after %s", firstFail)
			case !ok:
				t.Fatal("not run: the client stopped before it (see the row's log)")
			case !r.OK:
				t.Fatal(r.Error)
			case len(r.Detail) > 0:
				t.Logf("%s", r.Detail)
			}
		})
	}
}

// runClientScript runs a client script with cfg as its JSON argument,
// restarts a backend when it asks, and returns its check lines.
func runClientScript(t *testing.T, tg matrixTarget, argv []string, cfg map[string]any) []checkResult {
	t.Helper()
	js, _ := json.Marshal(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], string(js))...)
	cmd.Dir = filepath.Dir(argv[1])
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v (test/scripts/deps.sh installs the clients)", argv, err)
	}
	var results []checkResult
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var r checkResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Logf("client: %s", sc.Text())
			continue
		}
		if r.Event == "restart" {
			if err := tg.restart(); err != nil {
				t.Errorf("restart: %v", err)
			}
			io.WriteString(stdin, "go\n")
			continue
		}
		results = append(results, r)
	}
	stdin.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		t.Fatalf("%v: a client is not installed: %s", argv, stderr.String())
	case ctx.Err() != nil:
		t.Errorf("%v: killed after 40s; stderr:\n%s", argv, stderr.String())
	case err != nil && stderr.Len() > 0:
		t.Logf("%v: %v; stderr:\n%s", argv, err, stderr.String())
	}
	return results
}

// collector records checks run in Go, as the scripts print them.
type collector struct{ res []checkResult }

func (c *collector) check(name string, fn func() (any, error)) bool {
	detail, err := func() (d any, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return fn()
	}()
	r := checkResult{Check: name, OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	} else if detail != nil {
		r.Detail, _ = json.Marshal(detail)
	}
	c.res = append(c.res, r)
	return err == nil
}

// retryFor runs fn until it succeeds or d passes.
func retryFor(d time.Duration, fn func() error) (any, error) {
	deadline := time.Now().Add(d)
	failed := 0
	for {
		err := fn()
		if err == nil {
			return map[string]int{"failedAttempts": failed}, nil
		}
		failed++
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not working %v after the restart (%d attempts): %v", d, failed, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mismatch(what string, got, want any) error {
	if fmt.Sprint(got) == fmt.Sprint(want) {
		return nil
	}
	return fmt.Errorf("%s: got %#v, want %#v", what, got, want)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func matrixMgetKeys(prefix string) (keys []string, want []any) {
	for i := range 50 {
		keys = append(keys, fmt.Sprintf("%s:m:%d", prefix, i))
		if i%3 == 0 {
			want = append(want, nil)
		} else {
			want = append(want, fmt.Sprintf("v%d", i))
		}
	}
	return
}

// goRedisScenario is the scenario with go-redis v9 and opt (Addr set here).
func goRedisScenario(tg matrixTarget, opt redis.Options, proto int, p string) []checkResult {
	opt.Addr = tg.addr
	c := redis.NewClient(&opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	col := &collector{}
	if !col.check("connect", func() (any, error) { return nil, c.Ping(ctx).Err() }) {
		return col.res
	}
	col.check("strings", func() (any, error) {
		set := c.Set(ctx, p+":s", "hello", 0).Err()
		get, gerr := c.Get(ctx, p+":s").Result()
		_, miss := c.Get(ctx, p+":nokey").Result()
		app, aerr := c.Append(ctx, p+":s", " world").Result()
		get2, g2err := c.Get(ctx, p+":s").Result()
		n1, n1err := c.Incr(ctx, p+":n").Result()
		n2, n2err := c.Incr(ctx, p+":n").Result()
		if !errors.Is(miss, redis.Nil) {
			return nil, fmt.Errorf("GET missing: %v, want redis.Nil", miss)
		}
		return nil, firstErr(set, gerr, aerr, g2err, n1err, n2err, mismatch("GET", get, "hello"), mismatch("APPEND", app, 11),
			mismatch("GET after APPEND", get2, "hello world"), mismatch("INCR", []int64{n1, n2}, []int64{1, 2}))
	})
	col.check("hash", func() (any, error) {
		n, err := c.HSet(ctx, p+":h", "f1", "v1", "f2", "v2", "f3", "3").Result()
		if err != nil {
			return nil, err
		}
		h, err := c.HGetAll(ctx, p+":h").Result()
		if err != nil {
			return nil, err
		}
		return nil, firstErr(mismatch("HSET", n, 3), mismatch("HGETALL", h, map[string]string{"f1": "v1", "f2": "v2", "f3": "3"}))
	})
	col.check("proto", func() (any, error) {
		raw, err := c.Do(ctx, "HGETALL", p+":h").Result()
		if err != nil {
			return nil, err
		}
		got := 0
		switch raw.(type) {
		case map[any]any:
			got = 3
		case []any:
			got = 2
		default:
			return nil, fmt.Errorf("raw HGETALL is a %T", raw)
		}
		return map[string]int{"proto": got}, mismatch("protocol (RESP2: HGETALL is a []any; RESP3: a map)", got, proto)
	})
	col.check("mget", func() (any, error) {
		keys, want := matrixMgetKeys(p)
		for i, k := range keys {
			if want[i] != nil {
				if err := c.Set(ctx, k, want[i], 0).Err(); err != nil {
					return nil, err
				}
			}
		}
		got, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		return nil, mismatch("MGET", got, want)
	})
	col.check("pipeline", func() (any, error) {
		pl := c.Pipeline()
		var gets []*redis.StringCmd
		for i := range 50 {
			pl.Set(ctx, fmt.Sprintf("%s:p:%d", p, i), fmt.Sprintf("pv%d", i), 0)
		}
		for i := range 50 {
			gets = append(gets, pl.Get(ctx, fmt.Sprintf("%s:p:%d", p, i)))
		}
		if _, err := pl.Exec(ctx); err != nil {
			return nil, err
		}
		for i, g := range gets {
			if err := mismatch("pipelined GET", g.Val(), fmt.Sprintf("pv%d", i)); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	col.check("error", func() (any, error) {
		c.Set(ctx, p+":notint", "abc", 0)
		err := c.Incr(ctx, p+":notint").Err()
		if err == nil || !strings.HasPrefix(err.Error(), "ERR value is not an integer") {
			return nil, fmt.Errorf("INCR on a non-integer: %v, want ERR value is not an integer...", err)
		}
		v, err := c.Get(ctx, p+":notint").Result()
		return nil, firstErr(err, mismatch("GET after the error", v, "abc"))
	})
	if err := tg.restart(); err != nil {
		col.res = append(col.res, checkResult{Check: "restart", Error: err.Error()})
		return col.res
	}
	col.check("restart", func() (any, error) {
		return retryFor(10*time.Second, func() error {
			actx, acancel := context.WithTimeout(ctx, time.Second)
			defer acancel()
			var keys []string
			for i := range 10 {
				k := fmt.Sprintf("%s:r:%d", p, i)
				keys = append(keys, k)
				if err := c.Set(actx, k, "after", 0).Err(); err != nil {
					return err
				}
			}
			v, err := c.MGet(actx, keys...).Result()
			return firstErr(err, mismatch("MGET after the restart", v, []any{"after", "after", "after", "after", "after", "after", "after", "after", "after", "after"}))
		})
	})
	return col.res
}

// redisCliScenario is the scenario with redis-cli (-3 for RESP3), one
// process per step, --no-raw for typed replies.
func redisCliScenario(tg matrixTarget, resp3 bool, p string) []checkResult {
	host, port, _ := strings.Cut(tg.addr, ":")
	base := []string{"-h", host, "-p", port, "--no-raw"}
	if resp3 {
		base = append(base, "-3")
	}
	run := func(stdin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "redis-cli", append(append([]string{}, base...), args...)...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("redis-cli %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimRight(string(out), "\n"), nil
	}
	expect := func(want string, args ...string) error {
		out, err := run("", args...)
		if err != nil {
			return err
		}
		return mismatch("redis-cli "+strings.Join(args, " "), out, want)
	}
	col := &collector{}
	if !col.check("connect", func() (any, error) { return nil, expect("PONG", "PING") }) {
		return col.res
	}
	col.check("strings", func() (any, error) {
		return nil, firstErr(expect("OK", "SET", p+":s", "hello"), expect(`"hello"`, "GET", p+":s"),
			expect("(nil)", "GET", p+":nokey"), expect("(integer) 11", "APPEND", p+":s", " world"),
			expect(`"hello world"`, "GET", p+":s"), expect("(integer) 1", "INCR", p+":n"), expect("(integer) 2", "INCR", p+":n"))
	})
	col.check("hash", func() (any, error) {
		if err := expect("(integer) 3", "HSET", p+":h", "f1", "v1", "f2", "v2", "f3", "3"); err != nil {
			return nil, err
		}
		out, err := run("", "HGETALL", p+":h")
		if err != nil {
			return nil, err
		}
		want := "1) \"f1\"\n2) \"v1\"\n3) \"f2\"\n4) \"v2\"\n5) \"f3\"\n6) \"3\""
		if resp3 {
			want = "1# \"f1\" => \"v1\"\n2# \"f2\" => \"v2\"\n3# \"f3\" => \"3\""
		}
		return nil, mismatch("HGETALL", out, want)
	})
	col.check("proto", func() (any, error) {
		out, err := run("", "HGETALL", p+":h")
		if err != nil {
			return nil, err
		}
		got := 2
		if strings.HasPrefix(out, "1# ") {
			got = 3
		}
		want := 2
		if resp3 {
			want = 3
		}
		return map[string]int{"proto": got}, mismatch("protocol (RESP3 HGETALL prints as 1# f => v)", got, want)
	})
	col.check("mget", func() (any, error) {
		keys, want := matrixMgetKeys(p)
		var sets, wantOut strings.Builder
		for i, k := range keys {
			if want[i] != nil {
				fmt.Fprintf(&sets, "SET %s %s\n", k, want[i])
				fmt.Fprintf(&wantOut, "%d) %q\n", i+1, want[i])
			} else {
				fmt.Fprintf(&wantOut, "%d) (nil)\n", i+1)
			}
		}
		if _, err := run(sets.String()); err != nil {
			return nil, err
		}
		out, err := run("", append([]string{"MGET"}, keys...)...)
		if err != nil {
			return nil, err
		}
		// redis-cli right-aligns the indexes of a long array: " 1) (nil)".
		out = regexp.MustCompile(`(?m)^ +`).ReplaceAllString(out, "")
		return nil, mismatch("MGET", out, strings.TrimRight(wantOut.String(), "\n"))
	})
	col.check("pipeline", func() (any, error) {
		// 100 commands on redis-cli's stdin, one connection.
		var in, want strings.Builder
		for i := range 50 {
			fmt.Fprintf(&in, "SET %s:p:%d pv%d\n", p, i, i)
			want.WriteString("OK\n")
		}
		for i := range 50 {
			fmt.Fprintf(&in, "GET %s:p:%d\n", p, i)
			fmt.Fprintf(&want, "\"pv%d\"\n", i)
		}
		out, err := run(in.String())
		if err != nil {
			return nil, err
		}
		return nil, mismatch("100 commands on stdin", out, strings.TrimRight(want.String(), "\n"))
	})
	col.check("error", func() (any, error) {
		if err := expect("OK", "SET", p+":notint", "abc"); err != nil {
			return nil, err
		}
		out, err := run("INCR " + p + ":notint\nGET " + p + ":notint\n")
		if err != nil {
			return nil, err
		}
		return nil, mismatch("INCR on a non-integer, then GET on the same connection", out,
			"(error) ERR value is not an integer or out of range\n\"abc\"")
	})
	if err := tg.restart(); err != nil {
		col.res = append(col.res, checkResult{Check: "restart", Error: err.Error()})
		return col.res
	}
	col.check("restart", func() (any, error) {
		return retryFor(10*time.Second, func() error {
			var in, want strings.Builder
			for i := range 10 {
				fmt.Fprintf(&in, "SET %s:r:%d after\nGET %s:r:%d\n", p, i, p, i)
				want.WriteString("OK\n\"after\"\n")
			}
			out, err := run(in.String())
			return firstErr(err, mismatch("SET/GET after the restart", out, strings.TrimRight(want.String(), "\n")))
		})
	})
	return col.res
}

// gomemcacheScenario is the memcached scenario with gomemcache's defaults.
func gomemcacheScenario(tg matrixTarget, p string) []checkResult {
	c := memcache.New(tg.addr)
	col := &collector{}
	if !col.check("connect", func() (any, error) { return nil, c.Ping() }) {
		return col.res
	}
	get := func(k string) (string, error) {
		it, err := c.Get(k)
		if err != nil {
			return "", err
		}
		return string(it.Value), nil
	}
	item := func(k, v string) *memcache.Item { return &memcache.Item{Key: k, Value: []byte(v)} }
	col.check("strings", func() (any, error) {
		if err := c.Set(item(p+":a", "hello")); err != nil {
			return nil, err
		}
		v, err := get(p + ":a")
		_, miss := c.Get(p + ":nokey")
		add := c.Add(item(p+":a", "x"))
		app := c.Append(item(p+":a", " world"))
		v2, err2 := get(p + ":a")
		del := c.Delete(p + ":a")
		_, miss2 := c.Get(p + ":a")
		del2 := c.Delete(p + ":a")
		return nil, firstErr(err, app, err2, del, mismatch("get", v, "hello"), mismatch("get missing", miss, memcache.ErrCacheMiss),
			mismatch("add existing", add, memcache.ErrNotStored), mismatch("get after append", v2, "hello world"),
			mismatch("get after delete", miss2, memcache.ErrCacheMiss), mismatch("delete missing", del2, memcache.ErrCacheMiss))
	})
	col.check("incr", func() (any, error) {
		if err := c.Set(item(p+":n", "10")); err != nil {
			return nil, err
		}
		n, err := c.Increment(p+":n", 5)
		d, err2 := c.Decrement(p+":n", 3)
		_, miss := c.Increment(p+":none", 1)
		return nil, firstErr(err, err2, mismatch("incr", n, 15), mismatch("decr", d, 12), mismatch("incr missing", miss, memcache.ErrCacheMiss))
	})
	col.check("mget", func() (any, error) {
		var keys []string
		want := map[string]string{}
		for i := range 50 {
			k := fmt.Sprintf("%s:m:%d", p, i)
			keys = append(keys, k)
			if i%3 != 0 {
				want[k] = fmt.Sprintf("v%d", i)
				if err := c.Set(item(k, want[k])); err != nil {
					return nil, err
				}
			}
		}
		m, err := c.GetMulti(keys)
		if err != nil {
			return nil, err
		}
		got := map[string]string{}
		for k, it := range m {
			got[k] = string(it.Value)
		}
		return nil, mismatch("get_multi (misses absent)", got, want)
	})
	col.check("error", func() (any, error) {
		if err := c.Set(item(p+":notint", "abc")); err != nil {
			return nil, err
		}
		_, err := c.Increment(p+":notint", 1)
		if err == nil || !strings.Contains(err.Error(), "non-numeric") {
			return nil, fmt.Errorf("incr on a non-numeric value: %v, want CLIENT_ERROR ...non-numeric...", err)
		}
		v, err := get(p + ":notint")
		return nil, firstErr(err, mismatch("get after the error", v, "abc"))
	})
	if err := tg.restart(); err != nil {
		col.res = append(col.res, checkResult{Check: "restart", Error: err.Error()})
		return col.res
	}
	col.check("restart", func() (any, error) {
		return retryFor(10*time.Second, func() error {
			var keys []string
			for i := range 10 {
				k := fmt.Sprintf("%s:r:%d", p, i)
				keys = append(keys, k)
				if err := c.Set(item(k, "after")); err != nil {
					return err
				}
			}
			m, err := c.GetMulti(keys)
			return firstErr(err, mismatch("get_multi after the restart", len(m), 10))
		})
	})
	return col.res
}
