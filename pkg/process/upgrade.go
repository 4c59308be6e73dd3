package process

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Binary upgrade (USR2): the running master starts the binary now at its
// path, hands it the listening sockets, waits until the new master's
// workers serve, tells the service manager the new main PID, and drains.
// If the new binary fails or is not ready in time, the old master kills it
// and goes on serving: the upgrade rolls back.

// Environment of a master started by an upgrade.
const (
	envUpgrade      = "NUTHATCH_UPGRADE"         // "1"
	envUpgradeNames = "NUTHATCH_UPGRADE_NAMES"   // socket names, ':'-separated, fds 4…
	envUpgradeSd    = "NUTHATCH_UPGRADE_SYSTEMD" // "1"/"0" per socket
	upgradeFd       = 3                          // channel to the old master
	upgradeFirstFd  = 4
)

// Upgrade message types, old master <-> new master.
const (
	MsgHandover = "handover" // old -> new: you are the main process now
)

// upgradeTimeout bounds how long a new binary may take to serve.
var upgradeTimeout = 30 * time.Second

// Upgrading returns the channel to the old master and the sockets it
// passed, when this process was started by a binary upgrade.
func Upgrading() (*Channel, []Inherited) {
	if os.Getenv(envUpgrade) != "1" {
		return nil, nil
	}
	names := strings.Split(os.Getenv(envUpgradeNames), ":")
	sd := strings.Split(os.Getenv(envUpgradeSd), ":")
	for _, k := range []string{envUpgrade, envUpgradeNames, envUpgradeSd} {
		os.Unsetenv(k)
	}
	var socks []Inherited
	for i, name := range names {
		if name == "" {
			continue
		}
		f := os.NewFile(uintptr(upgradeFirstFd+i), name)
		syscall.CloseOnExec(upgradeFirstFd + i)
		socks = append(socks, Inherited{File: f, Name: name, FromSystemd: i < len(sd) && sd[i] == "1"})
	}
	syscall.CloseOnExec(upgradeFd)
	return ChannelFromFile(os.NewFile(upgradeFd, "old-master")), socks
}

type upgradeState struct {
	cmd      *exec.Cmd
	ch       *Channel
	deadline time.Time
	ready    bool
	adopts   bool // the new master takes handed-over clients
}

// Upgrade events delivered to the master loop.
const (
	evUpgradeReady eventKind = iota + 100
	evUpgradeExit
	evParentMsg
	evParentGone
)

// upgradeRefused says why a binary upgrade cannot start now ("" when it
// can).
func (m *Master) upgradeRefused() string {
	switch {
	case m.stop != nil:
		return "stopping"
	case m.upgrade != nil:
		return "a binary upgrade is already in progress"
	case m.parent != nil:
		return "this master is itself still taking over from an upgrade"
	case m.cur == nil || m.next != nil:
		return "a reload is in progress; try again"
	}
	return ""
}

// startUpgrade launches the new binary.
func (m *Master) startUpgrade() {
	if m.upgradeRefused() != "" {
		return
	}
	exe := m.Binary
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			m.entry.WithError(err).Error("upgrade: cannot find the binary")
			return
		}
	}
	mine, theirs, err := NewChannelPair()
	if err != nil {
		m.entry.WithError(err).Error("upgrade failed")
		return
	}
	socks := m.sockets.handOver(m.cur.cfg)
	files := []*os.File{theirs.File()}
	var names, sd []string
	for _, s := range socks {
		files = append(files, s.File)
		names = append(names, s.Name)
		sd = append(sd, map[bool]string{true: "1", false: "0"}[s.FromSystemd])
	}
	cmd := exec.Command(exe, m.Args...)
	cmd.Env = withoutSystemdFds(os.Environ())
	cmd.Env = append(cmd.Env, envUpgrade+"=1", envUpgradeNames+"="+strings.Join(names, ":"),
		envUpgradeSd+"="+strings.Join(sd, ":"))
	if m.NotifySocket != "" {
		cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+m.NotifySocket)
	}
	if m.WatchdogInterval > 0 {
		// Without WATCHDOG_PID: the new master will be main under another PID.
		cmd.Env = append(cmd.Env, "WATCHDOG_USEC="+strconv.FormatInt(int64(2*m.WatchdogInterval/time.Microsecond), 10))
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = files
	m.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=upgrading to %s", monotonicUsec(), exe))
	err = cmd.Start()
	theirs.File().Close()
	if err != nil {
		mine.Close()
		m.entry.WithError(err).Error("upgrade failed: cannot start the new binary")
		m.notify("READY=1\n" + m.status() + "; upgrade failed")
		return
	}
	u := &upgradeState{cmd: cmd, ch: mine, deadline: time.Now().Add(upgradeTimeout)}
	m.upgrade = u
	m.entry.WithFields(logrus.Fields{"pid": cmd.Process.Pid, "binary": exe}).Info("binary upgrade: new master started")
	go func() {
		for {
			msg, fs, err := mine.Recv()
			closeAll(fs)
			if err == nil {
				closeFDs(msg.FDs) // nothing comes back this way
			}
			if err != nil {
				return
			}
			if msg.Type == MsgReady {
				m.events <- event{kind: evUpgradeReady, msg: msg}
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		mine.Close()
		m.events <- event{kind: evUpgradeExit, exit: ExitStatus{Err: err}}
	}()
}

// upgradeReady hands the service over to the new master.
func (m *Master) upgradeReady() {
	u := m.upgrade
	if u == nil || u.ready {
		return
	}
	u.ready = true
	pid := u.cmd.Process.Pid
	m.notify(fmt.Sprintf("MAINPID=%d\nSTATUS=handing over to the new master %d", pid, pid))
	if m.Barrier != nil {
		if err := m.Barrier(5 * time.Second); err != nil {
			m.entry.WithError(err).Warn("upgrade: service manager barrier")
		}
	}
	if err := u.ch.Send(&Message{Type: MsgHandover}); err != nil {
		m.entry.WithError(err).Warn("upgrade: cannot tell the new master")
	}
	m.entry.WithField("pid", pid).Info("binary upgrade: new master serving, draining the old workers")
	// From now on the new master speaks to the service manager and owns
	// the pid file; this one drains quietly and exits.
	m.handedOver = true
	m.Notify = nil
	m.shutdown(false)
}

// upgradeFailed rolls back: the old master stays main and keeps serving.
func (m *Master) upgradeFailed(reason string) {
	u := m.upgrade
	if u == nil {
		return
	}
	m.upgrade = nil
	if u.ready {
		// Already handed over; the new master's fate is its own.
		return
	}
	u.cmd.Process.Signal(syscall.SIGKILL)
	m.entry.WithField("reason", reason).Error("binary upgrade failed, rolled back: the old master keeps serving")
	m.notify("READY=1\n" + m.status() + "; upgrade failed: " + reason)
}

// watchParent forwards the old master's messages to the loop of a master
// started by an upgrade.
func (m *Master) watchParent(ch *Channel) {
	for {
		msg, fs, err := ch.Recv()
		closeAll(fs) // a MsgClients' descriptors are in msg.FDs, for the loop
		if err != nil {
			m.events <- event{kind: evParentGone}
			return
		}
		m.events <- event{kind: evParentMsg, msg: msg}
	}
}

// takeOver makes a master started by an upgrade the main process.
func (m *Master) takeOver() {
	if m.parent == nil {
		return
	}
	// Keep listening: the old master sends its counters once its workers
	// are gone, so that totals survive the upgrade.
	m.oldMaster, m.parent = m.parent, nil
	m.entry.Info("binary upgrade complete: this master is now the main process")
	m.becameMain()
}
