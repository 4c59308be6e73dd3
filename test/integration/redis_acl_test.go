package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// The ACL matrix: a redis-server 7.0 configured with users by ACL SETUSER
// and nuthatch configured with the same users as user blocks get the
// same AUTH, HELLO, NOPERM and permitted requests, and every reply is
// compared byte for byte. Rows marked differ are compared by the rule
// their comment gives.

func sha(pw string) string {
	s := sha256.Sum256([]byte(pw))
	return hex.EncodeToString(s[:])
}

// aclSession is one connection that reads n replies per request.
type aclSession struct {
	t    *testing.T
	addr string
	c    net.Conn
	r    *bufio.Reader
	buf  []byte
}

func newACLSession(t *testing.T, addr string) *aclSession {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &aclSession{t: t, addr: addr, c: c, r: bufio.NewReader(c)}
}

const aclClosed = "<closed>"

// send writes raw bytes and returns n replies, concatenated; aclClosed is
// appended when the peer closed the connection instead.
func (s *aclSession) send(raw []byte, n int) string {
	s.t.Helper()
	s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.c.Write(raw); err != nil {
		return aclClosed
	}
	var out strings.Builder
	chunk := make([]byte, 64<<10)
	for got := 0; got < n; {
		if len(s.buf) > 0 {
			m, _, err := resp.ReplyLen(s.buf, resp.Limits{})
			if err != nil {
				s.t.Fatalf("%s: bad reply %q: %v", s.addr, s.buf, err)
			}
			if m > 0 {
				out.Write(s.buf[:m])
				s.buf = s.buf[m:]
				got++
				continue
			}
		}
		s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := s.r.Read(chunk)
		s.buf = append(s.buf, chunk[:k]...)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				s.t.Fatalf("%s: no reply to %q after %q", s.addr, raw, out.String())
			}
			return out.String() + aclClosed
		}
	}
	return out.String()
}

type aclStep struct {
	args []string
	raw  string // sent as is instead of args
	n    int    // replies (default 1)
	// differ: how the two replies are compared when they cannot be the
	// same bytes: "hello" (the server map names nuthatch), "user=" (only
	// CLIENT INFO's user field).
	differ string
}

func st(args ...string) aclStep { return aclStep{args: args} }

func (s aclStep) replies(n int) aclStep    { s.n = n; return s }
func (s aclStep) differs(d string) aclStep { s.differ = d; return s }

var userField = regexp.MustCompile(` user=(\S+) `)

func runACLMatrix(t *testing.T, redisAddr, proxyAddr string, sessions [][]aclStep) {
	t.Helper()
	for si, steps := range sessions {
		d, p := newACLSession(t, redisAddr), newACLSession(t, proxyAddr)
		for _, s := range steps {
			raw := []byte(s.raw)
			if s.raw == "" {
				raw = req(s.args...)
			}
			n := max(s.n, 1)
			a, b := d.send(raw, n), p.send(raw, n)
			what := fmt.Sprintf("session %d, %q", si, s.args)
			if s.raw != "" {
				what = fmt.Sprintf("session %d, raw %q", si, short(s.raw))
			}
			if testing.Verbose() {
				t.Logf("%s -> %q", what, short(b))
			}
			switch s.differ {
			case "hello":
				// redis-server's map names redis and its version; only
				// success (a map of 7 fields) or the same error matter.
				ok := func(r string) bool { return strings.HasPrefix(r, "*14\r\n") || strings.HasPrefix(r, "%7\r\n") }
				if ok(a) != ok(b) || !ok(a) && a != b || a[:3] != b[:3] {
					t.Errorf("%s:\n redis-server: %q\n nuthatch:     %q", what, short(a), short(b))
				}
			case "user=":
				ma, mb := userField.FindStringSubmatch(a), userField.FindStringSubmatch(b)
				if ma == nil || mb == nil || ma[1] != mb[1] {
					t.Errorf("%s: user field: redis-server %q, nuthatch %q", what, short(a), short(b))
				}
			default:
				if a != b {
					t.Errorf("%s:\n redis-server: %q\n nuthatch:     %q", what, a, b)
				}
			}
			if strings.HasSuffix(a, aclClosed) {
				break
			}
		}
	}
}

