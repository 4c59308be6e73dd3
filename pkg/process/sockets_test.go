package process

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
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
				defer c.Close()
			}
			done <- err
		}()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got := -1
		for deadline := time.Now().Add(2 * time.Second); got < 0 && time.Now().Before(deadline); {
			for i, f := range socks {
				nfd, _, err := unix.Accept4(int(f.Fd()), unix.SOCK_CLOEXEC)
				if err == nil {
					unix.Close(nfd)
					got = i
					break
				}
				if !errors.Is(err, unix.EAGAIN) {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Millisecond)
		}
		if got != cpu {
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
	cfg, err := config.Parse([]byte(src), path)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	sp := newFakeSpawner()
	sp.notReady[1] = true // the first generation never promotes
	sigs := make(chan os.Signal, 4)
	done := make(chan error, 1)
	m := &Master{Log: log, Spawner: sp, ConfigPath: path, Signals: sigs, Notify: func(string) {}}
	go func() { done <- m.Run(cfg, []byte(src)) }()
	t.Cleanup(func() {
		sigs <- syscall.SIGINT
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("master did not stop")
		}
	})
	bySlot := map[int]*fakeWorker{}
	for range 2 {
		w := sp.wait(t)
		expectMsg(t, w, MsgInit)
		bySlot[w.spec.Slot] = w
	}
	for round := 0; round < 4; round++ {
		cpu := round % 2
		dialed := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			// No UnlockOSThread: the pinned thread ends with the goroutine.
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				dialed <- err
				return
			}
			c, err := net.Dial("tcp", addr)
			if err == nil {
				t.Cleanup(func() { c.Close() })
			}
			dialed <- err
		}()
		if err := <-dialed; err != nil {
			t.Fatal(err)
		}
		got := -1
		for deadline := time.Now().Add(2 * time.Second); got < 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			for slot, w := range bySlot {
				if queued(t, w.files[0]) {
					got = slot
				}
			}
		}
		if got != cpu {
			t.Fatalf("connection %d from CPU %d queued on worker slot %d's socket, want %d (not ready yet, so not steered?)", round+1, cpu, got, cpu)
		}
	}
}

// queued accepts and closes one connection queued on listening socket f,
// and reports whether there was one; it never blocks.
func queued(t *testing.T, f *os.File) bool {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 0); n == 1 {
			if c, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC); err == nil {
				unix.Close(c)
				ok = true
			}
		}
	})
	return ok
}
