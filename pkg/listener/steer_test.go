package listener

import (
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// reuseportGroup opens n SO_REUSEPORT sockets on one loopback port.
func reuseportGroup(t *testing.T, n int) ([]*os.File, string) {
	t.Helper()
	first, err := Open(config.Address{Network: "tcp", Addr: "127.0.0.1:0"}, Options{Backlog: 64, ReusePort: true})
	if err != nil {
		t.Fatal(err)
	}
	files := []*os.File{first}
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	sa, err := unix.Getsockname(int(first.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	for len(files) < n {
		f, err := Open(config.Address{Network: "tcp", Addr: addr}, Options{Backlog: 64, ReusePort: true})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files, addr
}

// dialFrom connects to addr from a thread pinned to cpu, so that the
// loopback handshake is processed there.
func dialFrom(t *testing.T, cpu int, addr string) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the pinned thread exits with the goroutine
		// instead of going back to the pool (and into a later fork).
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- result{err: err}
			return
		}
		c, err := net.Dial("tcp", addr)
		done <- result{c, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("dial from CPU %d: %v", cpu, r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// acceptedBy returns the index of the socket that queued one connection.
func acceptedBy(t *testing.T, files []*os.File) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for i, f := range files {
			nfd, _, err := unix.Accept4(int(f.Fd()), unix.SOCK_CLOEXEC)
			if err == nil {
				unix.Close(nfd)
				return i
			}
			if !errors.Is(err, unix.EAGAIN) {
				t.Fatalf("accept: %v", err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no socket of the group queued the connection")
	return -1
}

func TestSteerByCPU(t *testing.T) {
	cpus := runtime.NumCPU()
	if cpus < 2 {
		t.Skip("needs 2 CPUs")
	}
	for _, mode := range []config.Steering{config.SteerCPU, config.SteerAuto} {
		t.Run(string(mode), func(t *testing.T) {
			const n = 2
			files, addr := reuseportGroup(t, n)
			if err := Steer(files[1], n, mode); err != nil {
				t.Fatal(err)
			}
			// Loopback connections go to socket CPU mod n, every time: a
			// hash would put about half of them elsewhere.
			for round := 0; round < 8; round++ {
				cpu := round % cpus
				dialFrom(t, cpu, addr)
				if got := acceptedBy(t, files); got != cpu%n {
					t.Fatalf("round %d: connection from CPU %d accepted on socket %d, want %d", round, cpu, got, cpu%n)
				}
			}
		})
	}
}

func TestSteerHashDetaches(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	files, addr := reuseportGroup(t, 2)
	// Detaching with no program attached is not an error.
	if err := Steer(files[0], 2, config.SteerHash); err != nil {
		t.Fatal(err)
	}
	if err := Steer(files[0], 2, config.SteerCPU); err != nil {
		t.Fatal(err)
	}
	if err := Steer(files[0], 2, config.SteerHash); err != nil {
		t.Fatal(err)
	}
	// By hash, connections from one CPU reach both sockets.
	seen := map[int]bool{}
	for i := 0; i < 64 && len(seen) < 2; i++ {
		dialFrom(t, 0, addr)
		seen[acceptedBy(t, files)] = true
	}
	if len(seen) != 2 {
		t.Fatalf("64 connections from CPU 0 reached sockets %v only after detaching the program", seen)
	}
}

func TestSteerRejectsEmptyGroup(t *testing.T) {
	files, _ := reuseportGroup(t, 1)
	if err := Steer(files[0], 0, config.SteerCPU); err == nil {
		t.Fatal("steering over 0 sockets accepted")
	}
}
