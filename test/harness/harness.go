// Package harness starts the real programs nuthatch is tested against —
// redis-server, memcached, nutcracker and nuthatch itself — on free
// loopback ports, and stops every one of them when the test ends.
package harness

import (
	"bytes"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	// Below the kernel's ephemeral range (32768-60999): a port from that
	// range can be taken as the source port of any outgoing connection
	// between now and the moment the test binds it, and with several test
	// processes on the machine it was (a reload that could not bind).
	return LowPort(t, 0)
}

// Need skips the test when a program is not installed.
func Need(t testing.TB, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (make test installs it)", p)
		}
	}
}

// WaitPort waits until addr accepts connections.
func WaitPort(t testing.TB, network, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout(network, addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s not accepting after %v: %v", network, addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Proc is a started program.
type Proc struct {
	Cmd  *exec.Cmd
	Addr string
	Port int
	Log  *bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Output returns what the program wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Log.String()
}

// Start runs name with args and kills it (and waits) when t ends.
func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	return StartEnv(t, nil, name, args...)
}

// StartEnv is Start with extra environment variables.
func StartEnv(t testing.TB, env []string, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Log: new(bytes.Buffer), done: make(chan struct{})}
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	w := lockedBuffer{&p.mu, p.Log}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var err error
	onSpawnThread(func() { err = cmd.Start() })
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.Cmd = cmd
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Kill() })
	return p
}

// spawnThread is the OS thread every program is started from, locked to
// its goroutine for the life of the test binary. Pdeathsig fires when the
// thread that forked the child exits, not the process (Go issue 27505): a
// test that pins a goroutine to a thread and lets the goroutine end, which
// ends the thread, killed a proxy it had started from that thread, and the
// proxy's clients saw their connections refused.
var (
	spawnOnce sync.Once
	spawnReq  = make(chan func())
)

func onSpawnThread(f func()) {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread()
			for f := range spawnReq {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawnReq <- func() { defer close(done); f() }
	<-done
}

// Kill kills the program's whole process group and waits for it.
func (p *Proc) Kill() {
	if p.Cmd.Process == nil {
		return
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Signal sends sig to the program.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Done is closed when the program has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the program has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Redis starts a redis-server with no persistence; extra is appended to
// its command line (e.g. "--requirepass", "x").
func Redis(t testing.TB, extra ...string) *Proc {
	t.Helper()
	Need(t, "redis-server")
	port := FreePort(t)
	args := append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir()}, extra...)
	p := Start(t, "redis-server", args...)
	p.Port, p.Addr = port, fmt.Sprintf("127.0.0.1:%d", port)
	WaitPort(t, "tcp", p.Addr, 10*time.Second)
	return p
}

// Memcached starts a memcached.
func Memcached(t testing.TB, extra ...string) *Proc {
	t.Helper()
	Need(t, "memcached")
	port := FreePort(t)
	args := append([]string{"-l", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "0", "-u", "root"}, extra...)
	if os.Getuid() != 0 {
		args = append([]string{"-l", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "0"}, extra...)
	}
	p := Start(t, "memcached", args...)
	p.Port, p.Addr = port, fmt.Sprintf("127.0.0.1:%d", port)
	WaitPort(t, "tcp", p.Addr, 10*time.Second)
	return p
}

// Nutcracker starts Debian's nutcracker on yaml; listen is the pool address
// to wait for.
func Nutcracker(t testing.TB, yaml, listen string) *Proc {
	t.Helper()
	Need(t, "nutcracker")
	dir := t.TempDir()
	conf := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	stats := FreePort(t)
	p := Start(t, "nutcracker", "-c", conf, "-s", fmt.Sprint(stats), "-a", "127.0.0.1", "-v", "4")
	p.Addr = listen
	WaitPort(t, "tcp", listen, 10*time.Second)
	return p
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// Binary returns the nuthatch binary under test: $NUTHATCH_BIN, or one
// built once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("NUTHATCH_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nuthatch-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "nuthatch")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/nuthatch")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// Nuthatch writes hcl to a file and runs nuthatch on it, waiting for every
// address in wait to accept.
func Nuthatch(t testing.TB, hcl string, wait ...string) *Proc {
	t.Helper()
	bin := Binary(t)
	conf := filepath.Join(t.TempDir(), "nuthatch.hcl")
	if err := os.WriteFile(conf, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	p := Start(t, bin, "-c", conf)
	for _, a := range wait {
		network := "tcp"
		if strings.HasPrefix(a, "unix:") {
			network, a = "unix", strings.TrimPrefix(a, "unix:")
		}
		WaitPort(t, network, a, 10*time.Second)
	}
	if len(wait) > 0 {
		p.Addr = wait[0]
	}
	return p
}

// Children returns the live (not zombie) child processes of pid, read from
// /proc: a nuthatch master's workers.
func Children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 > len(s) {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) < 2 {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid && f[0] != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// LowPort returns a free loopback port below the ephemeral range
// (32768-60999), where a later bind cannot collide with an outgoing
// connection's port; with busOffset > 0, port+busOffset is free too (a
// Redis Cluster node's bus port is its port + 10000).
func LowPort(t testing.TB, busOffset int) int {
	t.Helper()
	for range 500 {
		p := 12000 + rand.Intn(10000)
		a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		if busOffset == 0 {
			a.Close()
			return p
		}
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+busOffset))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	t.Fatal("no free low port")
	return 0
}
