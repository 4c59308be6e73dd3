// Package nspawn boots a throwaway Debian bookworm system with real systemd
// as PID 1 under systemd-nspawn, for tests of what only a running systemd
// can show: socket activation, Type=notify, reloads, package installs and
// upgrades, journald.
//
// The root file system is built once per machine with debootstrap and cached
// outside the source tree (default /var/cache/nuthatch-test, or
// $NUTHATCH_NSPAWN_CACHE), keyed by the package list and this package's
// cacheVersion; every Boot gets its own copy-on-write view of it (overlayfs,
// or a full copy where overlayfs is unavailable), with a private network
// namespace, and Stop throws the copy away.
//
// Tests skip, with the reason, when this cannot work here: not root, not
// Linux, no systemd-nspawn or debootstrap that can be installed, debootstrap
// failing (no mirror), nspawn failing to boot, -short, or
// NUTHATCH_SKIP_NSPAWN=1.
package nspawn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cacheVersion is part of the cache key: change it when the way the root is
// built changes, and every machine rebuilds its cached root.
const cacheVersion = "1"

// Suite is the Debian release the containers run.
const Suite = "bookworm"

// BasePackages are installed in every root (debootstrap --include): systemd
// as init, the real servers nuthatch proxies, with their clients, and rpm
// (to run the .rpm's scriptlets too).
var BasePackages = []string{
	"systemd", "systemd-sysv", "dbus", "procps", "iproute2",
	"redis-server", "memcached", "redis-tools", "libmemcached-tools",
	"rpm",
}

// Timeouts; a cold debootstrap is the slow part (about 1.5-3 minutes).
var (
	BootTimeout      = 2 * time.Minute
	ExecTimeout      = 3 * time.Minute
	stopGrace        = 15 * time.Second
	debootstrapLimit = 20 * time.Minute
)

// containerEnv is the environment of commands run in the container: the
// host's (GOFLAGS, HOME, LANG of the test runner) means nothing there.
var containerEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C.UTF-8",
	"TERM=dumb",
	"HOME=/root",
	"DEBIAN_FRONTEND=noninteractive",
	"SYSTEMD_PAGER=",
	"SYSTEMD_COLORS=0",
}

// Options tune Boot.
type Options struct {
	// Packages are installed on top of BasePackages. They are part of the
	// cache key: each distinct set costs one debootstrap per machine.
	Packages []string
}

// Container is one booted system. Its methods may be called from any
// goroutine; none of them calls t.Fatal except MustExec.
type Container struct {
	t     testing.TB
	Name  string // machine name, unique per container
	Root  string // the container's / as seen from the host
	PID1  int    // the container's systemd, as a host pid
	dir   string // per-container scratch directory (overlay layers, log)
	mount bool   // Root is an overlay mount to undo
	cmd   *exec.Cmd
	done  chan struct{} // closed when systemd-nspawn has exited
	log   string        // systemd-nspawn's output (the container's console)
	once  sync.Once
}

// Boot starts a container and waits until its systemd reports the system
// running (or degraded). It skips the test when nspawn cannot run here and
// fails it when a container that could start does not come up. The container
// is stopped and removed when the test ends.
func Boot(t testing.TB, opts Options) *Container {
	t.Helper()
	skipUnlessPossible(t)
	base := cachedRoot(t, append(slices.Clone(BasePackages), opts.Packages...))

	dir, err := os.MkdirTemp("", "nuthatch-nspawn-")
	if err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	c := &Container{
		t:    t,
		Name: "nh-" + filepath.Base(dir)[len("nuthatch-nspawn-"):],
		dir:  dir,
		done: make(chan struct{}),
		log:  filepath.Join(dir, "console.log"),
	}
	t.Cleanup(c.Stop)
	if err := c.prepareRoot(base); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	if err := c.start(); err != nil {
		t.Skipf("nspawn: systemd-nspawn cannot boot a container here: %v", err)
	}
	state := c.waitBooted()
	if state != "running" && state != "degraded" {
		failed, _ := c.Exec("systemctl", "--failed", "--no-pager")
		t.Fatalf("nspawn: %s did not boot: state %q\n%s\nconsole:\n%s", c.Name, state, failed, tail(c.Console(), 40))
	}
	if state == "degraded" {
		failed, _ := c.Exec("systemctl", "--failed", "--no-pager", "--no-legend")
		t.Logf("nspawn: %s booted degraded:\n%s", c.Name, failed)
	}
	return c
}

