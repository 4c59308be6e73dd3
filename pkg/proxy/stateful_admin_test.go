package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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

// clientLine returns the CLIENT LIST line of the client with that id.
func clientLine(t *testing.T, c *respClient, id string) string {
	t.Helper()
	for _, line := range strings.Split(c.do("CLIENT", "LIST"), "\n") {
		if strings.HasPrefix(line, "id="+id+" ") {
			return line
		}
	}
	t.Fatalf("no client id=%s in CLIENT LIST", id)
	return ""
}

// SELECT n with databases = 16: each client's requests, transactions,
// blocking calls, SCAN and DBSIZE run in its database, on links of that
// database; RESET goes back to redis_db; MOVE moves between databases.
func TestSelectDatabases(t *testing.T) {
	one := startRedisRig(t, 1, "")
	if got := dialResp(t, one.addr).do("SELECT", "1"); got != "-ERR SELECT 1 refused: pool 'p' serves database 0 only (set databases in the pool to let clients select others)\r\n" {
		t.Errorf("SELECT 1 without databases: %q", got)
	}

	rg := startRedisRig(t, 2, "databases = 16")
	a, b := dialResp(t, rg.addr), dialResp(t, rg.addr)
	tag := rg.tagOn(t, 1)
	k := tag + "k"
	a.do("SET", k, "in0")
	for _, tc := range []struct{ db, want string }{{"16", "-ERR DB index is out of range\r\n"}, {"-1", "-ERR DB index is out of range\r\n"}, {"x", "-ERR value is not an integer or out of range\r\n"}, {"3", "+OK\r\n"}} {
		if got := a.do("SELECT", tc.db); got != tc.want {
			t.Errorf("SELECT %s: %q, want %q", tc.db, got, tc.want)
		}
	}
	if got := a.do("GET", k); got != "$-1\r\n" {
		t.Errorf("GET in db 3: %q", got)
	}
	a.do("SET", k, "in3")
	if got := b.do("GET", k); got != "$3\r\nin0\r\n" {
		t.Errorf("GET of another client in db 0: %q", got)
	}
	direct := dialResp(t, rg.backends[1].Addr)
	direct.do("SELECT", "3")
	if got := direct.do("GET", k); got != "$3\r\nin3\r\n" {
		t.Errorf("the server's db 3: %q", got)
	}
	if id := strings.TrimSpace(strings.TrimPrefix(a.do("CLIENT", "ID"), ":")); !strings.Contains(clientLine(t, b, id), " db=3 ") {
		t.Errorf("CLIENT LIST of the client in db 3: %q", clientLine(t, b, id))
	}
	// RESP3 in db 3.
	r3 := dialResp(t, rg.addr)
	r3.do("HELLO", "3")
	r3.do("SELECT", "3")
	if got := r3.do("GET", k); got != "$3\r\nin3\r\n" {
		t.Errorf("RESP3 GET in db 3: %q", got)
	}
	// A transaction in db 3.
	a.do("MULTI")
	a.do("INCR", tag+"n")
	if got := a.do("EXEC"); got != "*1\r\n:1\r\n" {
		t.Errorf("EXEC in db 3: %q", got)
	}
	if got := direct.do("GET", tag+"n"); got != "$1\r\n1\r\n" {
		t.Errorf("the transaction's key in the server's db 3: %q", got)
	}
	// A blocking call in db 5, woken by a push in db 5, not db 0.
	blocker, pusher := dialResp(t, rg.addr), dialResp(t, rg.addr)
	blocker.do("SELECT", "5")
	blocker.send("BLPOP", "q", "5")
	pusher.do("RPUSH", "q", "db0")
	pusher.do("SELECT", "5")
	pusher.do("RPUSH", "q", "db5")
	if got := blocker.read(); got != "*2\r\n$1\r\nq\r\n$3\r\ndb5\r\n" {
		t.Errorf("BLPOP in db 5: %q", got)
	}
	// Whole-pool commands in the client's database.
	if got := a.do("DBSIZE"); got != ":2\r\n" {
		t.Errorf("DBSIZE in db 3: %q", got)
	}
	var scanned []string
	for cur, n := "0", 0; n == 0 || cur != "0"; n++ {
		var elems [][]byte
		resp.ArrayElems([]byte(a.do("SCAN", cur, "COUNT", "100")), func(e []byte) bool { elems = append(elems, e); return true })
		v, _ := bulkUint(elems[0])
		cur = fmt.Sprint(v)
		scanned = append(scanned, replyElems(t, string(elems[1]))...)
	}
	slices.Sort(scanned)
	if want := []string{tag + "k", tag + "n"}; !slices.Equal(scanned, want) {
		t.Errorf("SCAN in db 3: %q, want %q", scanned, want)
	}
	// MOVE between databases.
	if got := a.do("MOVE", k, "4"); got != ":1\r\n" {
		t.Errorf("MOVE: %q", got)
	}
	if got := a.do("MOVE", k, "16"); got != "-ERR DB index is out of range\r\n" {
		t.Errorf("MOVE to db 16: %q", got)
	}
	a.do("SELECT", "4")
	if got := a.do("GET", k); got != "$3\r\nin3\r\n" {
		t.Errorf("GET in db 4 after MOVE: %q", got)
	}
	// WATCH fixes the database until UNWATCH.
	a.do("WATCH", k)
	if got := a.do("SELECT", "2"); !strings.Contains(got, "UNWATCH first") {
		t.Errorf("SELECT after WATCH: %q", got)
	}
	a.do("UNWATCH")
	if got := a.do("RESET"); got != "+RESET\r\n" {
		t.Fatalf("RESET: %q", got)
	}
	if got := a.do("GET", k); got != "$3\r\nin0\r\n" {
		t.Errorf("GET after RESET (back in db 0): %q", got)
	}
}