// aclUsersHCL are the users of the matrix as nuthatch writes them, and
// aclUsersRedis as ACL SETUSER does.
func aclUsersHCL() string {
	return fmt.Sprintf(`
  user "app" {
    password_sha256 = [%q, %q]
    commands        = ["+@read", "+@write", "-@dangerous", "+@transaction", "+config|get", "+publish"]
    keys            = ["app:*", "%%R~r:*", "%%W~w:*"]
    channels        = ["app.*"]
  }
  user "rep" {
    password_sha256 = %q
    commands        = ["+@read", "-mget", "+acl|whoami", "+client"]
    keys            = ["allkeys"]
  }
  user "np" {
    nopass   = true
    commands = ["+get", "+acl"]
    keys     = ["~np:*"]
  }
  user "off" {
    enabled = false
  }
  user "sub" {
    nopass   = true
    commands = ["+@pubsub", "+ping"]
    channels = ["app.*", "&news"]
  }
`, sha("app-secret"), sha("app-next"), sha("rep-pw"))
}

var aclUsersRedis = [][]string{
	{"ACL", "SETUSER", "app", "reset", "on", "#" + sha("app-secret"), "#" + sha("app-next"),
		"+@read", "+@write", "-@dangerous", "+@transaction", "+config|get", "+publish", "~app:*", "%R~r:*", "%W~w:*", "&app.*"},
	{"ACL", "SETUSER", "rep", "reset", "on", "#" + sha("rep-pw"), "+@read", "-mget", "+acl|whoami", "+client", "allkeys"},
	{"ACL", "SETUSER", "np", "reset", "on", "nopass", "+get", "+acl", "~np:*"},
	{"ACL", "SETUSER", "off", "reset", "off"},
	{"ACL", "SETUSER", "sub", "reset", "on", "nopass", "+@pubsub", "+ping", "&app.*", "&news"},
}

func setupRedisUsers(t *testing.T, addr string, extra ...[]string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: "defpw", Protocol: 2})
	defer c.Close()
	for _, line := range append(aclUsersRedis, extra...) {
		args := make([]any, len(line))
		for i, a := range line {
			args[i] = a
		}
		if err := c.Do(context.Background(), args...).Err(); err != nil {
			t.Fatalf("%v: %v", line, err)
		}
	}
}

