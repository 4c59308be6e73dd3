package process

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/listener"
)

// fakeWorker is a worker process simulated in-process: it speaks the real
// channel protocol, so the master under test cannot tell the difference.
type fakeWorker struct {
	pid   int
	spec  WorkerSpec
	ch    *Channel // master's end
	peer  *Channel // worker's end
	exit  chan ExitStatus
	once  sync.Once
	sp    *fakeSpawner
	init  *Message
	files []*os.File // the listeners
	// counters is the client counters' segment attached after them.
	counters *os.File
	got      chan string    // message types received (but stats requests)
	polls    chan time.Time // when each stats request arrived
	// holdDrain keeps a draining worker alive until release is closed, as
	// a real one that still has clients stays.
	holdDrain atomic.Bool
	release   chan struct{}
}

func (w *fakeWorker) Pid() int          { return w.pid }
func (w *fakeWorker) Channel() *Channel { return w.ch }
func (w *fakeWorker) Wait() ExitStatus  { return <-w.exit }
func (w *fakeWorker) die(st ExitStatus) { w.once.Do(func() { w.peer.Close(); w.exit <- st }) }
func (w *fakeWorker) Signal(sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		go w.die(ExitStatus{Signal: sig})
	}
	return nil
}

// run plays the worker side: ready after init, heartbeats, exit on drain
// or stop unless the spawner says to hang.
func (w *fakeWorker) run(readyAfterInit bool) {
	for {
		m, files, err := w.peer.Recv()
		if err != nil {
			return
		}
		switch m.Type {
		case MsgInit:
			if m.Counters != nil && len(files) == len(m.Listeners)+1 {
				w.counters = files[len(files)-1]
				files = files[:len(files)-1]
			}
			w.init, w.files = m, files
			w.got <- m.Type // after the fields, which the test then reads
			if readyAfterInit {
				w.peer.Send(&Message{Type: MsgReady})
			}
		case MsgHeartbeat:
			w.got <- m.Type
			w.peer.Send(&Message{Type: MsgHeartbeat, Seq: m.Seq})
		case MsgStats:
			select {
			case w.polls <- time.Now():
			default:
			}
			w.peer.Send(&Message{Type: MsgStats, Seq: m.Seq, Stats: []byte(`{"pools":[]}`)})
		case MsgDrain, MsgStop:
			w.got <- m.Type
			go func() {
				if m.Type == MsgDrain && w.holdDrain.Load() {
					<-w.release
				}
				w.die(ExitStatus{})
			}()
			return
		default:
			w.got <- m.Type
		}
	}
}

type fakeSpawner struct {
	mu      sync.Mutex
	nextPid int
	workers []*fakeWorker
	spawned chan *fakeWorker
	// notReady makes new workers never report ready (generation id -> true).
	notReady map[uint64]bool
}

func newFakeSpawner() *fakeSpawner {
	return &fakeSpawner{nextPid: 1000, spawned: make(chan *fakeWorker, 100), notReady: map[uint64]bool{}}
}

func (s *fakeSpawner) Spawn(spec WorkerSpec) (WorkerProc, error) {
	mine, theirs, err := NewChannelPair()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.nextPid++
	w := &fakeWorker{pid: s.nextPid, spec: spec, ch: mine, peer: theirs, exit: make(chan ExitStatus, 1), sp: s, got: make(chan string, 100),
		polls: make(chan time.Time, 1000), release: make(chan struct{})}
	s.workers = append(s.workers, w)
	ready := !s.notReady[spec.Generation]
	s.mu.Unlock()
	go w.run(ready)
	s.spawned <- w
	return w, nil
}

func (s *fakeSpawner) wait(t *testing.T) *fakeWorker {
	t.Helper()
	select {
	case w := <-s.spawned:
		return w
	case <-time.After(5 * time.Second):
		t.Fatal("no worker spawned")
		return nil
	}
}

func (s *fakeSpawner) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case w := <-s.spawned:
		t.Fatalf("unexpected spawn of slot %d gen %d", w.spec.Slot, w.spec.Generation)
	case <-time.After(d):
	}
}

func expectMsg(t *testing.T, w *fakeWorker, typ string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case got := <-w.got:
			if got == typ {
				return
			}
		case <-deadline:
			t.Fatalf("worker %d never got %q", w.pid, typ)
		}
	}
}

// fakeSockets opens socketpair ends instead of binding ports.
func fakeSockets(addr config.Address, o listener.Options) (*os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	unix.Close(fds[1])
	return os.NewFile(uintptr(fds[0]), addr.String()), nil
}

