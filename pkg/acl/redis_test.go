package acl

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// redisConn is the least RESP2 client the comparison needs: it sends a
// command and reads one reply as text (status, error, bulk or integer).
type redisConn struct {
	c net.Conn
	r *bufio.Reader
}

func (rc *redisConn) do(t *testing.T, args ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := rc.c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	line, err := rc.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimRight(line, "\r\n")
	switch line[0] {
	case '$':
		n, _ := strconv.Atoi(line[1:])
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	case '*':
		t.Fatalf("unexpected array reply to %v", args)
	}
	return line
}

// TestChecksAsRedis compiles users in nuthatch and in a real redis 7.0
// (ACL SETUSER with the same rules) and compares the verdict of every
// request with ACL DRYRUN's.
func TestChecksAsRedis(t *testing.T) {
	srv := harness.Redis(t)
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := &redisConn{c, bufio.NewReader(c)}

	users := []Spec{
		{Name: "app", Commands: []string{"+@read", "+@write", "-@dangerous", "+config|get"}, Keys: []string{"~app:*", "%R~r:*", "%W~w:*"}},
		{Name: "rep", Commands: []string{"+@read", "-mget"}, Keys: []string{"allkeys"}},
		{Name: "adm", Commands: []string{"allcommands", "-@dangerous", "+info", "-config|set"}, Keys: []string{"~{a}*", "%RW~x[0-9]?"}, Channels: []string{"&news.*"}},
		{Name: "sub", Commands: []string{"+@pubsub", "+@connection", "-ping", "+object|encoding", "+client"}, Keys: []string{"%R~*"}, Channels: []string{"&a*", "&b"}},
	}
	requests := []string{
		"GET app:1", "GET other", "SET app:1 v", "SET r:1 v", "SET w:1 v", "SET w:1 v GET", "GET w:1", "GET r:1",
		"MGET app:1 app:2", "MGET app:1 x app:2", "MSET app:1 v w:1 v", "MSET app:1 v r:1 v", "DEL app:1 w:1", "DEL r:1",
		"EXISTS w:1", "TOUCH w:1", "LMOVE r:1 w:1 LEFT RIGHT", "LMOVE app:1 w:1 LEFT RIGHT", "COPY r:1 w:1", "COPY w:1 r:1",
		"RPOPLPUSH app:1 w:1", "SORT r:1", "SORT r:1 STORE w:1", "BITFIELD r:1 GET u8 0", "BITFIELD r:1 INCRBY u8 0 1",
		"BITFIELD_RO r:1 GET u8 0", "ZUNIONSTORE w:1 2 r:1 app:2", "ZUNIONSTORE w:1 2 r:1 x", "EVAL return 1 1 app:1",
		"EVAL return 1 0", "XREAD STREAMS r:1 0", "XREAD STREAMS w:1 0", "GEORADIUS r:1 0 0 1 km", "GEORADIUS r:1 0 0 1 km STORE w:1",
		"FLUSHALL", "FLUSHDB", "KEYS *", "CONFIG GET maxmemory", "CONFIG SET maxmemory 1", "INFO", "PING", "ECHO x",
		"CLIENT SETNAME x", "CLIENT LIST", "OBJECT ENCODING r:1", "OBJECT FREQ r:1",
		"PUBLISH news.1 x", "PUBLISH sport x", "PUBLISH a1 x", "PUBLISH b x", "SUBSCRIBE a1 b", "SUBSCRIBE a1 c",
		"PSUBSCRIBE a*", "PSUBSCRIBE a1*", "PSUBSCRIBE news.*", "SPUBLISH b x",
		"GET {a}1", "GET x1z", "GET x12", "SET x1z v", "GETEX r:1 EX 1", "GETDEL r:1", "GETDEL app:1", "HSET w:1 f v",
		"SELECT 0", "MULTI", "EXEC", "WATCH app:1", "SCAN 0", "DBSIZE", "TIME", "COMMAND COUNT",
	}
	var allowed, denied int
	for _, u := range users {
		line := []string{"ACL", "SETUSER", u.Name, "reset", "on", "nopass"}
		line = append(line, u.Commands...)
		line = append(line, u.Keys...)
		line = append(line, u.Channels...)
		if got := rc.do(t, line...); got != "+OK" {
			t.Fatalf("%v: %s", line, got)
		}
		nu := mustUser(t, Spec{Name: u.Name, Commands: u.Commands, Keys: u.Keys, Channels: u.Channels})
		for _, req := range requests {
			want := rc.do(t, append([]string{"ACL", "DRYRUN", u.Name}, strings.Fields(req)...)...)
			got := check(nu, req)
			if got == Allowed {
				allowed++
			} else {
				denied++
			}
			if (want == "+OK") != (got == Allowed) {
				t.Errorf("user %s, %s: redis %q, nuthatch %v", u.Name, req, want, got)
			}
		}
	}

	if allowed < 50 || denied < 50 {
		t.Errorf("a matrix that decides little: %d allowed, %d denied", allowed, denied)
	}

	// Glob patterns, against the same keys.
	patterns := []string{"*", "a*", "*a", "a?c", "a[bc]d", "a[^bc]d", "[a-c]*", "[c-a]", `\*`, `a\`, "[abc", "[a-", "a*b*c", "**", "?*", `[\]]x`, "[^]]"}
	keys := []string{"", "a", "abc", "ac", "abd", "aed", "b", "*", `a\`, "axbyc", "]x", "x", "abcabc", "-"}
	for _, p := range patterns {
		if got := rc.do(t, "ACL", "SETUSER", "glob", "reset", "on", "nopass", "+get", "~"+p); got != "+OK" {
			t.Fatalf("%s: %s", p, got)
		}
		for _, k := range keys {
			if k == "" {
				continue // redis's DRYRUN cannot send an empty key here; TestMatch covers it
			}
			want := rc.do(t, "ACL", "DRYRUN", "glob", "GET", k) == "+OK"
			if got := Match([]byte(p), []byte(k)) || p == "*"; got != want {
				t.Errorf("pattern %q key %q: redis %v, Match %v", p, k, want, got)
			}
		}
	}
}