// CLIENT LIST and CLIENT INFO show a client's subscriptions, its queued
// transaction and its database as redis does.
func TestClientListStatefulFields(t *testing.T) {
	rg := startRedisRig(t, 2, "databases = 4")
	direct := harness.Redis(t)
	fields := func(line string) map[string]string {
		out := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				out[k] = v
			}
		}
		return out
	}
	for _, addr := range []string{direct.Addr, rg.addr} {
		sub, txn, q := dialResp(t, addr), dialResp(t, addr), dialResp(t, addr)
		subID := strings.TrimSpace(strings.TrimPrefix(sub.do("CLIENT", "ID"), ":"))
		txnID := strings.TrimSpace(strings.TrimPrefix(txn.do("CLIENT", "ID"), ":"))
		sub.send("SUBSCRIBE", "a", "b")
		sub.read()
		sub.read()
		sub.send("PSUBSCRIBE", "p*")
		sub.read()
		txn.do("SELECT", "2")
		txn.do("MULTI")
		txn.do("SET", "k", "v")
		txn.do("PING")
		s, x := fields(clientLine(t, q, subID)), fields(clientLine(t, q, txnID))
		if s["sub"] != "2" || s["psub"] != "1" || s["flags"] != "P" || s["multi"] != "-1" {
			t.Errorf("%s: subscriber %v", addr, s)
		}
		if x["multi"] != "2" || x["flags"] != "x" || x["db"] != "2" || x["sub"] != "0" {
			t.Errorf("%s: client in MULTI %v", addr, x)
		}
		txn.do("DISCARD")
		if x := fields(clientLine(t, q, txnID)); x["multi"] != "-1" || x["flags"] != "N" {
			t.Errorf("%s: after DISCARD %v", addr, x)
		}
		blocker := dialResp(t, addr)
		blockerID := strings.TrimSpace(strings.TrimPrefix(blocker.do("CLIENT", "ID"), ":"))
		blocker.send("BLPOP", "nothing", "0.5")
		time.Sleep(100 * time.Millisecond)
		if b := fields(clientLine(t, q, blockerID)); b["flags"] != "b" {
			t.Errorf("%s: blocked client %v", addr, b)
		}
		blocker.read()
	}
}

// OBJECT, XINFO and XGROUP go to the server of the key after their
// subcommand, byte-identical to one redis-server, also inside MULTI;
// RANDOMKEY is nil only when every server is empty.
func TestSubcommandKeysAndRandomKey(t *testing.T) {
	rg := startRedisRig(t, 3, "")
	direct := harness.Redis(t)
	var script [][]string
	for i := 0; i < 3; i++ {
		tag := rg.tagOn(t, i)
		s, k := tag+"stream", tag+"str"
		script = append(script, [][]string{
			{"SET", k, "hello"}, {"OBJECT", "ENCODING", k}, {"OBJECT", "REFCOUNT", k}, {"OBJECT", "ENCODING", tag + "none"},
			{"XGROUP", "CREATE", s, "g", "$", "MKSTREAM"}, {"XGROUP", "CREATE", s, "g", "$"},
			{"XADD", s, "1-1", "f", "v"}, {"XREADGROUP", "GROUP", "g", "c1", "COUNT", "5", "STREAMS", s, ">"},
			{"XINFO", "GROUPS", s}, {"XGROUP", "CREATECONSUMER", s, "g", "c2"}, {"XGROUP", "DELCONSUMER", s, "g", "c2"},
			{"MULTI"}, {"XGROUP", "SETID", s, "g", "0"}, {"OBJECT", "ENCODING", k}, {"EXEC"},
			{"XGROUP", "DESTROY", s, "g"}, {"XINFO", "STREAM", tag + "none"},
		}...)
	}
	script = append(script, [][]string{{"OBJECT"}, {"XINFO", "HELP"}, {"OBJECT", "FOO", "x"}}...)
	c, d := dialResp(t, rg.addr), dialResp(t, direct.Addr)
	for _, req := range script {
		if want, got := d.do(req...), c.do(req...); want != got {
			t.Errorf("%q: redis %q, nuthatch %q", req, want, got)
		}
	}

	if got := c.do("TIME"); !strings.HasPrefix(got, "*2\r\n$10\r\n") {
		t.Errorf("TIME: %q", got)
	}

	empty := startRedisRig(t, 3, "")
	e := dialResp(t, empty.addr)
	if got := e.do("RANDOMKEY"); got != "$-1\r\n" {
		t.Errorf("RANDOMKEY of an empty pool: %q", got)
	}
	only := empty.tagOn(t, 2) + "only"
	e.do("SET", only, "v")
	for i := 0; i < 20; i++ {
		if got := e.do("RANDOMKEY"); got != fmt.Sprintf("$%d\r\n%s\r\n", len(only), only) {
			t.Fatalf("RANDOMKEY with one key on the third server: %q", got)
		}
	}
	e.do("HELLO", "3")
	e.do("DEL", only)
	if got := e.do("RANDOMKEY"); got != "_\r\n" {
		t.Errorf("RESP3 RANDOMKEY of an empty pool: %q", got)
	}
}