// waitBooted returns the system state once systemd has finished booting,
// or the last answer when BootTimeout passes first.
func (c *Container) waitBooted() string {
	ctx, cancel := context.WithTimeout(context.Background(), BootTimeout)
	defer cancel()
	for {
		// Until systemd has set up its private socket, systemctl cannot
		// connect ("offline", "Failed to connect to bus"); --wait then
		// covers the rest of the boot. Anything else (maintenance,
		// stopping) does not change by waiting, but is retried all the
		// same until BootTimeout.
		out, _ := c.ExecContext(ctx, "systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(out)
		if state == "running" || state == "degraded" || ctx.Err() != nil {
			return state
		}
		select {
		case <-c.done:
			return "systemd-nspawn exited"
		case <-ctx.Done():
			return state
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func skipUnlessPossible(t testing.TB) {
	t.Helper()
	switch {
	case runtime.GOOS != "linux":
		t.Skip("nspawn: needs Linux")
	case testing.Short():
		t.Skip("nspawn: skipped in -short mode (boots a container)")
	case os.Getenv("NUTHATCH_SKIP_NSPAWN") == "1":
		t.Skip("nspawn: NUTHATCH_SKIP_NSPAWN=1")
	case os.Geteuid() != 0:
		t.Skip("nspawn: needs root (systemd-nspawn, debootstrap, overlay mounts)")
	}
	if err := ensureTools(); err != nil {
		t.Skipf("nspawn: %v", err)
	}
}

var toolsOnce = sync.OnceValue(func() error {
	var missing []string
	for prog, pkg := range map[string]string{"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "nsenter": "util-linux"} {
		if _, err := exec.LookPath(prog); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%s missing and no apt-get to install them (test/scripts/deps.sh)", strings.Join(missing, ", "))
	}
	cmd := exec.Command("apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s missing and apt-get install failed: %v\n%s", strings.Join(missing, ", "), err, tail(string(out), 10))
	}
	return nil
})

func ensureTools() error { return toolsOnce() }

// cacheDir is where built roots are kept between runs.
func cacheDir() string {
	if d := os.Getenv("NUTHATCH_NSPAWN_CACHE"); d != "" {
		return d
	}
	return "/var/cache/nuthatch-test"
}

// CacheKey names the cached root for a package set.
func CacheKey(packages []string) string {
	p := slices.Clone(packages)
	slices.Sort(p)
	p = slices.Compact(p)
	h := sha256.Sum256([]byte(cacheVersion + "\n" + Suite + "\n" + strings.Join(p, ",")))
	return Suite + "-" + hex.EncodeToString(h[:6])
}

// cachedRoot returns a complete root for packages, building it if needed.
// A lock file serialises builds across test processes (go test runs
// packages in parallel); a stamp file marks a finished build.
func cachedRoot(t testing.TB, packages []string) string {
	t.Helper()
	key := CacheKey(packages)
	top := cacheDir()
	if err := os.MkdirAll(top, 0o755); err != nil {
		t.Skipf("nspawn: cache directory: %v", err)
	}
	dir := filepath.Join(top, key)
	root, stamp := filepath.Join(dir, "root"), filepath.Join(dir, "ok")

	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Skipf("nspawn: cache lock: %v", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Skipf("nspawn: cache lock: %v", err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	if _, err := os.Stat(stamp); err == nil {
		return root
	}
	mirror := Mirror()
	t.Logf("nspawn: building the %s root %s from %s (once per machine, a few minutes)", Suite, dir, mirror)
	start := time.Now()
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), debootstrapLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(packages, ","), Suite, filepath.Join(tmp, "root"), mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Skipf("nspawn: debootstrap %s from %s failed (%v):\n%s", Suite, mirror, err, tail(string(out), 20))
	}
	// A root of mode 0700 (as mkdtemp makes) breaks every service running as
	// its own user (status=200/CHDIR, no journal).
	if err := os.Chmod(filepath.Join(tmp, "root"), 0o755); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	// Smaller copies: the downloaded .debs are not needed any more.
	os.RemoveAll(filepath.Join(tmp, "root", "var", "cache", "apt", "archives"))
	os.MkdirAll(filepath.Join(tmp, "root", "var", "cache", "apt", "archives", "partial"), 0o755)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	if err := os.WriteFile(stamp, []byte(strings.Join(packages, "\n")+"\n"), 0o644); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	t.Logf("nspawn: root built in %s", time.Since(start).Round(time.Second))
	return root
}

// Mirror is the Debian mirror debootstrap uses: $NUTHATCH_NSPAWN_MIRROR, or
// the first URI the host's apt sources use for Suite, or deb.debian.org.
func Mirror() string {
	if m := os.Getenv("NUTHATCH_NSPAWN_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if m := mirrorFromDeb822(readFile(f)); m != "" {
			return m
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, lists...) {
		if m := mirrorFromList(readFile(f)); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}

// mirrorFromDeb822 returns the first URI of a "Types: deb" stanza whose
// Suites include Suite exactly (not bookworm-updates or -security).
func mirrorFromDeb822(src string) string {
	for _, stanza := range strings.Split(src, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if fields["enabled"] == "no" || !slices.Contains(strings.Fields(fields["types"]), "deb") {
			continue
		}
		if slices.Contains(strings.Fields(fields["suites"]), Suite) {
			if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
				return uris[0]
			}
		}
	}
	return ""
}

// mirrorFromList reads one-line "deb [options] URI suite components" entries.
func mirrorFromList(src string) string {
	for _, line := range strings.Split(src, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == Suite {
			return f[0]
		}
	}
	return ""
}

// prepareRoot makes the container's root: an overlay over the cached root,
// or a copy of it.
func (c *Container) prepareRoot(base string) error {
	upper, work, merged := filepath.Join(c.dir, "upper"), filepath.Join(c.dir, "work"), filepath.Join(c.dir, "root")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	c.Root = merged
	opts := "lowerdir=" + base + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err == nil {
		c.mount = true
		return os.Chmod(merged, 0o755)
	}
	if out, err := exec.Command("cp", "-a", "--reflink=auto", base+"/.", merged).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the root: %v\n%s", err, out)
	}
	return os.Chmod(merged, 0o755)
}

func (c *Container) start() error {
	logf, err := os.Create(c.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-network",
		"--machine="+c.Name, "-D", c.Root, "-b", "--console=passive")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: no terminal signals from the test runner.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd = cmd
	go func() {
		cmd.Wait()
		close(c.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("systemd-nspawn exited: %v\n%s", cmd.ProcessState, tail(c.Console(), 20))
		default:
		}
		if pid := childNamed(cmd.Process.Pid, "systemd"); pid > 0 {
			c.PID1 = pid
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no systemd below systemd-nspawn (pid %d) after 30s\n%s", cmd.Process.Pid, tail(c.Console(), 20))
}

// childNamed finds the child of parent whose command name is name.
func childNamed(parent int, name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may contain spaces and parentheses.
		s := string(b)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if lp < 0 || rp < lp {
			continue
		}
		f := strings.Fields(s[rp+1:])
		if len(f) < 2 || s[lp+1:rp] != name {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == parent {
			return pid
		}
	}
	return 0
}

// Console returns what the container printed on its console so far.
func (c *Container) Console() string { return readFile(c.log) }

// Exec runs a command inside the container (all its namespaces) and returns
// its combined output and exit code; -1 when it could not run or timed out
// (the output then ends with the reason).
func (c *Container) Exec(args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	return c.ExecContext(ctx, args...)
}

// ExecContext is Exec with the caller's deadline.
func (c *Container) ExecContext(ctx context.Context, args ...string) (string, int) {
	cmd := c.Command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return result(cmd, &out)
}

// Command prepares a command to run inside the container, for callers that
// need stdin or want to run it in the background.
func (c *Container) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.PID1), "-a", "--"}, args...)...)
	cmd.Env = containerEnv
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func result(cmd *exec.Cmd, out *bytes.Buffer) (string, int) {
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return out.String(), exit.ExitCode()
	default:
		return out.String() + "\nnspawn: " + err.Error(), -1
	}
}

