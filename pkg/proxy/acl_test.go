package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
)

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// aclProxy serves a pool with users over a fake backend, logging into
// the returned buffer.
func aclTestProxy(t *testing.T, users string) (*Proxy, string, *syncBuf) {
	t.Helper()
	be := fakeserver.New(t, fakeserver.Redis)
	sum := sha256.Sum256([]byte("app-secret"))
	hcl := fmt.Sprintf(`pool "p" {
  listen   = "127.0.0.1:1"
  protocol = "redis"
  user "app" {
    password_sha256 = %q
    commands        = ["+@read", "+@write", "-@dangerous"]
    keys            = ["echo:*"]
  }
%s
  server %q {}
}
`, hex.EncodeToString(sum[:]), users, be.Addr())
	cfg, err := config.Parse([]byte(hcl), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	buf := &syncBuf{}
	log := logrus.New()
	log.SetOutput(buf)
	log.SetFormatter(&logrus.JSONFormatter{})
	log.SetLevel(logrus.DebugLevel)
	px, err := New(cfg, logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px.Start()
	if err := px.Serve("p", ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	return px, ln.Addr().String(), buf
}

type lineClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialLines(t *testing.T, addr string) *lineClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineClient{t, c, bufio.NewReader(c)}
}

// do sends an inline command and returns the first line of the reply.
func (l *lineClient) do(cmd string) string {
	l.t.Helper()
	l.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := l.c.Write([]byte(cmd + "\r\n")); err != nil {
		l.t.Fatal(err)
	}
	line, err := l.r.ReadString('\n')
	if err != nil {
		l.t.Fatalf("%s: %v", cmd, err)
	}
	if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
		var n int
		fmt.Sscanf(line, "$%d", &n)
		body := make([]byte, n+2)
		if _, err := io.ReadFull(l.r, body); err != nil {
			l.t.Fatal(err)
		}
		line += string(body)
	}
	return line
}

func poolSnap(px *Proxy) PoolSnapshot { return px.Snapshot().Pools[0] }

func TestACLDenialsCountedLoggedNotClosed(t *testing.T) {
	px, addr, logs := aclTestProxy(t, "")
	c := dialLines(t, addr)
	if got := c.do("GET echo:1"); got != "-NOAUTH Authentication required.\r\n" {
		t.Fatalf("before AUTH: %q", got)
	}
	if got := c.do("AUTH app not-the-password"); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Fatalf("wrong password: %q", got)
	}
	if got := c.do("AUTH app app-secret"); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	for i := 0; i < 30; i++ {
		if got := c.do("GET secret:1"); got != "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n" {
			t.Fatalf("key denial %d: %q", i, got)
		}
	}
	if got := c.do("FLUSHALL"); got != "-NOPERM this user has no permissions to run the 'flushall' command\r\n" {
		t.Fatalf("command denial: %q", got)
	}
	// The connection still serves.
	if got := c.do("GET echo:ok"); got != "$7\r\necho:ok\r\n" {
		t.Fatalf("after denials: %q", got)
	}
	s := poolSnap(px)
	if s.ACLDeniedKey != 30 || s.ACLDeniedCommand != 1 || s.ACLDeniedChannel != 0 || s.AuthFailures != 1 {
		t.Errorf("counters: key %d command %d channel %d auth failures %d", s.ACLDeniedKey, s.ACLDeniedCommand, s.ACLDeniedChannel, s.AuthFailures)
	}
	out := logs.String()
	if strings.Contains(out, "app-secret") || strings.Contains(out, "not-the-password") || strings.Contains(out, "secret:1") {
		t.Errorf("a password or a key reached the log:\n%s", out)
	}
	denied := strings.Count(out, `"msg":"ACL denied a request"`)
	if denied == 0 || denied > slowLogPerSecond*2 {
		t.Errorf("%d denial lines for 31 denials (rate limit %d/s):\n%s", denied, slowLogPerSecond, out)
	}
	if !strings.Contains(out, `"user":"app"`) || !strings.Contains(out, `"command":"flushall"`) && denied >= slowLogPerSecond {
		t.Logf("log:\n%s", out)
	}
	if !strings.Contains(out, `"msg":"failed AUTH"`) {
		t.Errorf("no failed AUTH line:\n%s", out)
	}
}

