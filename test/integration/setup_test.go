// Package integration drives the nuthatch binary with real clients against
// real redis-server, memcached and nutcracker processes.
package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// redisPool is a nuthatch in front of n fresh redis-servers.
type redisPool struct {
	proxy    *harness.Proc
	backends []*harness.Proc
	addr     string
}

// startRedisPool starts n redis-servers and nuthatch over them; attrs are
// extra pool attributes.
func startRedisPool(t *testing.T, n int, attrs string, backendArgs ...string) *redisPool {
	t.Helper()
	rp := &redisPool{}
	var servers strings.Builder
	for i := 0; i < n; i++ {
		b := harness.Redis(t, backendArgs...)
		rp.backends = append(rp.backends, b)
		fmt.Fprintf(&servers, "  server %q {}\n", b.Addr)
	}
	rp.addr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes = 1
log {
  level = "debug"
}
stats {
  listen = ""
}
pool "test" {
  listen   = %q
  protocol = "redis"
  distribution = "modula"
%s
%s
%s}
`, rp.addr, defaultTimeout(attrs), attrs, servers.String())
	rp.proxy = harness.Nuthatch(t, hcl, rp.addr)
	t.Cleanup(func() {
		if rp.proxy.Exited() {
			t.Errorf("nuthatch died during the test; log:\n%s", rp.proxy.Output())
		}
	})
	return rp
}

// defaultTimeout is twemproxy's test suite timeout unless attrs set one.
func defaultTimeout(attrs string) string {
	if regexp.MustCompile(`(?m)^\s*timeout\s*=`).MatchString(attrs) {
		return ""
	}
	return `  timeout  = "400ms"`
}

func (rp *redisPool) client(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: rp.addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

func direct(t *testing.T, b *harness.Proc) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: b.Addr, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// owner returns the index of the backend that holds key.
func (rp *redisPool) owner(t *testing.T, key string) int {
	t.Helper()
	found := -1
	for i, b := range rp.backends {
		n, err := direct(t, b).Exists(context.Background(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			if found >= 0 {
				t.Fatalf("key %q on backends %d and %d", key, found, i)
			}
			found = i
		}
	}
	return found
}

// rawConn is a raw client socket for byte-level tests.
type rawConn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expect reads exactly len(want) bytes and compares.
func (c *rawConn) expect(want string) {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	n, err := ioReadFull(c.r, got)
	if err != nil || string(got) != want {
		c.t.Fatalf("got %q (err %v), want %q", got[:n], err, want)
	}
}

// expectClosed waits for EOF (after optionally reading some bytes).
func (c *rawConn) expectClosed() string {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatalf("connection not closed; got %q", b.String())
			}
			return b.String()
		}
	}
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