type masterRun struct {
	m     *Master
	sp    *fakeSpawner
	sigs  chan os.Signal
	done  chan error
	notes chan string
	path  string
}

func writeConfig(t *testing.T, path string, workers int, pools ...string) {
	t.Helper()
	writeConfigStats(t, path, workers, "30s", pools...)
}

// writeConfigStats is writeConfig with a stats.interval.
func writeConfigStats(t *testing.T, path string, workers int, interval string, pools ...string) {
	t.Helper()
	src := fmt.Sprintf("worker_processes = %d\nworker_shutdown_timeout = \"1s\"\nuser = \"root\"\ngroup = \"root\"\nstats {\n  listen = \"\"\n  interval = %q\n}\n", workers, interval)
	for i, p := range pools {
		src += fmt.Sprintf("pool %q {\n  listen = \"127.0.0.1:%d\"\n  protocol = \"redis\"\n  server \"127.0.0.1:6379\" {}\n}\n", p, 30000+i)
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func startMaster(t *testing.T, workers int, pools ...string) *masterRun {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nuthatch.hcl")
	writeConfig(t, path, workers, pools...)
	return runMaster(t, path, io.Discard)
}

// runMaster runs a master on the configuration in path, logging to out.
func runMaster(t *testing.T, path string, out io.Writer) *masterRun {
	t.Helper()
	return runMasterWith(t, path, out, nil)
}

// runMasterWith is runMaster with setup applied to the run before the
// master starts.
func runMasterWith(t *testing.T, path string, out io.Writer, setup func(*masterRun)) *masterRun {
	t.Helper()
	src, _ := os.ReadFile(path)
	cfg, err := config.Parse(src, path)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(out)
	log.SetFormatter(&logrus.JSONFormatter{})
	r := &masterRun{sp: newFakeSpawner(), sigs: make(chan os.Signal, 4), done: make(chan error, 1), notes: make(chan string, 100), path: path}
	r.m = &Master{Log: log, Spawner: r.sp, ConfigPath: path, Signals: r.sigs, openSocket: fakeSockets,
		Notify: func(s string) { r.notes <- s }}
	if setup != nil {
		setup(r)
	}
	go func() { r.done <- r.m.Run(cfg, src) }()
	t.Cleanup(func() {
		r.sigs <- syscall.SIGINT
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("master did not stop")
		}
	})
	return r
}

func (r *masterRun) expectNote(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case n := <-r.notes:
			if len(n) >= len(prefix) && n[:len(prefix)] == prefix {
				return n
			}
		case <-deadline:
			t.Fatalf("no %q notification", prefix)
			return ""
		}
	}
}

func inode(t *testing.T, f *os.File) uint64 {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestMasterStartsWorkersWithTheirSockets(t *testing.T) {
	r := startMaster(t, 2, "a", "b")
	w0, w1 := r.sp.wait(t), r.sp.wait(t)
	r.expectNote(t, "READY=1")
	for _, w := range []*fakeWorker{w0, w1} {
		expectMsg(t, w, MsgInit)
		if len(w.init.Listeners) != 2 || len(w.files) != 2 {
			t.Fatalf("worker %d: %d listeners, %d files", w.spec.Slot, len(w.init.Listeners), len(w.files))
		}
		if w.init.Listeners[0].Pool != "a" || w.init.Listeners[1].Pool != "b" {
			t.Fatalf("listener specs %+v", w.init.Listeners)
		}
	}
	// Each slot has its own SO_REUSEPORT socket per pool.
	if inode(t, w0.files[0]) == inode(t, w1.files[0]) {
		t.Fatal("two workers share one socket for a TCP pool")
	}
}

func TestMasterRespawnsWithSameSockets(t *testing.T) {
	r := startMaster(t, 1, "a")
	w := r.sp.wait(t)
	expectMsg(t, w, MsgInit)
	r.expectNote(t, "READY=1")
	ino := inode(t, w.files[0])
	w.die(ExitStatus{Signal: syscall.SIGKILL})
	start := time.Now()
	nw := r.sp.wait(t)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("respawn took %v", d)
	}
	expectMsg(t, nw, MsgInit)
	if nw.spec.Slot != 0 || inode(t, nw.files[0]) != ino {
		t.Fatal("replacement did not get the dead worker's socket")
	}
}