func aclProxy(t *testing.T, attrs, servers string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes = 1
stats {
  listen = ""
}
pool "acl" {
  listen   = %q
  protocol = "redis"
  timeout  = "2s"
%s
%s
}
`, addr, attrs, servers)
	p := harness.Nuthatch(t, hcl, addr)
	t.Cleanup(func() {
		if p.Exited() {
			t.Errorf("nuthatch died; log:\n%s", p.Output())
		}
	})
	return addr
}

// TestRedisACLMatrix: users next to redis_auth, which stays the default
// user's password (twemproxy's redis_auth) and what the proxy sends to
// the backend.
func TestRedisACLMatrix(t *testing.T) {
	ref := harness.Redis(t, "--requirepass", "defpw")
	setupRedisUsers(t, ref.Addr)
	backend := harness.Redis(t, "--requirepass", "defpw")
	proxy := aclProxy(t, `  redis_auth = "defpw"`+aclUsersHCL(), fmt.Sprintf("  server %q {}", backend.Addr))

	unauth := []aclStep{
		st("GET", "app:1"), st("PING"), st("NOSUCH", "x"), st("GET"), st("HELLO", "3"), st("HELLO", "2"),
		st("HELLO", "3", "AUTH", "app", "wrong").differs("hello"), st("HELLO", "4", "AUTH", "app", "app-secret"),
		st("AUTH"), st("AUTH", "a", "b", "c"), st("AUTH", "wrong"), st("AUTH", "app", "wrong"), st("AUTH", "nosuch", "x"),
		st("AUTH", "off", "x"), st("AUTH", "off", ""), st("RESET"), st("CLIENT", "SETNAME", "x"), st("QUIT"),
	}
	app := []aclStep{
		st("AUTH", "app", "app-secret"), st("ACL", "WHOAMI"),
		st("SET", "app:1", "v"), st("GET", "app:1"), st("GET", "other"), st("SET", "other", "v"),
		st("GET", "r:1"), st("SET", "r:1", "v"), st("SET", "w:1", "v"), st("GET", "w:1"), st("SET", "w:1", "v", "GET"),
		st("EXISTS", "w:1"), st("INCR", "app:n"), st("APPEND", "w:1", "x"), st("STRLEN", "w:1"),
		st("MGET", "app:1", "app:2"), st("MGET", "app:1", "other", "app:2"), st("MSET", "app:1", "a", "app:2", "b"),
		st("MSET", "app:1", "a", "r:2", "b"), st("MSET", "app:3", "a", "w:3", "b"), st("DEL", "app:2", "w:3"), st("DEL", "r:1"),
		st("LPUSH", "app:l", "a", "b"), st("LMOVE", "app:l", "w:l", "LEFT", "RIGHT"), st("LMOVE", "r:l", "w:l", "LEFT", "RIGHT"),
		st("HSET", "app:h", "f", "1"), st("HGETALL", "app:h"), st("HGETALL", "w:h"),
		st("FLUSHALL"), st("FLUSHDB"), st("KEYS", "*"), st("CONFIG", "SET", "maxmemory", "1"),
		st("PING"), st("ECHO", "x"), st("CLIENT", "ID"), st("SELECT", "0"), st("INFO"),
		st("PUBLISH", "app.news", "m"), st("PUBLISH", "other", "m"), st("SUBSCRIBE", "app.news"),
		st("EVAL", "return 1", "1", "app:1"), st("NOSUCH"), st("GET"), st("get", "a", "b"),
		st("MULTI"), st("SET", "app:1", "x"), st("GET", "other"), st("EXEC"),
		st("MULTI"), st("SET", "app:1", "y"), st("GET", "app:1"), st("EXEC"), st("GET", "app:1"),
		st("ACL", "DRYRUN", "app", "GET", "other"),
		// Switching user at any time; a failed AUTH keeps the user.
		st("AUTH", "app", "wrong"), st("ACL", "WHOAMI"), st("AUTH", "rep", "rep-pw"), st("ACL", "WHOAMI"),
		st("SET", "app:1", "v"), st("GET", "app:1"), st("MGET", "app:1"), st("CLIENT", "INFO").differs("user="),
		st("AUTH", "app", "app-next"), st("ACL", "WHOAMI"), st("AUTH", "defpw"), st("ACL", "WHOAMI"),
		st("ACL", "DRYRUN", "app", "GET", "other"), st("ACL", "DRYRUN", "app", "SET", "w:1", "v"),
		st("ACL", "DRYRUN", "app", "FLUSHALL"), st("ACL", "DRYRUN", "rep", "SET", "a", "b"), st("ACL", "DRYRUN", "nosuch", "GET", "a"),
		st("ACL", "DRYRUN", "app", "PUBLISH", "other", "m"), st("ACL", "DRYRUN", "app", "GET"), st("ACL", "DRYRUN", "app", "NOSUCH"),
		st("ACL", "DRYRUN", "app", "CONFIG", "GET", "x"), st("ACL", "DRYRUN", "app"), st("ACL", "WHOAMI", "x"), st("ACL", "CAT"),
		st("RESET"), st("GET", "app:1"), st("ACL", "WHOAMI"),
		st("AUTH", "np", "anything"), st("GET", "np:1"), st("GET", "app:1"), st("SET", "np:1", "v"), st("ACL", "WHOAMI"),
		st("AUTH", "default", "defpw"), st("ACL", "WHOAMI"), st("CLIENT", "INFO").differs("user="),
	}
	hello := []aclStep{
		st("HELLO", "3", "AUTH", "app", "app-secret", "SETNAME", "c1").differs("hello"),
		st("GET", "other"), st("GET", "app:1"), st("HGETALL", "app:h"), st("ACL", "WHOAMI"), st("CLIENT", "GETNAME"),
		st("HELLO", "2", "AUTH", "rep", "wrong").differs("hello"), st("ACL", "WHOAMI"),
		st("HELLO", "2", "AUTH", "rep", "rep-pw").differs("hello"), st("MGET", "a"), st("ACL", "WHOAMI"),
	}
	ping := aclStep{raw: "*1\r\n$4\r\nPING\r\n"} // answered by neither: the connection is closed
	// Channels, subscribed (RESP2: only the subscribe commands, PING,
	// QUIT and RESET are allowed then).
	sub := []aclStep{
		st("AUTH", "sub", "x"), st("PUBLISH", "news", "m"), st("PUBLISH", "sport", "m"),
		st("SUBSCRIBE", "sport"), st("SUBSCRIBE", "app.1", "sport"), st("PSUBSCRIBE", "app.1*"),
		st("SUBSCRIBE", "app.1", "news").replies(2), st("SUBSCRIBE", "sport"), st("PSUBSCRIBE", "app.*"),
		st("PING"), st("GET", "a"), st("UNSUBSCRIBE", "app.1", "news").replies(2), st("PUNSUBSCRIBE"), st("PING"),
	}
	limits := [][]aclStep{
		{{raw: "*11\r\n"}, ping},
		{{raw: "*2\r\n$3\r\nGET\r\n$16385\r\n"}, ping},
		{{raw: "*10\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"}},
		{{raw: "*2\r\n$4\r\nAUTH\r\n$5\r\ndefpw\r\n*11\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n", n: 2}},
	}
	sessions := append([][]aclStep{unauth, app, hello, sub}, limits...)
	runACLMatrix(t, ref.Addr, proxy, sessions)
}

// TestRedisACLDefaultUser: a default user of its own (nopass, only PING)
// and one that is off.
func TestRedisACLDefaultUser(t *testing.T) {
	t.Run("nopass", func(t *testing.T) {
		ref := harness.Redis(t, "--requirepass", "defpw")
		setupRedisUsers(t, ref.Addr, []string{"ACL", "SETUSER", "default", "reset", "on", "nopass", "+ping", "+acl|whoami"})
		backend := harness.Redis(t, "--requirepass", "defpw")
		proxy := aclProxy(t, `  redis_auth = "defpw"`+aclUsersHCL()+`
  user "default" {
    nopass   = true
    commands = ["+ping", "+acl|whoami"]
  }`, fmt.Sprintf("  server %q {}", backend.Addr))
		runACLMatrix(t, ref.Addr, proxy, [][]aclStep{{
			st("PING"), st("GET", "a"), st("ACL", "WHOAMI"), st("HELLO", "3").differs("hello"), st("GET", "a"),
			st("AUTH", "x"), st("AUTH", "default", "x"), st("AUTH", "app", "app-secret"), st("GET", "app:1"),
			st("RESET"), st("PING"), st("GET", "app:1"),
		}})
	})
	t.Run("off", func(t *testing.T) {
		// The backend's default user is off too: the proxy authenticates
		// as its own ACL user, given in the server block.
		ref := harness.Redis(t, "--requirepass", "defpw")
		setupRedisUsers(t, ref.Addr, []string{"ACL", "SETUSER", "default", "off", "resetpass"})
		backend := harness.Redis(t)
		bc := redis.NewClient(&redis.Options{Addr: backend.Addr, Protocol: 2})
		for _, line := range [][]any{
			{"ACL", "SETUSER", "proxy", "on", ">proxy-pw", "allcommands", "allkeys", "allchannels"},
			{"ACL", "SETUSER", "default", "off", "resetpass"},
		} {
			if err := bc.Do(context.Background(), line...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		bc.Close()
		proxy := aclProxy(t, aclUsersHCL(), fmt.Sprintf(`  server %q {
    username = "proxy"
    password = "proxy-pw"
  }`, backend.Addr))
		runACLMatrix(t, ref.Addr, proxy, [][]aclStep{{
			st("PING"), st("GET", "app:1"), st("HELLO", "3"), st("AUTH", "x"), st("AUTH", "default", "x"),
			st("AUTH", "app", "app-secret"), st("SET", "app:1", "v"), st("GET", "app:1"), st("GET", "nope"),
			st("HELLO", "3", "AUTH", "default", "").differs("hello"), st("ACL", "WHOAMI"),
		}, {{raw: "*11\r\n"}}, {{raw: "*2\r\n$3\r\nGET\r\n$16385\r\n"}}})
	})
}

// TestRedisACLGoRedis: go-redis v9 with Username and Password through
// the proxy, by HELLO 3 AUTH and by its fallback to AUTH user pass after
// a refused HELLO, against a backend that only knows the proxy's user.
func TestRedisACLGoRedis(t *testing.T) {
	backend := harness.Redis(t)
	bc := redis.NewClient(&redis.Options{Addr: backend.Addr, Protocol: 2})
	for _, line := range [][]any{
		{"ACL", "SETUSER", "proxy", "on", ">proxy-pw", "allcommands", "allkeys", "allchannels"},
		{"ACL", "SETUSER", "default", "off", "resetpass"},
	} {
		if err := bc.Do(context.Background(), line...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	bc.Close()
	proxy := aclProxy(t, `  redis_username = "proxy"
  redis_auth     = "proxy-pw"`+aclUsersHCL(), fmt.Sprintf("  server %q {}", backend.Addr))
	ctx := context.Background()
	for _, proto := range []int{3, 2, 4} {
		// Protocol 4 is refused by HELLO (NOPROTO): go-redis then falls
		// back to AUTH app app-secret, as it does with a server without
		// HELLO.
		t.Run(fmt.Sprintf("protocol%d", proto), func(t *testing.T) {
			c := redis.NewClient(&redis.Options{Addr: proxy, Username: "app", Password: "app-secret", Protocol: proto, MaxRetries: -1})
			defer c.Close()
			if err := c.Set(ctx, "app:go", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if v, err := c.Get(ctx, "app:go").Result(); err != nil || v != "v" {
				t.Fatalf("GET: %q %v", v, err)
			}
			if err := c.Get(ctx, "other").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM ") {
				t.Fatalf("GET other: %v", err)
			}
			if err := c.MGet(ctx, "app:go", "other").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM ") {
				t.Fatalf("MGET with a forbidden key: %v", err)
			}
			// Pinned links (a transaction, a blocking call) authenticate to
			// the backend as the proxy's user too.
			if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "app:tx", "1", 0)
				p.Incr(ctx, "app:tx")
				return nil
			}); err != nil {
				t.Fatalf("MULTI/EXEC: %v", err)
			}
			if v, err := c.Get(ctx, "app:tx").Result(); err != nil || v != "2" {
				t.Fatalf("after EXEC: %q %v", v, err)
			}
			if err := c.RPush(ctx, "app:q", "x").Err(); err != nil {
				t.Fatal(err)
			}
			if v, err := c.BLPop(ctx, time.Second, "app:q").Result(); err != nil || len(v) != 2 || v[1] != "x" {
				t.Fatalf("BLPOP: %q %v", v, err)
			}
			if err := c.BLPop(ctx, time.Second, "other").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM ") {
				t.Fatalf("BLPOP of a forbidden key: %v", err)
			}
			// A denial leaves the connection usable.
			if v, err := c.Get(ctx, "app:go").Result(); err != nil || v != "v" {
				t.Fatalf("GET after a denial: %q %v", v, err)
			}
			// ACL WHOAMI is @slow, which app lacks.
			if err := c.Do(ctx, "ACL", "WHOAMI").Err(); err == nil || err.Error() != "NOPERM this user has no permissions to run the 'acl|whoami' command" {
				t.Fatalf("ACL WHOAMI: %v", err)
			}
			bad := redis.NewClient(&redis.Options{Addr: proxy, Username: "app", Password: "wrong", Protocol: proto, MaxRetries: -1})
			defer bad.Close()
			if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
	// The default user's password is redis_auth, which also authenticates
	// the proxy on the backend as redis_username.
	c := redis.NewClient(&redis.Options{Addr: proxy, Password: "proxy-pw", MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := direct(t, backend).Do(ctx, "GET", "k").Text(); err == nil || v != "" {
		t.Fatalf("the backend's default user should be off: %q %v", v, err)
	}
}
