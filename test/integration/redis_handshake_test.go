package integration

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// The connection commands clients send while setting up, answered by the
// proxy itself, in both protocol versions: each reply must be what
// redis-server sends, byte for byte, except where a row says otherwise.

func req(args ...string) []byte {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return resp.AppendCommand(nil, bs)
}

func TestRedisHandshakeSameAsRedis(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	server := harness.Redis(t)
	steps := [][]string{
		{"PING"}, {"PING", "x"}, {"ECHO", "hi"}, {"PING", "a", "b"},
		{"CLIENT", "GETNAME"}, {"CLIENT", "SETNAME", "app-1"}, {"CLIENT", "GETNAME"},
		{"CLIENT", "SETNAME", "a b"}, {"CLIENT", "SETNAME"}, {"CLIENT", "GETNAME", "x"},
		{"CLIENT", "NOSUCH"}, {"CLIENT", "nosuch", "x"}, {"CLIENT", "NO-EVICT", "on"},
		{"CLIENT", "NO-EVICT", "maybe"}, {"CLIENT", "REPLY", "maybe"}, {"CLIENT", "REPLY", "ON"},
		{"SELECT", "0"}, {"SELECT", "x"}, {"READONLY"}, {"READWRITE"},
		{"HELLO", "4"}, {"HELLO", "x"}, {"HELLO", "1"}, {"HELLO", "2", "FOO"}, {"HELLO", "2", "SETNAME"},
		{"HELLO", "2", "AUTH", "default"}, {"HELLO", "3", "SETNAME", "a b"},
		{"AUTH", "pw"}, {"AUTH", "default", "pw"}, {"AUTH", "a", "b", "c"},
		{"RESET"}, {"CLIENT", "GETNAME"},
		{"COMMAND", "COUNT"}, {"COMMAND", "GETKEYS", "SET", "k", "v"}, {"COMMAND", "INFO", "get"},
		{"SET", "k", "v"}, {"GET", "k"}, {"GET", "nokey"}, {"HSET", "h", "f", "1", "g", "2"}, {"HGETALL", "h"},
	}
	for _, proto := range []string{"2", "3"} {
		t.Run("resp"+proto, func(t *testing.T) {
			hello := req("HELLO", proto)
			d, p := newRespSession(t, server.Addr), newRespSession(t, rp.addr)
			d.Hello, p.Hello = hello, hello
			for _, st := range steps {
				a, b := d.Do(req(st...)), p.Do(req(st...))
				// READONLY/READWRITE are cluster commands: a standalone
				// redis refuses them, the proxy accepts them as no-ops.
				if st[0] == "READONLY" || st[0] == "READWRITE" {
					if b != "+OK\r\n" {
						t.Errorf("%v: %q, want +OK", st, b)
					}
					continue
				}
				if a != b {
					t.Errorf("%v:\n redis-server: %q\n nuthatch:     %q", st, a, b)
				}
			}
			// RESET went back to RESP2; the session asks for its version
			// again for the rest.
			d.Close()
			p.Close()
		})
	}
}

// CLIENT REPLY OFF and SKIP drop replies, as redis does; the requests run.
func TestRedisClientReply(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	server := harness.Redis(t)
	script := string(req("CLIENT", "REPLY", "OFF")) + string(req("SET", "r:1", "a")) + string(req("PING")) +
		string(req("CLIENT", "REPLY", "ON")) + string(req("GET", "r:1")) +
		string(req("CLIENT", "REPLY", "SKIP")) + string(req("SET", "r:2", "bb")) + string(req("GET", "r:2")) +
		string(req("CLIENT", "REPLY", "SKIP")) + string(req("CLIENT", "REPLY", "ON")) + string(req("GET", "r:2"))
	want := "+OK\r\n$1\r\na\r\n$2\r\nbb\r\n+OK\r\n$2\r\nbb\r\n"
	for _, addr := range []string{server.Addr, rp.addr} {
		c := dialRaw(t, addr)
		c.send(script)
		c.expect(want)
	}
}