// MustExec runs a command in the container and fails the test unless it
// exits 0. Call it from the test goroutine only.
func (c *Container) MustExec(args ...string) string {
	c.t.Helper()
	out, code := c.Exec(args...)
	if code != 0 {
		c.t.Fatalf("nspawn %s: %q exited %d:\n%s", c.Name, args, code, out)
	}
	return out
}

// CopyIn copies a host file into the container, creating the directories
// above it and keeping the file's permission bits. It writes through the
// container's own mounts, so paths under its /tmp or /run work too.
func (c *Container) CopyIn(hostPath, containerPath string) error {
	f, err := os.Open(hostPath)
	if err != nil {
		return fmt.Errorf("nspawn: copy in: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("nspawn: copy in: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	cmd := c.Command(ctx, "sh", "-c", `mkdir -p -- "$(dirname -- "$1")" && cat >"$1" && chmod "$2" "$1"`,
		"sh", containerPath, strconv.FormatUint(uint64(st.Mode().Perm()), 8))
	cmd.Stdin = f
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if s, code := result(cmd, &out); code != 0 {
		return fmt.Errorf("nspawn: copy %s to %s:%s: exit %d: %s", hostPath, c.Name, containerPath, code, s)
	}
	return nil
}

// NetCommand prepares a HOST program to run inside the container's network
// namespace only: it sees the container's loopback (127.0.0.1 is the
// container's), and the host's file system and binaries. Use it for load
// generators and clients built by the test.
func (c *Container) NetCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	// nsenter without -p execs the program in place: cmd.Process is it.
	return exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.PID1), "-n", "--", name}, args...)...)
}

