// Package systemd runs nuthatch under real systemd 252 (PID 1 of a Debian
// bookworm container booted with systemd-nspawn): socket activation,
// reload and binary upgrade under load, rollback, watchdog, stop, and the
// journal.
package systemd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/test/nspawn"
)

const config = `worker_processes = 2
pid_file = "/run/nuthatch/nuthatch.pid"
worker_shutdown_timeout = "5s"

log {
  level = "debug"
}

stats {
  listen = "127.0.0.1:22222"
}

pool "redis" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  timeout  = "2s"
  server "127.0.0.1:6379" {}
}

pool "memcache" {
  listen   = "127.0.0.1:22122"
  protocol = "memcache"
  timeout  = "2s"
  server "127.0.0.1:11211" {}
}
`

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func goBuild(t *testing.T, out string, ldflags string, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

type env struct {
	c       *nspawn.Container
	bins    string
	loadgen string
}

func setup(t *testing.T) *env {
	c := nspawn.Boot(t, nspawn.Options{})
	e := &env{c: c, bins: t.TempDir()}
	goBuild(t, filepath.Join(e.bins, "nuthatch-a"), "-X main.version=systemd-a", "./cmd/nuthatch")
	goBuild(t, filepath.Join(e.bins, "nuthatch-b"), "-X main.version=systemd-b", "./cmd/nuthatch")
	e.loadgen = filepath.Join(e.bins, "loadgen")
	goBuild(t, e.loadgen, "", "./test/loadgen")
	os.WriteFile(filepath.Join(e.bins, "nuthatch.hcl"), []byte(config), 0o644)
	os.WriteFile(filepath.Join(e.bins, "broken"), []byte("#!/bin/sh\necho broken build >&2\nexit 1\n"), 0o755)
	// A shorter watchdog so that the test does not wait 10 s for it.
	os.WriteFile(filepath.Join(e.bins, "watchdog.conf"), []byte("[Service]\nWatchdogSec=3\n"), 0o644)
	for host, inside := range map[string]string{
		filepath.Join(e.bins, "nuthatch-a"):                   "/usr/bin/nuthatch",
		filepath.Join(e.bins, "nuthatch-b"):                   "/root/nuthatch-b",
		filepath.Join(e.bins, "broken"):                       "/root/broken",
		filepath.Join(e.bins, "nuthatch.hcl"):                 "/etc/nuthatch/nuthatch.hcl",
		filepath.Join(e.bins, "watchdog.conf"):                "/etc/systemd/system/nuthatch.service.d/watchdog.conf",
		filepath.Join(repoRoot(), "systemd/nuthatch.service"): "/etc/systemd/system/nuthatch.service",
		filepath.Join(repoRoot(), "systemd/nuthatch.socket"):  "/etc/systemd/system/nuthatch.socket",
	} {
		if err := c.CopyIn(host, inside); err != nil {
			t.Fatal(err)
		}
	}
	c.MustExec("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "nuthatch")
	c.MustExec("chmod", "0644", "/etc/nuthatch/nuthatch.hcl")
	c.MustExec("systemctl", "daemon-reload")
	for _, svc := range []string{"redis-server", "memcached"} {
		if out, code := c.Exec("systemctl", "is-active", svc); code != 0 {
			t.Fatalf("%s not running in the container: %s", svc, out)
		}
	}
	return e
}

func (e *env) show(t *testing.T, prop string) string {
	out, _ := e.c.Exec("systemctl", "show", "-p", prop, "--value", "nuthatch.service")
	return strings.TrimSpace(out)
}

func (e *env) mainPID(t *testing.T) int {
	pid, _ := strconv.Atoi(e.show(t, "MainPID"))
	return pid
}

// load runs the load generator in the container's network while fn runs,
// and fails the test if any request failed.
func (e *env) load(t *testing.T, what string, fn func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := e.c.NetCommand(ctx, e.loadgen, "-addr", "127.0.0.1:22121", "-clients", "16", "-duration", "2m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	fn()
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	t.Logf("%s: %s", what, strings.TrimSpace(out.String()))
	if err != nil {
		t.Errorf("%s: requests failed under load: %s", what, out.String())
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUnderSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a container")
	}
	e := setup(t)
	c := e.c

	// Socket activation: the first connection starts the service.
	c.MustExec("systemctl", "start", "nuthatch.socket")
	if st := e.show(t, "ActiveState"); st != "inactive" {
		t.Fatalf("service %s before the first connection", st)
	}
	if out := c.MustExec("redis-cli", "-p", "22121", "ping"); strings.TrimSpace(out) != "PONG" {
		t.Fatalf("ping through the socket: %q", out)
	}
	waitFor(t, "service active", 10*time.Second, func() bool { return e.show(t, "ActiveState") == "active" })
	mc, _ := c.Exec("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/22122; printf 'version\\r\\n' >&3; timeout 2 head -1 <&3")
	if !strings.HasPrefix(mc, "VERSION ") {
		t.Errorf("memcached version through nuthatch: %q", mc)
	}
	if st := e.show(t, "StatusText"); !strings.Contains(st, "2 workers") {
		t.Errorf("STATUS= %q", st)
	}
	first := e.mainPID(t)

	// systemctl reload under load: zero failed requests; it returns once
	// the new workers serve.
	e.load(t, "reload", func() {
		c.MustExec("systemctl", "reload", "nuthatch")
		c.MustExec("systemctl", "reload", "nuthatch")
	})
	if e.mainPID(t) != first || e.show(t, "ActiveState") != "active" {
		t.Fatal("reload changed the main process or the state")
	}
	// A broken configuration: reload fails, the old one keeps serving.
	c.MustExec("sh", "-c", "cp /etc/nuthatch/nuthatch.hcl /root/good.hcl && echo 'bogus = 1' >> /etc/nuthatch/nuthatch.hcl")
	if out, code := c.Exec("systemctl", "reload", "nuthatch"); code == 0 {
		t.Errorf("reload with a broken file succeeded: %s", out)
	}
	c.MustExec("cp", "/root/good.hcl", "/etc/nuthatch/nuthatch.hcl")
	if out := c.MustExec("redis-cli", "-p", "22121", "ping"); strings.TrimSpace(out) != "PONG" {
		t.Fatal("not serving after a failed reload")
	}

	// A broken new binary: the upgrade rolls back.
	c.MustExec("sh", "-c", "cp /usr/bin/nuthatch /root/nuthatch-a && cp /root/broken /usr/bin/nuthatch.new && mv /usr/bin/nuthatch.new /usr/bin/nuthatch")
	c.MustExec("systemctl", "kill", "--kill-whom=main", "-s", "SIGUSR2", "nuthatch.service")
	waitFor(t, "rollback status", 40*time.Second, func() bool { return strings.Contains(e.show(t, "StatusText"), "upgrade failed") })
	if e.mainPID(t) != first || e.show(t, "ActiveState") != "active" {
		t.Fatal("failed upgrade changed the main process or the state")
	}

	// The real upgrade, as a package would do it, under load.
	e.load(t, "upgrade", func() {
		c.MustExec("sh", "-c", "cp /root/nuthatch-b /usr/bin/nuthatch.new && mv /usr/bin/nuthatch.new /usr/bin/nuthatch")
		c.MustExec("systemctl", "kill", "--kill-whom=main", "-s", "SIGUSR2", "nuthatch.service")
		waitFor(t, "new main PID", 30*time.Second, func() bool { p := e.mainPID(t); return p != 0 && p != first })
		waitFor(t, "old master gone", 30*time.Second, func() bool {
			_, code := c.Exec("kill", "-0", strconv.Itoa(first))
			return code != 0
		})
	})
	second := e.mainPID(t)
	if st := e.show(t, "ActiveState"); st != "active" {
		t.Fatalf("unit %s after the upgrade", st)
	}
	if v := c.MustExec(fmt.Sprintf("/proc/%d/exe", second), "-V"); !strings.Contains(v, "systemd-b") {
		t.Errorf("running version %q, want systemd-b", v)
	}
	if out, _ := c.Exec("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/22222; timeout 2 cat <&3"); !strings.Contains(out, `"version":"systemd-b"`) {
		t.Errorf("stats after the upgrade: %s", out)
	}

	// Watchdog: a stopped master is restarted by systemd; the socket keeps
	// queueing connections meanwhile.
	restarts := e.show(t, "NRestarts")
	c.MustExec("kill", "-STOP", strconv.Itoa(second))
	queued := make(chan string, 1)
	go func() {
		out, _ := c.Exec("timeout", "30", "redis-cli", "-p", "22121", "ping")
		queued <- strings.TrimSpace(out)
	}()
	waitFor(t, "watchdog restart", 30*time.Second, func() bool { return e.show(t, "NRestarts") != restarts })
	if got := <-queued; got != "PONG" {
		t.Errorf("connection queued during the watchdog restart got %q", got)
	}
	waitFor(t, "active after restart", 20*time.Second, func() bool { return e.show(t, "ActiveState") == "active" })

	// The journal: master and worker records, priority, structured fields.
	j, _ := c.Exec("journalctl", "-u", "nuthatch", "-o", "json", "--no-pager")
	roles := map[string]bool{}
	for _, line := range strings.Split(j, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if r, ok := rec["ROLE"].(string); ok && rec["PRIORITY"] != nil && rec["SYSLOG_IDENTIFIER"] == "nuthatch" {
			roles[r] = true
		}
	}
	if !roles["master"] || !roles["worker"] {
		t.Errorf("journal lacks structured master/worker records (roles %v)", roles)
	}

	// systemctl stop drains and ends every process of the unit.
	c.MustExec("systemctl", "stop", "nuthatch.service")
	if st := e.show(t, "ActiveState"); st != "inactive" {
		t.Errorf("after stop: %s", st)
	}
	if out, _ := c.Exec("pgrep", "-c", "-f", "nuthatch"); strings.TrimSpace(out) != "0" {
		t.Errorf("processes left after stop: %s", out)
	}
}
