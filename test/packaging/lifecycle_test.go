package packaging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
	"github.com/nuthatch-proxy/nuthatch/test/nspawn"
)

// buildLoadgen compiles test/packaging/loadgen for the host; the tests run
// it inside the container's network namespace.
func buildLoadgen(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "loadgen")
	cmd := exec.Command("go", "build", "-o", bin, "./test/packaging/loadgen")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build loadgen: %v\n%s", err, out)
	}
	return bin
}

// load is a loadgen process running in the container's network.
type load struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	cancel         context.CancelFunc
}

type loadSummary struct {
	OK, Failed, Retried, Connects int64
	Errors                        []string
}

func startLoad(t *testing.T, c *nspawn.Container, loadgen string, args ...string) *load {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	l := &load{cancel: cancel}
	l.cmd = c.NetCommand(ctx, loadgen, append([]string{"-conns", "4", "-reconnect", "20"}, args...)...)
	l.cmd.Stdout, l.cmd.Stderr = &l.stdout, &l.stderr
	if err := l.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("loadgen: %v", err)
	}
	t.Cleanup(func() { cancel(); l.cmd.Wait() })
	time.Sleep(time.Second) // some traffic before whatever the test does next
	return l
}

// finish stops the load and fails the test if any request failed.
func (l *load) finish(t *testing.T, what string) loadSummary {
	t.Helper()
	time.Sleep(time.Second) // some traffic after it too
	l.cmd.Process.Signal(syscall.SIGINT)
	err := l.cmd.Wait()
	l.cancel()
	var s loadSummary
	if jerr := json.Unmarshal(l.stdout.Bytes(), &s); err != nil || jerr != nil {
		t.Fatalf("loadgen during %s: %v %v\n%s%s", what, err, jerr, l.stdout.String(), l.stderr.String())
	}
	t.Logf("load during %s: %d requests ok, %d failed, %d retried on a closed idle connection, %d connections",
		what, s.OK, s.Failed, s.Retried, s.Connects)
	if s.Failed > 0 {
		t.Errorf("%d requests failed during %s: %v", s.Failed, what, s.Errors)
	}
	if s.OK < 100 {
		t.Errorf("only %d requests succeeded during %s", s.OK, what)
	}
	return s
}

func prop(t *testing.T, c *nspawn.Container, unit, name string) string {
	t.Helper()
	return strings.TrimSpace(c.MustExec("systemctl", "show", "-p", name, "--value", unit))
}

// runningVersion is what the service's main process says it is: its own
// binary (through /proc, so a replaced file still answers for the old one).
func runningVersion(t *testing.T, c *nspawn.Container) (pid, version string) {
	t.Helper()
	pid = prop(t, c, "nuthatch.service", "MainPID")
	if pid == "0" {
		t.Fatalf("nuthatch.service has no main process:\n%s", c.Journal("nuthatch.service"))
	}
	out := c.MustExec("/proc/"+pid+"/exe", "-V")
	return pid, strings.TrimPrefix(strings.TrimSpace(out), "nuthatch ")
}

// checkGracefulStop fails the test if systemd had to SIGKILL anything of
// nuthatch.service: a stop must let the master drain its workers.
func checkGracefulStop(t *testing.T, c *nspawn.Container, when string) {
	t.Helper()
	var killed []string
	for _, l := range strings.Split(c.Journal("nuthatch.service"), "\n") {
		if strings.Contains(l, "with signal SIGKILL") || strings.Contains(l, "status=9/KILL") {
			killed = append(killed, l)
		}
	}
	if len(killed) > 0 {
		t.Errorf("%s: systemd killed nuthatch instead of letting it drain. After a binary upgrade the main "+
			"process is not systemd's child; systemd 252 then does not wait after KillSignal= (KillMode=mixed) "+
			"and SIGKILLs the whole unit at once, unless an ExecStop= waits for the master to exit:\n%s",
			when, strings.Join(killed, "\n"))
	}
}

func probe(c *nspawn.Container, loadgen string, args ...string) (string, int) {
	return c.NetExec(loadgen, append([]string{"-probe", "-timeout", "3s"}, args...)...)
}

