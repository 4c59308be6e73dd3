// Package process tests nuthatch's master/worker model on the real binary:
// workers, respawn, reload, stop, under load from real clients against real
// redis-servers.
package process

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

var ctx = context.Background()

// children returns the live child pids of pid.
func children(pid int) []int { return harness.Children(pid) }

func waitWorkers(t *testing.T, master, n int, timeout time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w := children(master)
		if len(w) == n {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("master %d has %d workers, want %d", master, len(w), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func socketCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

type setup struct {
	conf     string
	proxy    *harness.Proc
	backends []*harness.Proc
	ports    []int
}

func (s *setup) write(t *testing.T, workers int, pools map[string]int, extra string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "worker_processes = %d\nworker_shutdown_timeout = \"5s\"\n%s\nstats {\n  listen = \"\"\n}\n", workers, extra)
	names := make([]string, 0, len(pools))
	for name := range pools {
		names = append(names, name)
	}
	for _, name := range sortStrings(names) {
		fmt.Fprintf(&b, "pool %q {\n  listen = \"127.0.0.1:%d\"\n  protocol = \"redis\"\n  timeout = \"2s\"\n", name, pools[name])
		for _, be := range s.backends {
			fmt.Fprintf(&b, "  server %q {}\n", be.Addr)
		}
		b.WriteString("}\n")
	}
	if err := os.WriteFile(s.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func start(t *testing.T, workers int, extra string) *setup {
	t.Helper()
	s := &setup{conf: filepath.Join(t.TempDir(), "nuthatch.hcl")}
	s.backends = []*harness.Proc{harness.Redis(t), harness.Redis(t)}
	port := harness.FreePort(t)
	s.write(t, workers, map[string]int{"main": port}, extra)
	s.ports = []int{port}
	s.proxy = harness.Start(t, harness.Binary(t), "-c", s.conf)
	harness.WaitPort(t, "tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	waitWorkers(t, s.proxy.Cmd.Process.Pid, workers, 5*time.Second)
	return s
}

// load runs n go-redis clients doing SET/GET round trips and pipelines
// until stop is closed, counting failures.
type load struct {
	ok, failed atomic.Int64
	errs       sync.Map
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, addr string, n int) *load {
	l := &load{stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 2, DialTimeout: time.Second, ReadTimeout: 3 * time.Second})
		l.wg.Add(1)
		go func(i int) {
			defer l.wg.Done()
			defer c.Close()
			for j := 0; ; j++ {
				select {
				case <-l.stop:
					return
				default:
				}
				k := fmt.Sprintf("load:%d:%d", i, j%100)
				var err error
				if j%2 == 0 {
					pipe := c.Pipeline()
					pipe.Set(ctx, k, j, 0)
					g := pipe.Get(ctx, k)
					_, err = pipe.Exec(ctx)
					if err == nil && g.Val() != strconv.Itoa(j) {
						err = fmt.Errorf("got %q want %d", g.Val(), j)
					}
				} else {
					err = c.Set(ctx, k, j, 0).Err()
				}
				if err != nil {
					l.failed.Add(1)
					l.errs.Store(err.Error(), true)
				} else {
					l.ok.Add(1)
				}
			}
		}(i)
	}
	return l
}

func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.failed.Load() > 0 {
		var msgs []string
		l.errs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Errorf("%d of %d requests failed: %v", l.failed.Load(), l.failed.Load()+l.ok.Load(), msgs)
	}
	if l.ok.Load() == 0 {
		t.Error("the load made no request")
	}
	t.Logf("load: %d requests ok, %d failed", l.ok.Load(), l.failed.Load())
}

// pinnedWorkers starts 2 workers pinned to distinct CPUs and returns them
// by CPU. A worker pins itself once started, so the affinity is polled.
func pinnedWorkers(t *testing.T, extra string) (*setup, map[int]int) {
	t.Helper()
	s := start(t, 2, `worker_cpu_affinity = "auto"`+"\n"+extra)
	master := s.proxy.Cmd.Process.Pid
	byCPU := map[int]int{}
	for _, w := range waitWorkers(t, master, 2, time.Second) {
		var line string
		for deadline := time.Now().Add(2 * time.Second); ; {
			line = cpusAllowed(w)
			if cpu, err := strconv.Atoi(line); err == nil {
				byCPU[cpu] = w
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker %d not pinned to one CPU: Cpus_allowed_list: %s", w, line)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if len(byCPU) != 2 {
		t.Fatalf("workers not pinned to distinct CPUs: %v", byCPU)
	}
	return s, byCPU
}

// cpusAllowed is pid's Cpus_allowed_list ("0", "0-1").
func cpusAllowed(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// dialPinged opens n connections to addr from a thread pinned to cpu (-1:
// anywhere), each answered once, closes them at the end of the test and
// returns them.
func dialPinged(t *testing.T, cpu, n int, addr string) []net.Conn {
	t.Helper()
	done := make(chan error, 1)
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		if cpu >= 0 {
			runtime.LockOSThread()
			// No UnlockOSThread: the pinned thread exits with the goroutine
			// instead of going back to the pool (and into a later fork;
			// programs are started from a thread of their own, see
			// harness.Start).
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				done <- err
				return
			}
		}
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				done <- fmt.Errorf("connection %d of %d from CPU %d: %w", i+1, n, cpu, err)
				return
			}
			conns = append(conns, c)
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("PING\r\n")); err != nil {
				done <- fmt.Errorf("connection %d of %d from CPU %d: %w", i+1, n, cpu, err)
				return
			}
			buf := make([]byte, 7)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "+PONG\r\n" {
				done <- fmt.Errorf("connection %d of %d from CPU %d: PING answered %q, %v", i+1, n, cpu, buf, err)
				return
			}
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return conns
}

// servedBy returns, for each of conns, the pid among workers that holds
// its server side: the socket whose inode /proc/net/tcp gives for the
// connection's address pair.
func servedBy(t *testing.T, workers []int, conns []net.Conn) []int {
	t.Helper()
	owner := map[string]int{} // socket inode -> pid
	for _, w := range workers {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", w))
		for _, e := range ents {
			l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", w, e.Name()))
			if ino, ok := strings.CutPrefix(l, "socket:["); ok {
				owner[strings.TrimSuffix(ino, "]")] = w
			}
		}
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	// "sl local rem st ... inode": the server side's local address is the
	// client's remote one and the other way round.
	byPair := map[string]string{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 {
			byPair[f[1]+" "+f[2]] = f[9]
		}
	}
	hex := func(a net.Addr) string {
		ap := a.(*net.TCPAddr).AddrPort()
		ip := ap.Addr().As4()
		// /proc/net/tcp prints the address as a host-order uint32.
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	}
	out := make([]int, len(conns))
	for i, c := range conns {
		out[i] = owner[byPair[hex(c.RemoteAddr())+" "+hex(c.LocalAddr())]]
	}
	return out
}

// By default (reuseport_steering = "auto") a loopback connection goes to
// the worker of the CPU its client thread runs on: with worker i pinned to
// CPU i, the connections from CPU k all reach the worker on CPU k.
func TestWorkersAffinityAndSteering(t *testing.T) {
	s, byCPU := pinnedWorkers(t, "")
	addr := fmt.Sprintf("127.0.0.1:%d", s.ports[0])
	workers := []int{byCPU[0], byCPU[1]}
	for cpu, w := range byCPU {
		conns := dialPinged(t, cpu, 32, addr)
		got := servedBy(t, workers, conns)
		for i, o := range got {
			if o != w {
				t.Errorf("connection %d of 32 from CPU %d (port %d) served by %d, want %d, the worker on CPU %d (all: %v)",
					i+1, cpu, conns[i].LocalAddr().(*net.TCPAddr).Port, o, w, cpu, got)
				break
			}
		}
	}
}

// With reuseport_steering = "hash" the kernel spreads one thread's
// connections over the workers.
func TestWorkersSpreadByHash(t *testing.T) {
	s, byCPU := pinnedWorkers(t, `reuseport_steering = "hash"`)
	workers := []int{byCPU[0], byCPU[1]}
	conns := dialPinged(t, 0, 64, fmt.Sprintf("127.0.0.1:%d", s.ports[0]))
	took := map[int]int{}
	for _, w := range servedBy(t, workers, conns) {
		took[w]++
	}
	for _, w := range workers {
		if took[w] < 8 {
			t.Errorf("worker %d took only %d of 64 connections from CPU 0 (%v)", w, took[w], took)
		}
	}
}

func TestWorkerKillRespawnsUnderLoad(t *testing.T) {
	s := start(t, 2, "")
	master := s.proxy.Cmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", s.ports[0])
	l := startLoad(t, addr, 16)
	time.Sleep(300 * time.Millisecond)
	for round := 0; round < 3; round++ {
		workers := waitWorkers(t, master, 2, 2*time.Second)
		victim := workers[round%2]
		killed := time.Now()
		syscall.Kill(victim, syscall.SIGKILL)
		// New connections during the gap queue on the dead worker's socket
		// (the master keeps it open) and are served by its replacement.
		var wg sync.WaitGroup
		var refused atomic.Int64
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 3 * time.Second})
				defer c.Close()
				if err := c.Ping(ctx).Err(); err != nil {
					refused.Add(1)
				}
			}()
		}
		for {
			w := children(master)
			if len(w) == 2 && w[0] != victim && w[1] != victim {
				break
			}
			if time.Since(killed) > time.Second {
				t.Fatalf("no replacement within 1s (workers %v)", w)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("round %d: replacement after %v", round, time.Since(killed).Round(time.Millisecond))
		wg.Wait()
		if refused.Load() > 0 {
			t.Errorf("round %d: %d of 40 new connections failed", round, refused.Load())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Clients whose connection was on the killed worker may see one error
	// each; go-redis retries it. Everything else must succeed.
	l.finish(t)
}

func TestReloadUnderLoadLosesNothing(t *testing.T) {
	s := start(t, 2, "")
	master := s.proxy.Cmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", s.ports[0])
	l := startLoad(t, addr, 24)
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		before := children(master)
		s.proxy.Signal(syscall.SIGHUP)
		// The new generation replaces the old one entirely.
		deadline := time.Now().Add(10 * time.Second)
		for {
			now := children(master)
			fresh := 0
			for _, p := range now {
				if !containsInt(before, p) {
					fresh++
				}
			}
			if fresh == 2 && len(now) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reload %d: workers %v (before %v)", i, now, before)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.finish(t)
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestReloadChangesPoolsAndKeepsFdsExact(t *testing.T) {
	s := start(t, 1, "")
	master := s.proxy.Cmd.Process.Pid
	p1 := s.ports[0]
	p2, p3 := harness.FreePort(t), harness.FreePort(t)
	baseline := socketCount(master) // 1 listener + channel

	s.write(t, 1, map[string]int{"main": p1, "second": p2}, "")
	s.proxy.Signal(syscall.SIGHUP)
	harness.WaitPort(t, "tcp", fmt.Sprintf("127.0.0.1:%d", p2), 5*time.Second)
	for _, p := range []int{p1, p2} {
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", p)})
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		c.Close()
	}
	waitWorkers(t, master, 1, 10*time.Second)

	// Move "main" to p3 and drop "second".
	s.write(t, 1, map[string]int{"main": p3}, "")
	s.proxy.Signal(syscall.SIGHUP)
	harness.WaitPort(t, "tcp", fmt.Sprintf("127.0.0.1:%d", p3), 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, e1 := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p1), 200*time.Millisecond)
		_, e2 := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p2), 200*time.Millisecond)
		if e1 != nil && e2 != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("removed ports still accept connections")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitWorkers(t, master, 1, 10*time.Second)
	// The master closes an old worker's channel when it has reaped it,
	// a moment after the worker is gone from its children.
	got := socketCount(master)
	for end := time.Now().Add(5 * time.Second); got != baseline && time.Now().Before(end); got = socketCount(master) {
		time.Sleep(20 * time.Millisecond)
	}
	if got != baseline {
		t.Errorf("master holds %d sockets after reloads, want %d", got, baseline)
	}
}

func TestReloadWithBrokenConfigKeepsServing(t *testing.T) {
	s := start(t, 1, `pid_file = "`+filepath.Join(t.TempDir(), "n.pid")+`"`)
	master := s.proxy.Cmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", s.ports[0])
	workers := waitWorkers(t, master, 1, time.Second)
	// A HUP before the first generation is ready is ignored as a reload
	// in progress: wait for it.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(s.proxy.Output(), "workers ready"); {
		if time.Now().After(deadline) {
			t.Fatalf("workers never ready:\n%s", s.proxy.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	good, _ := os.ReadFile(s.conf)
	os.WriteFile(s.conf, append(good, []byte("pool \"x\" {\n  nonsense = true\n}\n")...), 0o644)

	// nuthatch -s reload checks the file first and refuses.
	out, code := runBinary(t, "-s", "reload", "-c", s.conf)
	if code == 0 || !strings.Contains(out, "nonsense") {
		t.Fatalf("-s reload with a broken file: exit %d, %q", code, out)
	}
	out, code = runBinary(t, "-t", "-c", s.conf)
	if code == 0 || !strings.Contains(out, "nuthatch.hcl:") {
		t.Fatalf("-t: exit %d, %q", code, out)
	}
	// A HUP anyway: the master logs and keeps the old workers.
	s.proxy.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	if now := children(master); len(now) != 1 || now[0] != workers[0] {
		t.Fatalf("workers changed after a failed reload: %v -> %v", workers, now)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if err := c.Set(ctx, "still", "serving", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.proxy.Output(), "reload failed") {
		t.Errorf("failed reload not logged:\n%s", s.proxy.Output())
	}
	// With the file fixed, -s reload finds the master through pid_file.
	os.WriteFile(s.conf, good, 0o644)
	if out, code := runBinary(t, "-s", "reload", "-c", s.conf); code != 0 {
		t.Fatalf("-s reload: %d %s", code, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if now := children(master); len(now) == 1 && now[0] != workers[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("-s reload did not reload")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runBinary(t *testing.T, args ...string) (string, int) {
	t.Helper()
	p := harness.Start(t, harness.Binary(t), args...)
	<-p.Done()
	return p.Output(), p.Cmd.ProcessState.ExitCode()
}

func TestGracefulStopDrainsInFlight(t *testing.T) {
	s := start(t, 1, "")
	addr := fmt.Sprintf("127.0.0.1:%d", s.ports[0])
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 5 * time.Second})
	defer c.Close()
	// A slow request in flight when QUIT arrives still gets its reply.
	res := make(chan error, 1)
	go func() {
		res <- c.Eval(ctx, "local t = redis.call('TIME') local s = t[1]*1000000+t[2] while true do local n = redis.call('TIME') if n[1]*1000000+n[2] - s > 300000 then break end end return 1", []string{"k"}).Err()
	}()
	time.Sleep(100 * time.Millisecond)
	s.proxy.Signal(syscall.SIGQUIT)
	if err := <-res; err != nil {
		t.Fatalf("in-flight request failed on graceful stop: %v", err)
	}
	select {
	case <-s.proxy.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("master did not exit after draining")
	}
	if _, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		t.Fatal("port still open after stop")
	}
}

func TestMasterKilledWorkersExit(t *testing.T) {
	s := start(t, 2, "")
	master := s.proxy.Cmd.Process.Pid
	workers := waitWorkers(t, master, 2, time.Second)
	killed := time.Now()
	syscall.Kill(master, syscall.SIGKILL)
	// A worker whose master died drains for at most masterGoneDrain (1 s)
	// and exits; the margin is for a loaded machine (measured: 1.0-1.1 s
	// on an idle one, over 2 s once in make test on a slow one).
	deadline := killed.Add(5 * time.Second)
	for _, w := range workers {
		for syscall.Kill(w, 0) == nil {
			if time.Now().After(deadline) {
				syscall.Kill(w, syscall.SIGKILL)
				t.Fatalf("worker %d still alive 5s after its master died", w)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("workers gone %v after the master's SIGKILL", time.Since(killed).Round(10*time.Millisecond))
}

func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func renameFile(from, to string) error { return os.Rename(from, to) }

// killTree stops every nuthatch process of the test's process group,
// including masters started by upgrades (re-parented to the test).
func killTree(t *testing.T, p *harness.Proc) {
	t.Helper()
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