// NetExec runs a host program in the container's network namespace and
// returns its combined output and exit code (-1 if it could not run).
func (c *Container) NetExec(name string, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	cmd := c.NetCommand(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return result(cmd, &out)
}

// Journal returns the journal of a unit in this boot, or of the whole
// system for unit "".
func (c *Container) Journal(unit string) string {
	args := []string{"journalctl", "--no-pager", "-b", "-o", "short-precise"}
	if unit != "" {
		args = append(args, "-u", unit)
	}
	out, _ := c.Exec(args...)
	return out
}

// Stop powers the container off (SIGTERM to systemd-nspawn, which asks the
// container's systemd to shut down), kills what is left after a grace period
// (SIGKILL to the container's PID 1 ends its whole PID namespace), and
// removes the container's copy of the root. Only processes this container
// started are signalled. Safe to call more than once.
func (c *Container) Stop() {
	c.once.Do(func() {
		if c.t.Failed() && c.PID1 > 0 {
			out, _ := c.Exec("journalctl", "--no-pager", "-b", "-n", "400", "-o", "short-precise")
			c.t.Logf("nspawn %s: last journal lines before stopping:\n%s", c.Name, out)
		}
		if c.cmd != nil {
			c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(stopGrace):
				c.t.Logf("nspawn %s: no clean shutdown after %s, killing it", c.Name, stopGrace)
				if c.PID1 > 0 {
					syscall.Kill(c.PID1, syscall.SIGKILL)
				}
				c.cmd.Process.Kill()
				select {
				case <-c.done:
				case <-time.After(stopGrace):
					c.t.Errorf("nspawn %s: systemd-nspawn (pid %d) did not exit", c.Name, c.cmd.Process.Pid)
					return
				}
			}
		}
		if c.mount {
			if err := unix.Unmount(c.Root, 0); err != nil {
				// Keep the files: removing them through a live overlay would
				// still be safe for the cache, but say what was left.
				c.t.Logf("nspawn %s: unmount %s: %v; leaving %s", c.Name, c.Root, err, c.dir)
				unix.Unmount(c.Root, unix.MNT_DETACH)
				return
			}
		}
		if err := os.RemoveAll(c.dir); err != nil {
			c.t.Logf("nspawn %s: remove %s: %v", c.Name, c.dir, err)
		}
	})
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