// TestLifecycle installs, uses, reloads, upgrades, removes and purges the
// .deb on a Debian system running systemd, with the distribution's
// redis-server and memcached behind the packaged configuration.
func TestLifecycle(t *testing.T) {
	need(t, "dpkg-deb")
	debA, debB := packages(t, versionA)["deb"], packages(t, versionB)["deb"]
	loadgen := buildLoadgen(t)
	c := nspawn.Boot(t, nspawn.Options{})
	for _, f := range []string{debA, debB} {
		if err := c.CopyIn(f, "/root/"+filepath.Base(f)); err != nil {
			t.Fatal(err)
		}
	}
	both := []string{"-redis", "127.0.0.1:22121", "-memcache", "127.0.0.1:22122"}

	// Install: the account exists, the socket listens, the service waits
	// for its first connection.
	t.Log(c.MustExec("dpkg", "-i", "/root/"+filepath.Base(debA)))
	c.MustExec("getent", "passwd", "nuthatch")
	checkTLSDir(t, c)
	for unit, want := range map[string]string{"nuthatch.socket": "active", "nuthatch.service": "inactive"} {
		if got := prop(t, c, unit, "ActiveState"); got != want {
			t.Errorf("after install %s is %s, want %s", unit, got, want)
		}
	}
	if got := prop(t, c, "nuthatch.socket", "UnitFileState"); got != "enabled" {
		t.Errorf("nuthatch.socket is %s after install, want enabled", got)
	}

	// Socket activation: the first connection starts the service, and both
	// pools answer through it.
	out, code := probe(c, loadgen, both...)
	if code != 0 || !strings.Contains(out, "redis: +PONG") || !strings.Contains(out, "memcache: VERSION ") {
		t.Fatalf("probe through the proxy: exit %d\n%s\n%s", code, out, c.Journal("nuthatch.service"))
	}
	if got := prop(t, c, "nuthatch.service", "ActiveState"); got != "active" {
		t.Fatalf("nuthatch.service is %s after the first connection", got)
	}
	pidA, v := runningVersion(t, c)
	if v != versionA {
		t.Errorf("running version %q, want %s", v, versionA)
	}
	if user := strings.TrimSpace(c.MustExec("ps", "-o", "user=", "-p", pidA)); user != "nuthatch" {
		t.Errorf("the master runs as %q, want nuthatch", user)
	}
	if j := c.Journal("nuthatch.service"); !strings.Contains(j, "nuthatch starting") {
		t.Errorf("journal of nuthatch.service lacks the start line:\n%s", j)
	}
	socketSince := prop(t, c, "nuthatch.socket", "ActiveEnterTimestampMonotonic")

	// Reload under load with an edited configuration: a longer timeout and
	// a third pool on a port of its own.
	conf := c.MustExec("cat", "/etc/nuthatch/nuthatch.hcl")
	edited := strings.Replace(conf, `timeout      = "400ms"`, `timeout      = "1s"`, 1) + `
# Added by the package test.
pool "extra" {
  listen   = "127.0.0.1:22123"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}
`
	local := filepath.Join(t.TempDir(), "nuthatch.hcl")
	if err := os.WriteFile(local, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, c, loadgen, both...)
	if err := c.CopyIn(local, "/etc/nuthatch/nuthatch.hcl"); err != nil {
		t.Fatal(err)
	}
	if out, code := c.Exec("systemctl", "reload", "nuthatch.service"); code != 0 {
		t.Errorf("systemctl reload: exit %d\n%s\n%s", code, out, c.Journal("nuthatch.service"))
	}
	noneClosed(t, l.finish(t, "systemctl reload"), "systemctl reload")
	if out, code := probe(c, loadgen, "-redis", "127.0.0.1:22123"); code != 0 {
		t.Errorf("the pool added by the reload does not answer:\n%s", out)
	}
	if pid, _ := runningVersion(t, c); pid != pidA {
		t.Errorf("reload changed the main process %s -> %s", pidA, pid)
	}

	// TLS after install: a certificate an admin puts in /etc/nuthatch/tls
	// (key root:nuthatch 0640) serves a TLS pool once reloaded.
	tlsDir := t.TempDir()
	ca, err := tlstest.MakeCA(tlsDir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	installLeaf := func(name string) *tlstest.Leaf {
		t.Helper()
		leaf, err := ca.MakeLeaf(name, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{leaf.CertFile: "/etc/nuthatch/tls/proxy.crt", leaf.KeyFile: "/etc/nuthatch/tls/proxy.key"} {
			if err := c.CopyIn(src, dst); err != nil {
				t.Fatal(err)
			}
		}
		c.MustExec("chown", "root:nuthatch", "/etc/nuthatch/tls/proxy.crt", "/etc/nuthatch/tls/proxy.key")
		c.MustExec("chmod", "0640", "/etc/nuthatch/tls/proxy.key")
		c.MustExec("chmod", "0644", "/etc/nuthatch/tls/proxy.crt")
		return leaf
	}
	tlsProbe := func(want *tlstest.Leaf, when string) {
		t.Helper()
		out, code := probe(c, loadgen, "-tls-ca", ca.File, "-redis", "127.0.0.1:22124")
		if wantLine := fmt.Sprintf("redis: +PONG (tls serial %s)", want.Cert.SerialNumber); code != 0 || !strings.Contains(out, wantLine) {
			t.Errorf("TLS pool %s: exit %d, want %q:\n%s\n%s", when, code, wantLine, out, c.Journal("nuthatch.service"))
		}
	}
	leaf1 := installLeaf("proxy1")
	edited += `
# Added by the package test: TLS from /etc/nuthatch/tls.
pool "secure" {
  listen   = "127.0.0.1:22124"
  protocol = "redis"
  tls {
    cert = "/etc/nuthatch/tls/proxy.crt"
    key  = "/etc/nuthatch/tls/proxy.key"
  }
  server "127.0.0.1:6379" {}
}
`
	if err := os.WriteFile(local, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.CopyIn(local, "/etc/nuthatch/nuthatch.hcl"); err != nil {
		t.Fatal(err)
	}
	if out, code := c.Exec("systemctl", "reload", "nuthatch.service"); code != 0 {
		t.Fatalf("systemctl reload with a TLS pool: exit %d\n%s\n%s", code, out, c.Journal("nuthatch.service"))
	}
	tlsProbe(leaf1, "after the reload that added it")

	// Upgrade A -> B under load: the running service takes the new binary
	// (a new main process), no request fails, the edited configuration
	// stays, and the sockets are never closed.
	l = startLoad(t, c, loadgen, both...)
	out, code = c.Exec("dpkg", "-i", "/root/"+filepath.Base(debB))
	t.Logf("dpkg -i %s (exit %d):\n%s", filepath.Base(debB), code, out)
	if code != 0 {
		t.Errorf("upgrade to B failed")
	}
	noneClosed(t, l.finish(t, "the package upgrade"), "the package upgrade")
	if strings.Contains(out, "restarting nuthatch.service") {
		t.Errorf("the upgrade restarted the service instead of handing over to the new binary")
	}
	pidB, v := runningVersion(t, c)
	if v != versionB || pidB == pidA {
		t.Errorf("after the upgrade the main process is %s running %q; want a new one (was %s) running %s\n%s",
			pidB, v, pidA, versionB, c.Journal("nuthatch.service"))
	}
	if got := c.MustExec("cat", "/etc/nuthatch/nuthatch.hcl"); got != edited {
		t.Errorf("the upgrade changed the edited configuration:\n%s", got)
	}
	if out, code := probe(c, loadgen, append(both, "-redis", "127.0.0.1:22123")...); code != 0 {
		t.Errorf("after the upgrade: %s", out)
	}
	if got := prop(t, c, "nuthatch.socket", "ActiveEnterTimestampMonotonic"); got != socketSince {
		t.Errorf("nuthatch.socket was restarted (active since %s, now %s)", socketSince, got)
	}
	tlsProbe(leaf1, "after the upgrade")
	// A renewed certificate in place: a reload serves it.
	leaf2 := installLeaf("proxy2")
	if out, code := c.Exec("systemctl", "reload", "nuthatch.service"); code != 0 {
		t.Errorf("systemctl reload after the certificate was renewed: exit %d\n%s", code, out)
	}
	tlsProbe(leaf2, "after the certificate was renewed and the service reloaded")

	// Remove: stopped (gracefully), disabled, binary and units gone,
	// configuration kept.
	t.Log(c.MustExec("apt-get", "remove", "-y", "-q", "-o", "Dpkg::Use-Pty=0", "nuthatch"))
	checkGracefulStop(t, c, "apt-get remove")
	for _, unit := range []string{"nuthatch.socket", "nuthatch.service"} {
		if got := prop(t, c, unit, "ActiveState"); got != "inactive" {
			t.Errorf("after remove %s is %s", unit, got)
		}
		if got := prop(t, c, unit, "LoadState"); got != "not-found" {
			t.Errorf("after remove %s is %s, want not-found", unit, got)
		}
	}
	if out, code := probe(c, loadgen, both...); code == 0 {
		t.Errorf("the proxy still answers after remove:\n%s", out)
	}
	if _, code := c.Exec("test", "-e", "/usr/bin/nuthatch"); code == 0 {
		t.Error("/usr/bin/nuthatch is still there after remove")
	}
	if _, code := c.Exec("test", "-f", "/etc/nuthatch/nuthatch.hcl"); code != 0 {
		t.Error("remove deleted the configuration (only purge may)")
	}

	// Purge: nothing of the package is left; the account stays (Debian
	// leaves system users in place, files owned by them may remain).
	t.Log(c.MustExec("apt-get", "purge", "-y", "-q", "-o", "Dpkg::Use-Pty=0", "nuthatch"))
	var left []string
	for _, f := range append(debFiles(t, debA), "/etc/nuthatch", "/run/nuthatch") {
		if f == "/" || !strings.Contains(f, "nuthatch") {
			continue // shared directories such as /usr/share/man/man8/
		}
		if _, code := c.Exec("test", "-e", f); code == 0 {
			left = append(left, f)
		}
	}
	found := c.MustExec("find", "/etc/systemd", "/var/lib/systemd", "/usr/lib/systemd", "-name", "*nuthatch*")
	if found = strings.TrimSpace(found); found != "" {
		left = append(left, strings.Fields(found)...)
	}
	if len(left) > 0 {
		t.Errorf("left behind after purge: %v", left)
	}
	if out, code := c.Exec("dpkg-query", "-W", "-f", "${db:Status-Status}", "nuthatch"); code == 0 && strings.TrimSpace(out) != "not-installed" {
		t.Errorf("dpkg status after purge: %q", out)
	}
	if _, code := c.Exec("getent", "passwd", "nuthatch"); code != 0 {
		t.Error("purge removed the nuthatch account; docs/packaging.md says it stays")
	}
}

// TestRPMLifecycle runs the .rpm's scriptlets under systemd: rpm on Debian
// (with --nodeps: the dependencies are Debian packages) keeps its own
// database, and the scriptlets only use systemctl and systemd-sysusers.
// It checks what is RPM-specific: $1 in %post/%preun/%postun, the upgrade
// done in %posttrans after the old package's %postun, and erase.
func TestRPMLifecycle(t *testing.T) {
	need(t, "rpm")
	rpmA, rpmB := packages(t, versionA)["rpm"], packages(t, versionB)["rpm"]
	loadgen := buildLoadgen(t)
	c := nspawn.Boot(t, nspawn.Options{})
	for _, f := range []string{rpmA, rpmB} {
		if err := c.CopyIn(f, "/root/"+filepath.Base(f)); err != nil {
			t.Fatal(err)
		}
	}
	rpm := func(args ...string) (string, int) {
		return c.Exec(append([]string{"rpm", "--nodeps", "--force-debian"}, args...)...)
	}
	both := []string{"-redis", "127.0.0.1:22121", "-memcache", "127.0.0.1:22122"}

	if out, code := rpm("-i", "/root/"+filepath.Base(rpmA)); code != 0 {
		t.Fatalf("rpm -i: exit %d\n%s", code, out)
	}
	c.MustExec("getent", "passwd", "nuthatch")
	checkTLSDir(t, c)
	if got := prop(t, c, "nuthatch.socket", "ActiveState") + "/" + prop(t, c, "nuthatch.socket", "UnitFileState"); got != "active/enabled" {
		t.Errorf("after rpm -i nuthatch.socket is %s, want active/enabled", got)
	}
	if out, code := probe(c, loadgen, both...); code != 0 {
		t.Fatalf("probe: %s\n%s", out, c.Journal("nuthatch.service"))
	}
	pidA, v := runningVersion(t, c)
	if v != versionA {
		t.Errorf("running %q, want %s", v, versionA)
	}
	socketSince := prop(t, c, "nuthatch.socket", "ActiveEnterTimestampMonotonic")

	l := startLoad(t, c, loadgen, both...)
	out, code := rpm("-U", "/root/"+filepath.Base(rpmB))
	t.Logf("rpm -U (exit %d):\n%s", code, out)
	if code != 0 {
		t.Error("rpm -U failed")
	}
	noneClosed(t, l.finish(t, "rpm -U"), "rpm -U")
	if !strings.Contains(out, "binary upgrade done") {
		t.Errorf("%%posttrans did not hand the service over:\n%s", out)
	}
	pidB, v := runningVersion(t, c)
	if v != versionB || pidB == pidA {
		t.Errorf("after rpm -U the main process is %s running %q; want a new one (was %s) running %s", pidB, v, pidA, versionB)
	}
	if got := prop(t, c, "nuthatch.socket", "ActiveEnterTimestampMonotonic"); got != socketSince {
		t.Error("rpm -U restarted nuthatch.socket")
	}
	if got := prop(t, c, "nuthatch.socket", "UnitFileState"); got != "enabled" {
		t.Errorf("rpm -U left nuthatch.socket %s (the old %%preun/%%postun must not disable it)", got)
	}
	if _, code := c.Exec("test", "-e", "/var/lib/rpm-state/nuthatch"); code == 0 {
		t.Error("posttrans left its marker /var/lib/rpm-state/nuthatch behind")
	}

	if out, code := rpm("-e", "nuthatch"); code != 0 {
		t.Fatalf("rpm -e: exit %d\n%s", code, out)
	}
	checkGracefulStop(t, c, "rpm -e")
	for _, unit := range []string{"nuthatch.socket", "nuthatch.service"} {
		if got := prop(t, c, unit, "ActiveState") + "/" + prop(t, c, unit, "LoadState"); got != "inactive/not-found" {
			t.Errorf("after rpm -e %s is %s", unit, got)
		}
	}
	found := strings.TrimSpace(c.MustExec("find", "/etc", "/usr", "/var/lib/systemd", "/var/lib/rpm-state", "-name", "*nuthatch*"))
	if found != "" {
		t.Errorf("left behind after rpm -e:\n%s", found)
	}
}

// checkTLSDir: the package made the directory for TLS keys readable by the
// service's group and no one else.
func checkTLSDir(t *testing.T, c *nspawn.Container) {
	t.Helper()
	if got := strings.TrimSpace(c.MustExec("stat", "-c", "%U:%G %a", "/etc/nuthatch/tls")); got != "root:nuthatch 750" {
		t.Errorf("/etc/nuthatch/tls is %q, want root:nuthatch 750", got)
	}
}

// noneClosed: the clients' idle connections were handed to the new
// generation (docs/operations.md), so none of them found its connection
// closed under it and had to retry.
func noneClosed(t *testing.T, s loadSummary, what string) {
	t.Helper()
	if s.Retried > 0 {
		t.Errorf("%s closed %d client connections under a request (they retried); hand-over should keep them", what, s.Retried)
	}
}