func TestMasterBacksOffWorkersThatKeepDying(t *testing.T) {
	r := startMaster(t, 1, "a")
	w := r.sp.wait(t)
	r.expectNote(t, "READY=1")
	spawns := 0
	deadline := time.Now().Add(800 * time.Millisecond)
	for time.Now().Before(deadline) {
		w.die(ExitStatus{Code: 1})
		select {
		case w = <-r.sp.spawned:
			spawns++
		case <-time.After(time.Until(deadline)):
		}
	}
	// Immediate, then 100ms, 200ms, 400ms: a handful, never a busy loop.
	if spawns < 2 || spawns > 5 {
		t.Fatalf("%d respawns in 800ms", spawns)
	}
}

func TestMasterReloadKeepsServingOnBadConfig(t *testing.T) {
	r := startMaster(t, 1, "a")
	w := r.sp.wait(t)
	r.expectNote(t, "READY=1")
	os.WriteFile(r.path, []byte("pool \"a\" {\n  bogus = 1\n}\n"), 0o644)
	r.sigs <- syscall.SIGHUP
	r.expectNote(t, "RELOADING=1")
	if n := r.expectNote(t, "READY=1"); !strings.Contains(n, "reload failed") {
		t.Fatalf("status %q", n)
	}
	r.sp.none(t, 300*time.Millisecond)
	select {
	case typ := <-w.got:
		if typ == MsgDrain || typ == MsgStop {
			t.Fatal("old worker told to stop after a failed reload")
		}
	default:
	}
}

func TestMasterReloadSwapsGenerations(t *testing.T) {
	r := startMaster(t, 1, "a")
	old := r.sp.wait(t)
	r.expectNote(t, "READY=1")
	expectMsg(t, old, MsgInit)
	oldIno := inode(t, old.files[0])
	writeConfig(t, r.path, 2, "a", "b")
	r.sigs <- syscall.SIGHUP
	n1, n2 := r.sp.wait(t), r.sp.wait(t)
	if n1.spec.Generation != 2 || n2.spec.Generation != 2 {
		t.Fatal("new generation not started")
	}
	expectMsg(t, old, MsgDrain)
	r.expectNote(t, "READY=1")
	expectMsg(t, n1, MsgInit)
	expectMsg(t, n2, MsgInit)
	if len(n1.files) != 2 {
		t.Fatalf("new worker got %d listeners", len(n1.files))
	}
	// The unchanged address keeps its socket: no re-bind on reload.
	var slot0 *fakeWorker
	for _, w := range []*fakeWorker{n1, n2} {
		if w.spec.Slot == 0 {
			slot0 = w
		}
	}
	if inode(t, slot0.files[0]) != oldIno {
		t.Fatal("reload re-opened an unchanged listener")
	}
}

func TestMasterAbandonsReloadWhoseWorkersDie(t *testing.T) {
	r := startMaster(t, 1, "a")
	old := r.sp.wait(t)
	r.expectNote(t, "READY=1")
	r.sp.mu.Lock()
	r.sp.notReady[2] = true
	r.sp.mu.Unlock()
	r.sigs <- syscall.SIGHUP
	nw := r.sp.wait(t)
	expectMsg(t, nw, MsgInit)
	nw.die(ExitStatus{Code: 1})
	r.expectNote(t, "READY=1")
	select {
	case typ := <-old.got:
		if typ == MsgDrain {
			t.Fatal("old generation drained although the reload failed")
		}
	case <-time.After(200 * time.Millisecond):
	}
}

func TestMasterGracefulStop(t *testing.T) {
	r := startMaster(t, 2, "a")
	w0, w1 := r.sp.wait(t), r.sp.wait(t)
	r.expectNote(t, "READY=1")
	r.sigs <- syscall.SIGQUIT
	expectMsg(t, w0, MsgDrain)
	expectMsg(t, w1, MsgDrain)
	r.expectNote(t, "STOPPING=1")
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatal(err)
		}
		r.done <- nil // for cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("master did not exit after its workers")
	}
}

func TestMasterKillsWorkersThatDoNotDrain(t *testing.T) {
	old := killGrace
	killGrace = 100 * time.Millisecond
	defer func() { killGrace = old }()
	r := startMaster(t, 1, "a")
	w := r.sp.wait(t)
	r.expectNote(t, "READY=1")
	// This worker ignores drain: replace its loop by one that never exits.
	w.peer.Close()
	r.sigs <- syscall.SIGTERM
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatal(err)
		}
		r.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("stuck worker was not killed")
	}
}