// HELLO, CLIENT ID, CLIENT INFO and CLIENT LIST describe the client's own
// connection to the proxy.
func TestRedisHelloAndClientInfo(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	for _, proto := range []string{"2", "3"} {
		s := newRespSession(t, rp.addr)
		hello := s.Do(req("HELLO", proto, "SETNAME", "who"))
		id := s.Do(req("CLIENT", "ID"))
		var wantHello string
		if proto == "3" {
			wantHello = "%7\r\n"
		} else {
			wantHello = "*14\r\n"
		}
		wantHello += "$6\r\nserver\r\n$8\r\nnuthatch\r\n$7\r\nversion\r\n"
		if !strings.HasPrefix(hello, wantHello) {
			t.Fatalf("HELLO %s: %q", proto, hello)
		}
		if !strings.Contains(hello, "$5\r\nproto\r\n:"+proto+"\r\n$2\r\nid\r\n"+id+"$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n") {
			t.Fatalf("HELLO %s: %q (CLIENT ID %q)", proto, hello, id)
		}
		info := s.Do(req("CLIENT", "INFO"))
		if proto == "3" && !strings.HasPrefix(info, "=") || proto == "2" && !strings.HasPrefix(info, "$") {
			t.Errorf("CLIENT INFO in RESP%s: %q", proto, info)
		}
		idNum := strings.TrimSuffix(strings.TrimPrefix(id, ":"), "\r\n")
		line := regexp.MustCompile(`id=(\d+) addr=127\.0\.0\.1:\d+ laddr=` + regexp.QuoteMeta(rp.addr) +
			` fd=\d+ name=who age=\d+ idle=\d+ flags=N db=0 .* cmd=client user=default redir=-1 resp=` + proto + ` lib-name= lib-ver=\n`)
		if m := line.FindStringSubmatch(info); m == nil || m[1] != idNum {
			t.Errorf("CLIENT INFO in RESP%s: %q", proto, info)
		}
		list := s.Do(req("CLIENT", "LIST", "ID", idNum))
		if !strings.Contains(list, "id="+idNum+" ") || strings.Count(list, "\n") < 2 {
			t.Errorf("CLIENT LIST ID %s: %q", idNum, list)
		}
		if got := s.Do(req("CLIENT", "LIST", "TYPE", "pubsub")); got != map[string]string{"2": "$0\r\n\r\n", "3": "=4\r\ntxt:\r\n"}[proto] {
			t.Errorf("CLIENT LIST TYPE pubsub: %q", got)
		}
		if got := s.Do(req("CLIENT", "LIST", "TYPE", "x")); got != "-ERR Unknown client type 'x'\r\n" {
			t.Errorf("CLIENT LIST TYPE x: %q", got)
		}
	}
	// Another client shows in CLIENT LIST.
	a, b := newRespSession(t, rp.addr), newRespSession(t, rp.addr)
	a.Do(req("CLIENT", "SETNAME", "first"))
	b.Do(req("CLIENT", "SETNAME", "second"))
	if list := a.Do(req("CLIENT", "LIST")); !strings.Contains(list, "name=first ") || !strings.Contains(list, "name=second ") {
		t.Errorf("CLIENT LIST: %q", list)
	}
}