func TestACLSessionUserAndWhoami(t *testing.T) {
	_, addr, _ := aclTestProxy(t, `  user "default" {
    nopass   = true
    commands = ["+ping", "+acl|whoami", "+client"]
  }`)
	c := dialLines(t, addr)
	if got := c.do("ACL WHOAMI"); got != "$7\r\ndefault\r\n" {
		t.Fatalf("WHOAMI: %q", got)
	}
	if got := c.do("GET echo:1"); got != "-NOPERM this user has no permissions to run the 'get' command\r\n" {
		t.Fatalf("default GET: %q", got)
	}
	if got := c.do("CLIENT INFO"); !strings.Contains(got, " user=default ") {
		t.Fatalf("CLIENT INFO: %q", got)
	}
	if got := c.do("AUTH app app-secret"); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	// app may not run ACL WHOAMI (@slow) but CLIENT LIST shows it from a
	// default connection.
	d := dialLines(t, addr)
	if got := d.do("CLIENT LIST"); !strings.Contains(got, " user=app ") || !strings.Contains(got, " user=default ") {
		t.Fatalf("CLIENT LIST: %q", got)
	}
	if got := c.do("GET echo:1"); got != "$6\r\necho:1\r\n" {
		t.Fatalf("app GET: %q", got)
	}
	// MULTI is @transaction, which app lacks; a NOPERM never closes.
	if got := c.do("MULTI"); got != "-NOPERM this user has no permissions to run the 'multi' command\r\n" {
		t.Fatalf("MULTI: %q", got)
	}
	if got := c.do("RESET"); got != "+RESET\r\n" {
		t.Fatalf("RESET: %q", got)
	}
	if got := c.do("GET echo:1"); got != "-NOPERM this user has no permissions to run the 'get' command\r\n" {
		t.Fatalf("after RESET: %q", got)
	}
}

// Without users and redis_auth, nothing is checked and AUTH behaves as on
// a redis whose default user has no password.
func TestACLOpenPool(t *testing.T) {
	tp := startTestProxy(t, "redis", 1, "")
	c := dialLines(t, tp.addr)
	for cmd, want := range map[string]string{
		"AUTH x":                      "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
		"AUTH default x":              "+OK\r\n",
		"AUTH other x":                "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
		"ACL WHOAMI":                  "$7\r\ndefault\r\n",
		"ACL DRYRUN default FLUSHALL": "+OK\r\n",
		"GET echo:a":                  "$6\r\necho:a\r\n",
	} {
		if got := c.do(cmd); got != want {
			t.Errorf("%s: %q, want %q", cmd, got, want)
		}
	}
}

// TestHandOverKeepsACLUser: a client logged in as a user stays that user
// in the next engine when the user is unchanged there; one whose user was
// removed or got other passwords is refused (closed).
func TestHandOverKeepsACLUser(t *testing.T) {
	be := fakeserver.New(t, fakeserver.Redis)
	pool := func(users string) string {
		return fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n%s\n  server %q {}\n}\n", users, be.Addr())
	}
	user := func(pw string) string {
		sum := sha256.Sum256([]byte(pw))
		return fmt.Sprintf("  user \"app\" {\n    password_sha256 = %q\n    commands = [\"+@read\"]\n    keys = [\"echo:*\"]\n  }\n", hex.EncodeToString(sum[:]))
	}
	for _, c := range []struct {
		name, next string
		want       error
	}{
		{"same", pool(user("pw")), nil},
		{"password changed", pool(user("other")), ErrUserChanged},
		{"user removed", pool(`  user "ops" {
    nopass = true
  }`), ErrUserChanged},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, addr := serveHCL(t, pool(user("pw")))
			b, _ := serveHCL(t, c.next)
			cl := dialLines(t, addr)
			if got := cl.do("AUTH app pw"); got != "+OK\r\n" {
				t.Fatalf("AUTH: %q", got)
			}
			hs := make(chan Handoff, 1)
			if _, err := a.HandOver(context.Background(), func(h Handoff) { hs <- h }); err != nil {
				t.Fatal(err)
			}
			err := b.Adopt([]Handoff{<-hs})[0]
			if !errors.Is(err, c.want) {
				t.Fatalf("adopt: %v, want %v", err, c.want)
			}
			if c.want != nil {
				return
			}
			if got := cl.do("GET echo:1"); got != "$6\r\necho:1\r\n" {
				t.Fatalf("GET after the hand-over: %q", got)
			}
			if got := cl.do("SET echo:1 v"); got != "-NOPERM this user has no permissions to run the 'set' command\r\n" {
				t.Fatalf("SET after the hand-over: %q", got)
			}
		})
	}
}
