package process

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Spawner starts worker processes. The master uses it through this
// interface so that its state machine can be tested without forking.
type Spawner interface {
	Spawn(spec WorkerSpec) (WorkerProc, error)
}

// WorkerSpec is what a new worker process needs before its init message.
type WorkerSpec struct {
	Slot       int
	Generation uint64
	// Credential, when set, is the unprivileged user the worker runs as.
	Credential *syscall.Credential
}

// WorkerProc is a started worker as the master sees it.
type WorkerProc interface {
	Pid() int
	// Channel is the master's end of the control channel.
	Channel() *Channel
	// Wait blocks until the process exits and describes how it ended.
	Wait() ExitStatus
	Signal(sig syscall.Signal) error
}

// ExitStatus tells how a worker ended.
type ExitStatus struct {
	Code   int
	Signal syscall.Signal // 0 when it exited by itself
	Err    error
}

func (e ExitStatus) String() string {
	switch {
	case e.Err != nil:
		return e.Err.Error()
	case e.Signal != 0:
		return "killed by " + e.Signal.String()
	default:
		return fmt.Sprintf("exit status %d", e.Code)
	}
}

// ExecSpawner re-executes this program's binary in the worker role: Go
// cannot fork without exec.
type ExecSpawner struct {
	// Path of the binary; this process's own image when empty.
	Path string
	// Env is added to the worker's environment.
	Env []string
}

type execWorker struct {
	cmd *exec.Cmd
	ch  *Channel
}

// Spawn implements Spawner.
func (s *ExecSpawner) Spawn(spec WorkerSpec) (WorkerProc, error) {
	path := s.Path
	if path == "" {
		// Workers run the very binary the master runs, even after a
		// package upgrade replaced the file: /proc/self/exe still names
		// the old inode. (The upgrade itself execs the new file by path.)
		path = "/proc/self/exe"
	}
	mine, theirs, err := NewChannelPair()
	if err != nil {
		return nil, err
	}
	// Only our copy of the child's end: Channel.Close would shut the
	// socket down for the child too.
	defer theirs.File().Close()
	cmd := exec.Command(path)
	cmd.Args = []string{"nuthatch: worker process"}
	cmd.Env = append(append(os.Environ(), s.Env...), EnvRole+"="+RoleWorker)
	cmd.Env = withoutSystemdFds(cmd.Env)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{theirs.File()} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: spec.Credential}
	if err := cmd.Start(); err != nil {
		mine.Close()
		return nil, fmt.Errorf("process: start worker: %w", err)
	}
	return &execWorker{cmd: cmd, ch: mine}, nil
}

// withoutSystemdFds keeps systemd's activation and notify variables away
// from workers: only the master talks to systemd.
func withoutSystemdFds(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "LISTEN_PID="), strings.HasPrefix(kv, "LISTEN_FDS="), strings.HasPrefix(kv, "LISTEN_FDNAMES="),
			strings.HasPrefix(kv, "NOTIFY_SOCKET="), strings.HasPrefix(kv, "WATCHDOG_PID="), strings.HasPrefix(kv, "WATCHDOG_USEC="):
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (w *execWorker) Pid() int                        { return w.cmd.Process.Pid }
func (w *execWorker) Channel() *Channel               { return w.ch }
func (w *execWorker) Signal(sig syscall.Signal) error { return w.cmd.Process.Signal(sig) }

func (w *execWorker) Wait() ExitStatus {
	err := w.cmd.Wait()
	st := ExitStatus{}
	if ps := w.cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				st.Signal = ws.Signal()
			} else {
				st.Code = ws.ExitStatus()
			}
			return st
		}
	}
	st.Err = err
	return st
}