// INFO is the proxy's: redis's syntax, the lowest version of the servers,
// their keys summed, the proxy's own clients and counters.
func TestRedisInfo(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	for i := range 20 {
		if err := c.Set(ctx, fmt.Sprintf("info:%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.Expire(ctx, "info:0", time.Hour)
	s := newRespSession(t, rp.addr)
	text := bulkBody(t, s.Do(req("INFO")))
	for _, want := range []string{"# Server\r\nredis_version:", "# Clients\r\nconnected_clients:", "# Persistence\r\nloading:0\r\n",
		"# Stats\r\n", "# Replication\r\nrole:master\r\n", "# Keyspace\r\ndb0:keys=20,expires=1,avg_ttl="} {
		if !strings.Contains(text, want) {
			t.Errorf("INFO lacks %q:\n%s", want, text)
		}
	}
	serverInfo, err := direct(t, rp.backends[0]).Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	v := regexp.MustCompile(`redis_version:(\S+)`)
	if got, want := v.FindStringSubmatch(text), v.FindStringSubmatch(serverInfo); got == nil || got[1] != want[1] {
		t.Errorf("redis_version %v, servers run %v", got, want)
	}
	if !strings.Contains(text, "\r\n\r\n# Clients\r\n") || strings.HasSuffix(text, "\r\n\r\n") {
		t.Errorf("sections are not separated as redis separates them:\n%q", text)
	}
	// One section, several, none known; RESP3 gets a verbatim string.
	if got := bulkBody(t, s.Do(req("INFO", "replication"))); got != "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n" {
		t.Errorf("INFO replication: %q", got)
	}
	if got := bulkBody(t, s.Do(req("INFO", "clients", "persistence"))); !strings.HasPrefix(got, "# Clients\r\n") || !strings.Contains(got, "\r\n\r\n# Persistence\r\n") {
		t.Errorf("INFO clients persistence: %q", got)
	}
	if got := s.Do(req("INFO", "nosuch")); got != "$0\r\n\r\n" {
		t.Errorf("INFO nosuch: %q", got)
	}
	s3 := newRespSession(t, rp.addr)
	s3.Hello = hello3
	repl := "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
	if got := s3.Do(req("INFO", "replication")); got != string(resp.AppendVerbatim(nil, "txt", []byte(repl))) {
		t.Errorf("INFO in RESP3: %q", got)
	}
	// Servers' INFO is read at most once a second, however many ask.
	before := backendInfoCalls(t, rp)
	for range 50 {
		s.Do(req("INFO", "keyspace"))
	}
	if n := backendInfoCalls(t, rp) - before; n > 3*len(rp.backends) {
		t.Errorf("50 INFO keyspace made %d INFO calls on the servers", n)
	}
}

func bulkBody(t *testing.T, reply string) string {
	t.Helper()
	i := strings.Index(reply, "\r\n")
	if i < 0 || (reply[0] != '$' && reply[0] != '=') {
		t.Fatalf("not a bulk string: %q", reply)
	}
	body := strings.TrimSuffix(reply[i+2:], "\r\n")
	if reply[0] == '=' {
		body = body[4:]
	}
	return body
}

// backendInfoCalls sums the servers' count of INFO calls.
func backendInfoCalls(t *testing.T, rp *redisPool) int {
	t.Helper()
	total := 0
	for _, b := range rp.backends {
		stats, err := direct(t, b).Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`cmdstat_info:calls=(\d+)`).FindStringSubmatch(stats); m != nil {
			var n int
			fmt.Sscan(m[1], &n)
			total += n
		}
	}
	return total
}

// With several workers, INFO counts the clients and commands of all of
// them: each worker adds what the master last summed for the others.
func TestRedisInfoSumsWorkers(t *testing.T) {
	b1, b2 := harness.Redis(t), harness.Redis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	harness.Nuthatch(t, fmt.Sprintf(`
worker_processes = 2
stats {
  listen   = ""
  interval = "100ms"
}
pool "w" {
  listen   = %q
  protocol = "redis"
  server %q {}
  server %q {}
}
`, addr, b1.Addr, b2.Addr), addr)
	var sessions []*respSession
	pids := map[string]bool{}
	for range 20 {
		s := newRespSession(t, addr)
		s.Do(req("SET", "k", "v"))
		pid := regexp.MustCompile(`process_id:(\d+)`).FindStringSubmatch(bulkBody(t, s.Do(req("INFO", "server"))))
		pids[pid[1]] = true
		sessions = append(sessions, s)
	}
	if len(pids) < 2 {
		t.Skipf("the kernel put all 20 clients on one worker (%v)", pids)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		clients := regexp.MustCompile(`connected_clients:(\d+)`).FindStringSubmatch(bulkBody(t, sessions[0].Do(req("INFO", "clients"))))
		stats := bulkBody(t, sessions[0].Do(req("INFO", "stats")))
		received := regexp.MustCompile(`total_connections_received:(\d+)`).FindStringSubmatch(stats)
		// The harness's readiness probe is a connection too.
		if clients[1] == "20" && (received[1] == "20" || received[1] == "21") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 clients on %d workers: INFO says connected_clients:%s, total_connections_received:%s", len(pids), clients[1], received[1])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
