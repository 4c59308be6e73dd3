package process

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// rssOf is a process's resident set in bytes.
func rssOf(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestTLSIdleClientMemory reports what an idle client costs the worker,
// plaintext and TLS (after one request each), from its resident set.
func TestTLSIdleClientMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("memory")
	}
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	leaf := ca.Leaf(t, "proxy", "localhost")
	be := harness.Redis(t)
	plain, secure := harness.FreePort(t), harness.FreePort(t)
	conf := filepath.Join(dir, "n.hcl")
	os.WriteFile(conf, []byte(fmt.Sprintf(`worker_processes = 1
stats {
  listen = ""
}
pool "plain" {
  listen = "127.0.0.1:%d"
  protocol = "redis"
  server %q {}
}
pool "tls" {
  listen = "127.0.0.1:%d"
  protocol = "redis"
  tls {
    cert = %q
    key = %q
  }
  server %q {}
}
`, plain, be.Addr, secure, leaf.CertFile, leaf.KeyFile, be.Addr)), 0o644)
	p := harness.Start(t, harness.Binary(t), "-c", conf)
	harness.WaitPort(t, "tcp", fmt.Sprintf("127.0.0.1:%d", secure), 10*time.Second)
	worker := waitWorkers(t, p.Cmd.Process.Pid, 1, 5*time.Second)[0]
	const n = 1000
	open := func(dial func() (net.Conn, error)) []net.Conn {
		var cs []net.Conn
		for i := 0; i < n; i++ {
			c, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		time.Sleep(300 * time.Millisecond)
		return cs
	}
	before := rssOf(t, worker)
	pc := open(func() (net.Conn, error) { return net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", plain)) })
	mid := rssOf(t, worker)
	tc := open(func() (net.Conn, error) {
		return tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", secure), &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
	})
	after := rssOf(t, worker)
	t.Logf("worker resident set per idle client: plaintext %d bytes, TLS %d bytes (%d clients each)",
		(mid-before)/n, (after-mid)/n, n)
	for _, c := range append(pc, tc...) {
		c.Close()
	}
}
