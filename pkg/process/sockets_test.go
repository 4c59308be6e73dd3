package process

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// A committed set steers each loopback connection to the socket of the
// CPU it came from (reuseport_steering "auto"): one client
// thread's connections all reach one worker.
func TestSocketSetSteersByCPU(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	src := fmt.Sprintf("worker_processes = 2\nstats {\n  listen = \"\"\n}\npool \"a\" {\n  listen = %q\n  protocol = \"redis\"\n  server \"127.0.0.1:6379\" {}\n}\n", addr)
	cfg, err := config.Parse([]byte(src), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReuseportSteering != config.SteerAuto {
		t.Fatalf("default steering %q", cfg.ReuseportSteering)
	}
	s := newSocketSet()
	defer s.closeAll()
	next, err := s.want(cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	s.commit(next, cfg.ReuseportSteering, logrus.NewEntry(log))
	socks := next["tcp:"+addr]
	if len(socks) != 2 {
		t.Fatalf("%d sockets for 2 workers", len(socks))
	}
	for round := 0; round < 6; round++ {
		cpu := round % 2
		dialFromCPU(t, cpu, addr)
		if got := queuedOn(t, socks); got != cpu {
			t.Fatalf("round %d: connection from CPU %d queued on socket %d", round, cpu, got)
		}
	}
}

// A fresh master steers its sockets before its workers are ready: the
// clients that connect while the workers start keep their connections
// for as long as they run, and must not be left spread by hash.
func TestMasterSteersBeforeWorkersAreReady(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	path := filepath.Join(t.TempDir(), "nuthatch.hcl")
	src := fmt.Sprintf("worker_processes = 2\nuser = \"root\"\ngroup = \"root\"\nstats {\n  listen = \"\"\n}\npool \"a\" {\n  listen = %q\n  protocol = \"redis\"\n  server \"127.0.0.1:6379\" {}\n}\n", addr)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runMasterWith(t, path, io.Discard, func(r *masterRun) {
		r.m.openSocket = nil    // real SO_REUSEPORT sockets
		r.sp.notReady[1] = true // the first generation never promotes
	})
	socks := make([]*os.File, 2)
	for range 2 {
		w := r.sp.wait(t)
		expectMsg(t, w, MsgInit)
		socks[w.spec.Slot] = w.files[0]
	}
	for round := 0; round < 4; round++ {
		cpu := round % 2
		dialFromCPU(t, cpu, addr)
		if got := queuedOn(t, socks); got != cpu {
			t.Fatalf("connection %d from CPU %d queued on worker slot %d's socket, want %d (not steered before ready?)", round+1, cpu, got, cpu)
		}
	}
}

// dialFromCPU connects to addr from a thread pinned to cpu, so that the
// loopback handshake is processed there, and closes the connection at the
// end of the test.
func dialFromCPU(t *testing.T, cpu int, addr string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the pinned thread exits with the goroutine
		// instead of going back to the pool (and into a later fork).
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- err
			return
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// queuedOn waits up to 2 s for a connection queued on one of the listening
// sockets socks, accepts and closes it, and returns that socket's index
// (-1: none).
func queuedOn(t *testing.T, socks []*os.File) int {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for i, f := range socks {
			rc, err := f.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			got := false
			rc.Control(func(fd uintptr) {
				// Poll first: f may be in blocking mode.
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				if n, _ := unix.Poll(pfd, 0); n == 1 {
					if c, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC); err == nil {
						unix.Close(c)
						got = true
					}
				}
			})
			if got {
				return i
			}
		}
	}
	return -1
}
