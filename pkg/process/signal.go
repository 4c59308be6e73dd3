package process

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotRunning means the pid file names no running process.
var ErrNotRunning = errors.New("process: nuthatch is not running")

// Signals maps the -s actions to the master's signals (nginx's names).
var Signals = map[string]syscall.Signal{
	"reload":  syscall.SIGHUP,
	"reopen":  syscall.SIGUSR1,
	"quit":    syscall.SIGQUIT,
	"stop":    syscall.SIGTERM,
	"upgrade": syscall.SIGUSR2,
}

// SendSignal sends the named action to the process in pidFile.
func SendSignal(pidFile, action string) error {
	sig, ok := Signals[action]
	if !ok {
		return fmt.Errorf("process: unknown signal %q (want reload, reopen, quit, stop or upgrade)", action)
	}
	if pidFile == "" {
		return fmt.Errorf("process: no pid_file in the configuration, cannot find the master")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%w: %s does not exist", ErrNotRunning, pidFile)
		}
		return fmt.Errorf("process: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("process: %s: invalid pid %q", pidFile, strings.TrimSpace(string(b)))
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("%w: no process %d (stale %s)", ErrNotRunning, pid, pidFile)
		}
		return fmt.Errorf("process: kill %d: %w", pid, err)
	}
	return nil
}

// ReloadAndWait sends a reload to the master in pidFile and waits until it
// has recorded the outcome, so that a service manager's reload job ends
// when the new workers serve (or the reload failed).
func ReloadAndWait(pidFile string, timeout time.Duration) error {
	statusFile := pidFile + ".reload"
	before, _ := os.ReadFile(statusFile)
	if err := SendSignal(pidFile, "reload"); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		now, err := os.ReadFile(statusFile)
		if err != nil || string(now) == string(before) {
			continue
		}
		line := strings.TrimSpace(string(now))
		if _, rest, ok := strings.Cut(line, " "); ok {
			if _, outcome, ok := strings.Cut(rest, " "); ok {
				if outcome == "ok" {
					return nil
				}
				return fmt.Errorf("process: reload %s", outcome)
			}
		}
		return fmt.Errorf("process: unreadable reload status %q", line)
	}
	return fmt.Errorf("process: no reload outcome within %v", timeout)
}
