package process

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// buildVersion builds the nuthatch binary stamped with version into path.
func buildVersion(t *testing.T, version, path string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", path, "./cmd/nuthatch")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, out)
	}
}

// notifySocket records sd_notify messages with their sender PID, and
// closes BARRIER fds as systemd does.
type notifySocket struct {
	path string
	msgs chan notifyMsg
}

type notifyMsg struct {
	pid  int
	text string
}

func newNotifySocket(t *testing.T) *notifySocket {
	dir, err := os.MkdirTemp("", "nt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, _ := conn.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	n := &notifySocket{path: path, msgs: make(chan notifyMsg, 256)}
	go func() {
		buf := make([]byte, 4096)
		oob := make([]byte, 1024)
		for {
			k, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			m := notifyMsg{text: string(buf[:k])}
			scms, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, s := range scms {
				if cred, err := unix.ParseUnixCredentials(&s); err == nil {
					m.pid = int(cred.Pid)
				}
				if fds, err := unix.ParseUnixRights(&s); err == nil {
					for _, fd := range fds {
						unix.Close(fd)
					}
				}
			}
			n.msgs <- m
		}
	}()
	return n
}

// await returns the first message containing want.
func (n *notifySocket) await(t *testing.T, want string, timeout time.Duration) notifyMsg {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-n.msgs:
			if strings.Contains(m.text, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q notification", want)
			return notifyMsg{}
		}
	}
}

func readPid(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func TestBinaryUpgradeUnderLoad(t *testing.T) {
	// Orphaned masters are re-parented to this test, as to PID 1.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	dir := t.TempDir()
	bin := filepath.Join(dir, "nuthatch")
	buildVersion(t, "upgrade-a", bin)
	s := &setup{conf: filepath.Join(dir, "nuthatch.hcl")}
	s.backends = []*harness.Proc{harness.Redis(t), harness.Redis(t)}
	port := harness.FreePort(t)
	pidFile := filepath.Join(dir, "nuthatch.pid")
	s.write(t, 2, map[string]int{"main": port}, `pid_file = "`+pidFile+`"`)
	notify := newNotifySocket(t)
	s.proxy = harness.StartEnv(t, []string{"NOTIFY_SOCKET=" + notify.path, "WATCHDOG_USEC=2000000"}, bin, "-c", s.conf)
	old := s.proxy.Cmd.Process.Pid
	if m := notify.await(t, "READY=1", 10*time.Second); m.pid != old {
		t.Fatalf("READY=1 from %d, want the master %d", m.pid, old)
	}
	notify.await(t, "WATCHDOG=1", 5*time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	l := startLoad(t, addr, 16)
	time.Sleep(300 * time.Millisecond)

	// A broken new binary: the upgrade rolls back and the old master serves.
	os.Rename(bin, bin+".good")
	os.WriteFile(bin, []byte("#!/bin/sh\nexit 3\n"), 0o755)
	s.proxy.Signal(syscall.SIGUSR2)
	defer func() {
		if t.Failed() {
			t.Logf("nuthatch log:\n%s", s.proxy.Output())
		}
	}()
	if m := notify.await(t, "upgrade failed", 10*time.Second); m.pid != old || !strings.Contains(m.text, "READY=1") {
		t.Fatalf("rollback notification %+v", m)
	}
	if readPid(t, pidFile) != old {
		t.Fatal("pid file changed after a failed upgrade")
	}

	// Replace the binary as dpkg does (rename over it) and upgrade.
	buildVersion(t, "upgrade-b", bin+".new")
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	s.proxy.Signal(syscall.SIGUSR2)
	// A second one while in progress is refused (signals sent at once
	// coalesce in the kernel: wait until the first one was taken).
	for !strings.Contains(s.proxy.Output(), "upgrade-b") {
		time.Sleep(time.Millisecond)
	}
	s.proxy.Signal(syscall.SIGUSR2)
	m := notify.await(t, "MAINPID=", 20*time.Second)
	if m.pid != old {
		t.Fatalf("MAINPID= sent by %d, want the old master %d", m.pid, old)
	}
	newPid, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(m.text, "\n", 2)[0], "MAINPID="))
	ready := notify.await(t, "READY=1", 10*time.Second)
	if ready.pid != newPid {
		t.Fatalf("READY=1 after the hand-over came from %d, want the new master %d", ready.pid, newPid)
	}
	if w := notify.await(t, "WATCHDOG=1", 5*time.Second); w.pid != newPid {
		t.Fatalf("watchdog from %d after the hand-over, want %d", w.pid, newPid)
	}
	// (The old master's output pipe stays open in the new master, so
	// watch the pid rather than the harness's Done.)
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(old, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("old master did not exit after the upgrade")
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for readPid(t, pidFile) != newPid {
		if time.Now().After(deadline) {
			t.Fatalf("pid file %d, want %d", readPid(t, pidFile), newPid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", newPid))
	if exe != bin {
		t.Errorf("new master runs %q", exe)
	}
	waitWorkers(t, newPid, 2, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	l.finish(t)
	if !strings.Contains(s.proxy.Output(), "upgrade-b") || !strings.Contains(s.proxy.Output(), "already in progress") {
		t.Errorf("log lacks the new version's start or the refused second upgrade:\n%s", s.proxy.Output())
	}
	syscall.Kill(newPid, syscall.SIGTERM)
	deadline = time.Now().Add(10 * time.Second)
	for syscall.Kill(newPid, 0) == nil {
		var ws syscall.WaitStatus
		syscall.Wait4(newPid, &ws, syscall.WNOHANG, nil)
		if time.Now().After(deadline) {
			syscall.Kill(newPid, syscall.SIGKILL)
			t.Fatal("new master did not stop")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
