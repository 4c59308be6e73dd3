package process

import (
	"errors"
	"fmt"
	"io"
	"net"
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
