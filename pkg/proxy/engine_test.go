package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
)

// testProxy is an in-process proxy serving one pool on a loopback port in
// front of fake backends.
type testProxy struct {
	px       *Proxy
	addr     string
	backends []*fakeserver.Server
}

// startTestProxy serves one pool of protocol proto ("redis" or "memcache")
// over n fake backends; attrs are extra pool attributes.
func startTestProxy(t testing.TB, proto string, n int, attrs string) *testProxy {
	t.Helper()
	fp := fakeserver.Redis
	if proto == "memcache" {
		fp = fakeserver.Memcache
	}
	tp := &testProxy{}
	var b strings.Builder
	fmt.Fprintf(&b, "pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = %q\n%s\n", proto, attrs)
	for i := 0; i < n; i++ {
		be := fakeserver.New(t, fp)
		tp.backends = append(tp.backends, be)
		fmt.Fprintf(&b, "  server %q {}\n", be.Addr())
	}
	b.WriteString("}\n")
	tp.px, tp.addr = serveHCL(t, b.String())
	return tp
}

// serveHCL serves the configuration's pool "p" in-process on a free
// loopback port, until t ends.
func serveHCL(t testing.TB, hcl string) (*Proxy, string) {
	t.Helper()
	cfg, err := config.Parse([]byte(hcl), "test.hcl")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, hcl)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
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
	return px, ln.Addr().String()
}

// exchange sends in as one client, half-closes and returns everything the
// proxy wrote until it closed the connection.
func exchange(t testing.TB, addr string, in []byte, wait time.Duration) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(in) // the proxy may close first: errors are expected
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(wait))
	out, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		return out, err
	}
	return out, nil
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset by peer")
}

// checkServes asserts that a well-behaved client is still served.
func (tp *testProxy) checkServes(t testing.TB, proto string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", tp.addr, time.Second)
	if err != nil {
		t.Fatalf("proxy no longer accepts: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req, want := "*2\r\n$3\r\nGET\r\n$10\r\necho:clean\r\n", "$10\r\necho:clean\r\n"
	if proto == "memcache" {
		req, want = "get echo:clean\r\n", "VALUE echo:clean 0 10\r\necho:clean\r\nEND\r\n"
	}
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(bufio.NewReader(c), got); err != nil || string(got) != want {
		t.Fatalf("clean client after fuzz input: %q, %v (want %q)", got, err, want)
	}
}

// waitClients waits until the proxy counts no client.
func (tp *testProxy) waitClients(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for tp.px.Clients() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("client_connections stuck at %d", tp.px.Clients())
		}
		time.Sleep(time.Millisecond)
	}
}

var redisSeeds = []string{
	"*1\r\n$4\r\nPING\r\n",
	"*2\r\n$3\r\nGET\r\n$6\r\necho:a\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*4\r\n$4\r\nMGET\r\n$6\r\necho:a\r\n$6\r\necho:b\r\n$1\r\nk\r\n",
	"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n*3\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\nb\r\n",
	"GET echo:inline\r\nPING\r\nECHO \"x y\"\r\n",
	"*2000000000\r\n",
	"*1\r\n$2000000000\r\n",
	"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\nabc",
	"\x00\r\n",
	"*\x00",
	"$\x00",
	"*-10\r\n\r\n*1\r\n$4\r\nPING\r\n",
	"*1\r\nfoo\r\n",
	"GET \"unbalanced\r\n",
	"*2\r\n$4\r\nAUTH\r\n$1\r\nx\r\n*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n",
	"*2\r\n*1\r\n$1\r\na\r\n",
	"*3\r\n$4\r\nEVAL\r\n$1\r\nx\r\n$1\r\n1\r\n",
	"*2\r\n$6\r\nEXISTS\r\n$1\r\nk\r\n*1\r\n$5\r\nHELLO\r\n*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n",
	// Wrong arity of commands whose options the proxy reads.
	"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n*1\r\n$3\r\nSET\r\n*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n",
	// RESP3 and the connection commands.
	"HELLO 3 SETNAME x\r\nMGET echo:a echo:b k\r\nCLIENT GETNAME\r\nINFO\r\nCLIENT LIST\r\nRESET\r\nGET echo:c\r\n",
	"CLIENT REPLY OFF\r\nGET echo:a\r\nCLIENT REPLY ON\r\nCLIENT REPLY SKIP\r\nPING\r\nCLIENT INFO\r\nCLIENT ID\r\n",
	"HELLO 3 AUTH default x\r\nHELLO 2\r\nHELLO\r\nINFO server keyspace nosuch\r\nCLIENT LIST ID 1 2\r\nCLIENT NO-EVICT on\r\n",
}

