// Package systemd is nuthatch's thin glue to the service manager: the
// sockets it passes (socket activation), the notify socket (READY=1,
// RELOADING=1, STOPPING=1, STATUS=, MAINPID=, WATCHDOG=1) and the watchdog
// interval. It knows nothing of masters and workers.
package systemd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Socket is a listening socket passed by systemd, with the name of its
// FileDescriptorName= (the unit name when unset).
type Socket struct {
	File *os.File
	Name string
}

// Sockets returns the sockets systemd passed to this process (none when
// LISTEN_PID names another process) and unsets the activation variables so
// that children never mistake them for theirs.
func Sockets() []Socket {
	files := activation.Files(true)
	out := make([]Socket, 0, len(files))
	for _, f := range files {
		out = append(out, Socket{File: f, Name: f.Name()})
	}
	return out
}

// Notifier sends state changes to the service manager. The zero value (no
// NOTIFY_SOCKET) silently does nothing, so callers need no special case.
type Notifier struct {
	path string // "@name" for an abstract socket
}

// NewNotifier reads NOTIFY_SOCKET and removes it from the environment, so
// that only this process talks to systemd; children get what they need
// explicitly.
func NewNotifier() *Notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return NotifierFor(path)
}

// NotifierFor sends to the socket at path ("" = nowhere).
func NotifierFor(path string) *Notifier {
	return &Notifier{path: path}
}

// Enabled reports whether there is a service manager to notify.
func (n *Notifier) Enabled() bool { return n != nil && n.path != "" }

// Socket is the NOTIFY_SOCKET value to hand to a process that may become
// the main process (a binary upgrade).
func (n *Notifier) Socket() string {
	if n == nil {
		return ""
	}
	return n.path
}

// Notify sends one state string, e.g. "READY=1\nSTATUS=serving".
func (n *Notifier) Notify(state string) error {
	return n.send(state, nil)
}

func (n *Notifier) send(state string, oob []byte) error {
	if !n.Enabled() {
		return nil
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("systemd: notify: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendmsg(fd, []byte(state), oob, &unix.SockaddrUnix{Name: n.path}, 0); err != nil {
		return fmt.Errorf("systemd: notify: %w", err)
	}
	return nil
}

// Barrier waits until the service manager has processed every message sent
// before it (BARRIER=1 with one pipe end; systemd closes it when done), so
// that a MAINPID= hand-over is settled before the old main process exits.
func (n *Notifier) Barrier(timeout time.Duration) error {
	if !n.Enabled() {
		return nil
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("systemd: barrier: %w", err)
	}
	defer unix.Close(p[0])
	err := n.send("BARRIER=1", unix.UnixRights(p[1]))
	unix.Close(p[1])
	if err != nil {
		return err
	}
	fds := []unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLHUP}}
	for {
		k, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("systemd: barrier: %w", err)
		}
		if k == 0 {
			return errors.New("systemd: barrier: timed out")
		}
		return nil
	}
}

// WatchdogInterval returns how often to send WATCHDOG=1 (half of
// WATCHDOG_USEC), or 0 when the watchdog is off. WATCHDOG_PID, when set,
// must name this process; a master started by an upgrade gets the interval
// without it.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// MonotonicUsec is CLOCK_MONOTONIC in microseconds, for MONOTONIC_USEC=.
func MonotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}
