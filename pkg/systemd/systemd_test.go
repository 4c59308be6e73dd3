package systemd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeManager is a notify socket that records messages and honours
// BARRIER=1 by closing the passed fd, as systemd does.
type fakeManager struct {
	conn *net.UnixConn
	path string
	msgs chan string
}

func newFakeManager(t *testing.T) *fakeManager {
	dir, err := os.MkdirTemp("", "sd")
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
	m := &fakeManager{conn: conn, path: path, msgs: make(chan string, 16)}
	go func() {
		buf := make([]byte, 4096)
		oob := make([]byte, 256)
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			if oobn > 0 {
				scms, _ := unix.ParseSocketControlMessage(oob[:oobn])
				for _, s := range scms {
					fds, _ := unix.ParseUnixRights(&s)
					for _, fd := range fds {
						unix.Close(fd)
					}
				}
			}
			m.msgs <- string(buf[:n])
		}
	}()
	return m
}

func TestNotifyAndBarrier(t *testing.T) {
	m := newFakeManager(t)
	n := NotifierFor(m.path)
	if !n.Enabled() || n.Socket() != m.path {
		t.Fatal("notifier not enabled")
	}
	if err := n.Notify("READY=1\nSTATUS=ok"); err != nil {
		t.Fatal(err)
	}
	if got := <-m.msgs; got != "READY=1\nSTATUS=ok" {
		t.Fatalf("got %q", got)
	}
	if err := n.Barrier(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := <-m.msgs; got != "BARRIER=1" {
		t.Fatalf("got %q", got)
	}
}

func TestBarrierTimesOutWithoutManager(t *testing.T) {
	dir, err := os.MkdirTemp("", "sd") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "n")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() // nobody reads: the fd stays open in the queue
	if err := NotifierFor(path).Barrier(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("barrier: %v", err)
	}
}

func TestDisabledNotifierIsSilent(t *testing.T) {
	n := NotifierFor("")
	if n.Enabled() {
		t.Fatal("enabled without a socket")
	}
	if err := n.Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if err := n.Barrier(time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "10000000")
	t.Setenv("WATCHDOG_PID", "")
	if got := WatchdogInterval(); got != 5*time.Second {
		t.Fatalf("interval %v", got)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if got := WatchdogInterval(); got != 5*time.Second {
		t.Fatalf("own pid: %v", got)
	}
	t.Setenv("WATCHDOG_PID", "1")
	if got := WatchdogInterval(); got != 0 {
		t.Fatalf("other pid: %v", got)
	}
	t.Setenv("WATCHDOG_USEC", "")
	if got := WatchdogInterval(); got != 0 {
		t.Fatalf("unset: %v", got)
	}
}
