package reliability

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// binaryRig is the real nuthatch binary (one worker) with a Redis and a
// memcached pool over fake backends.
type binaryRig struct {
	proc      *harness.Proc
	conf      string
	redisAddr string
	mcAddr    string
	statsAddr string
}

func startBinaryRig(t testing.TB) *binaryRig {
	t.Helper()
	// The fake backends listen first: a port picked by FreePort is released
	// until nuthatch binds it, and a backend's :0 could otherwise get it.
	backends := map[string][]string{}
	for _, proto := range []string{"redis", "memcache"} {
		fp := fakeserver.Redis
		if proto == "memcache" {
			fp = fakeserver.Memcache
		}
		for i := 0; i < 2; i++ {
			backends[proto] = append(backends[proto], fakeserver.New(t, fp).Addr())
		}
	}
	w := &binaryRig{
		redisAddr: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)),
		mcAddr:    fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)),
		statsAddr: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "worker_processes = 1\nstats {\n  listen = %q\n}\n", w.statsAddr)
	for _, p := range []struct{ name, addr, proto string }{{"r", w.redisAddr, "redis"}, {"m", w.mcAddr, "memcache"}} {
		fmt.Fprintf(&b, "pool %q {\n  listen = %q\n  protocol = %q\n  timeout = \"2s\"\n", p.name, p.addr, p.proto)
		for _, a := range backends[p.proto] {
			fmt.Fprintf(&b, "  server %q {}\n", a)
		}
		b.WriteString("}\n")
	}
	w.conf = filepath.Join(t.TempDir(), "nuthatch.hcl")
	if err := os.WriteFile(w.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	w.proc = harness.Start(t, harness.Binary(t), "-c", w.conf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nuthatch output:\n%s", w.proc.Output())
		}
	})
	harness.WaitPort(t, "tcp", w.redisAddr, 10*time.Second)
	harness.WaitPort(t, "tcp", w.mcAddr, 10*time.Second)
	return w
}

// worker returns the pid of the master's only worker.
func (w *binaryRig) worker(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c := children(w.proc.Cmd.Process.Pid); len(c) == 1 {
			return c[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("no single worker")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *binaryRig) dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

// children returns the live child pids of pid.
func children(pid int) []int { return harness.Children(pid) }

// fdCount is the number of open fds of pid.
func fdCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// threadCount is the number of threads of pid.
func threadCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return len(ents)
}
