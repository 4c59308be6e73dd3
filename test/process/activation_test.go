package process

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// TestSocketActivation runs nuthatch under systemd-socket-activate: the
// pool named like a passed socket's FileDescriptorName takes it, a pool
// whose address matches an unnamed socket takes that one, a pool with no
// passed socket is bound by nuthatch, and a passed socket that matches no
// pool is closed.
func TestSocketActivation(t *testing.T) {
	harness.Need(t, "systemd-socket-activate")
	dir := t.TempDir()
	s := &setup{conf: filepath.Join(dir, "nuthatch.hcl")}
	s.backends = []*harness.Proc{harness.Redis(t)}
	pByName, pByAddr, pOwn, pStray := harness.FreePort(t), harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)
	// "byname" listens on a different address than its socket: the name wins.
	s.write(t, 2, map[string]int{"byname": harness.FreePort(t), "byaddr": pByAddr, "own": pOwn}, "")
	notify := newNotifySocket(t)
	p := harness.Start(t, "systemd-socket-activate",
		"-l", fmt.Sprintf("127.0.0.1:%d", pByName),
		"-l", fmt.Sprintf("127.0.0.1:%d", pByAddr),
		"-l", fmt.Sprintf("127.0.0.1:%d", pStray),
		"--fdname=byname:nuthatch.socket:nuthatch.socket",
		"-E", "NOTIFY_SOCKET="+notify.path,
		harness.Binary(t), "-c", s.conf)
	// The first connection starts the service; it waits in the backlog.
	harness.WaitPort(t, "tcp", fmt.Sprintf("127.0.0.1:%d", pByName), 5*time.Second)
	first := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", pByName)})
	defer first.Close()
	if err := first.Set(ctx, "activated", "yes", 0).Err(); err != nil {
		t.Fatalf("first connection: %v\n%s", err, p.Output())
	}
	ready := notify.await(t, "READY=1", 10*time.Second)
	if ready.pid != p.Cmd.Process.Pid {
		t.Errorf("READY=1 from %d, want %d (the activated process)", ready.pid, p.Cmd.Process.Pid)
	}
	for _, port := range []int{pByAddr, pOwn} {
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		if v, err := c.Get(ctx, "activated").Result(); err != nil || v != "yes" {
			t.Errorf("port %d: %q %v", port, v, err)
		}
		c.Close()
	}
	if !strings.Contains(p.Output(), "matches no pool") {
		t.Errorf("stray socket not reported:\n%s", p.Output())
	}
	// The stray socket is closed: nothing accepts there any more.
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pStray), 200*time.Millisecond)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		c.Write([]byte("PING\r\n"))
		if n, _ := c.Read(make([]byte, 16)); n > 0 {
			t.Error("stray socket answered")
		}
		c.Close()
	}
	// The activation variables were consumed: workers do not see them.
	for _, w := range children(p.Cmd.Process.Pid) {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w))
		if strings.Contains(string(env), "LISTEN_FDS") || strings.Contains(string(env), "NOTIFY_SOCKET") {
			t.Errorf("worker %d inherited systemd variables", w)
		}
	}
}
