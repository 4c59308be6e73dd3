package proxy

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
)

// respClient is one client connection that sends a command and reads its
// whole reply.
type respClient struct {
	t   *testing.T
	c   net.Conn
	buf []byte
}

func dialResp(t *testing.T, addr string) *respClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &respClient{t: t, c: c}
}

func (rc *respClient) do(args ...string) string {
	rc.t.Helper()
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.c.Write(resp.AppendCommand(nil, bs)); err != nil {
		rc.t.Fatal(err)
	}
	rd := make([]byte, 4096)
	for {
		if n, _, err := resp.ReplyLen(rc.buf, resp.DefaultLimits()); err != nil {
			rc.t.Fatal(err)
		} else if n > 0 {
			out := string(rc.buf[:n])
			rc.buf = rc.buf[n:]
			return out
		}
		n, err := rc.c.Read(rd)
		if err != nil {
			rc.t.Fatalf("%q: %v", args, err)
		}
		rc.buf = append(rc.buf, rd[:n]...)
	}
}

// keysOn finds a key that the pool places on each of its servers.
func keysOn(t *testing.T, tp *testProxy) []string {
	p := tp.px.order[0]
	keys := make([]string, len(p.servers))
	found := 0
	for i := 0; found < len(keys) && i < 10000; i++ {
		k := "key" + strconv.Itoa(i)
		s := p.serverFor([]byte(k))
		if keys[s.idx] == "" {
			keys[s.idx] = k
			found++
		}
	}
	if found < len(keys) {
		t.Fatal("no key for some server")
	}
	return keys
}

// A command the built-in table does not know (HGETEX, redis 8) is routed
// by the key its backends' COMMAND key specs name; COMMAND is asked once
// per pool; commands the backends do not advertise stay unknown, and
// advertised ones whose keys cannot be known, or that block, are refused.
func TestLearnedCommandRoutedByKey(t *testing.T) {
	tp := startTestProxy(t, "redis", 2, "")
	for _, be := range tp.backends {
		be.AdvertiseCommands([]byte(fakeserver.HGetExReply), "hgetex")
	}
	keys := keysOn(t, tp)
	c := dialResp(t, tp.addr)
	for i, k := range keys {
		// The first link's COMMAND goes before this SET on the same
		// link, so its reply is read first.
		if got := c.do("SET", k, "v"+strconv.Itoa(i)); got != "+OK\r\n" {
			t.Fatalf("SET %s: %q", k, got)
		}
	}
	for i, k := range keys {
		// Only the server owning k holds it: the value proves the route.
		want := "$2\r\nv" + strconv.Itoa(i) + "\r\n"
		for _, name := range []string{"HGETEX", "hgetex", "HGetEx"} {
			if got := c.do(name, k, "PERSIST", "FIELDS", "1", "f"); got != want {
				t.Errorf("%s %s (server %d): %q, want %q", name, k, i, got, want)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"HGETEX"}, "-ERR wrong number of arguments for 'hgetex' command\r\n"},
		{[]string{"FOO", "x"}, "-ERR unknown command 'FOO', with args beginning with: 'x' \r\n"},
		{[]string{"MYSTERY", "a", "b"}, "-ERR command 'mystery' is not supported by nuthatch: keys not known to nuthatch\r\n"},
		{[]string{"BHGETEX", "a", "0"}, "-ERR command 'bhgetex' is not supported by nuthatch: blocking command\r\n"},
		// The built-in table wins: GET is still GET.
		{[]string{"GET", keys[1]}, "$2\r\nv1\r\n"},
	} {
		if got := c.do(tc.args...); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.args, got, tc.want)
		}
	}
	var asked int64
	for _, be := range tp.backends {
		asked += be.CommandsAsked()
	}
	if asked != 1 {
		t.Errorf("the backends were asked COMMAND %d times, want once per pool", asked)
	}
}

// Backends that refuse COMMAND (older than redis 7, or renamed away)
// leave the built-in table alone, and are not asked again.
func TestLearnedCommandRefused(t *testing.T) {
	tp := startTestProxy(t, "redis", 2, "")
	keys := keysOn(t, tp)
	c := dialResp(t, tp.addr)
	for _, k := range keys {
		if got := c.do("SET", k, "v"); got != "+OK\r\n" {
			t.Fatalf("SET: %q", got)
		}
	}
	if got := c.do("HGETEX", keys[0], "FIELDS", "1", "f"); !strings.HasPrefix(got, "-ERR unknown command 'HGETEX'") {
		t.Errorf("HGETEX without key specs: %q", got)
	}
	var asked int64
	for _, be := range tp.backends {
		asked += be.CommandsAsked()
	}
	if asked != 1 {
		t.Errorf("the backends were asked COMMAND %d times, want once", asked)
	}
}

// Before any server connection exists, an unknown command opens one so
// that the servers are asked; it gets the unknown-command error itself,
// and the commands after the answer are routed.
func TestLearnedCommandFirstRequest(t *testing.T) {
	tp := startTestProxy(t, "redis", 1, "")
	tp.backends[0].AdvertiseCommands([]byte(fakeserver.HGetExReply), "hgetex")
	c := dialResp(t, tp.addr)
	if got := c.do("HGETEX", "echo:k", "FIELDS", "1", "f"); !strings.HasPrefix(got, "-ERR unknown command") {
		t.Fatalf("first HGETEX: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := c.do("HGETEX", "echo:k", "FIELDS", "1", "f")
		if got == "$6\r\necho:k\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HGETEX never routed: %q", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