var memcacheSeeds = []string{
	"version\r\n",
	"get echo:a echo:b echo:c echo:d\r\ngets echo:a\r\nset k 0 0 1\r\nv\r\nget k\r\n",
	"set k 0 0 2000000000\r\nabc",
	"set k 0 0 1 noreply\r\nv\r\ndelete k noreply\r\ndelete k\r\n",
	"get \r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"bogus\r\nversion\r\n",
	"mg echo:a v\r\nmn\r\nms k 1\r\nx\r\nmd k q\r\n",
	"set k 0 0 4\r\nabcdef\r\n",
	"get " + strings.Repeat("k", 300) + "\r\n",
	strings.Repeat("x", 3000),
	"quit\r\nversion\r\n",
	"gat 10 echo:a echo:b\r\ntouch k 1\r\nincr k 1\r\n",
	// Pipelined gets share lines on each server (coalesce_gets).
	"get echo:a\r\nget echo:b echo:c\r\nget echo:a echo:a\r\ngets echo:b\r\ngets echo:c\r\nset k 0 0 1\r\nv\r\nget k echo:d\r\n",
}

func fuzzEngine(f *testing.F, proto string, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	var tp *testProxy
	f.Fuzz(func(t *testing.T, in []byte) {
		if tp == nil {
			// One proxy per fuzzing process: starting one per input would
			// dominate the budget. Its backends are torn down with the
			// first test that created them, so build them on f-independent
			// lifetimes: see newFuzzProxy.
			tp = newFuzzProxy(t, proto)
		}
		if _, err := exchange(t, tp.addr, in, 10*time.Second); err != nil {
			t.Fatalf("the proxy neither answered nor closed: %v", err)
		}
		tp.waitClients(t)
		tp.checkServes(t, proto)
		tp.waitClients(t)
	})
}

// newFuzzProxy starts a proxy whose lifetime is the process's, not one
// input's: fuzzing runs each input as a subtest.
func newFuzzProxy(t testing.TB, proto string) *testProxy {
	lt := &lifetimeTB{TB: t}
	tp := startTestProxy(lt, proto, 3, `  timeout = "2s"`)
	return tp
}

// lifetimeTB drops Cleanup registrations so that what is started lives
// until the process exits.
type lifetimeTB struct{ testing.TB }

func (lifetimeTB) Cleanup(func()) {}

// FuzzRedisEngine feeds arbitrary bytes as a client of a Redis pool: no
// panic, the connection answers and closes, the proxy counts no leftover
// client and still serves a clean one.
func FuzzRedisEngine(f *testing.F) { fuzzEngine(f, "redis", redisSeeds) }

// FuzzMemcacheEngine is FuzzRedisEngine for a memcached pool.
func FuzzMemcacheEngine(f *testing.F) { fuzzEngine(f, "memcache", memcacheSeeds) }

// A pool with tcp_quickack serves as any other: the option only re-arms
// TCP_QUICKACK after each client read (its cost is measured by make bench).
func TestQuickackPoolServes(t *testing.T) {
	for _, proto := range []string{"redis", "memcache"} {
		tp := startTestProxy(t, proto, 2, "  tcp_quickack = true")
		for range 3 {
			tp.checkServes(t, proto)
		}
	}
}
