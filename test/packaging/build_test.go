// Package packaging tests nuthatch's OS packages: the default configuration
// against the unit files, the maintainer scripts, the .deb and .rpm as built
// by packaging/build.sh (lintian, rpm -qp), and, under real systemd in a
// systemd-nspawn container, install, socket activation, reload and binary
// upgrade under load, remove and purge.
package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Versions of the two builds the lifecycle test installs one over the other.
const (
	versionA = "1.0.0~pkgtest1"
	versionB = "1.0.0~pkgtest2"
)

var (
	repoRoot = func() string {
		d, err := filepath.Abs("../..")
		if err != nil {
			panic(err)
		}
		return d
	}()

	buildMu  sync.Mutex
	built    = map[string]map[string]string{} // version -> packager -> file
	buildDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// packages builds (once per test binary) the host architecture's packages
// of version with packaging/build.sh, as `make package` does, and returns
// their paths by packager ("deb", "rpm").
func packages(t *testing.T, version string) map[string]string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[version]; ok {
		return p
	}
	if testing.Short() {
		t.Skip("packaging: building packages is skipped in -short mode")
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "nuthatch-packages-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, version)
	cmd := exec.Command(filepath.Join(repoRoot, "packaging", "build.sh"), out)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "VERSION="+version, "ARCHES="+runtime.GOARCH, "PACKAGERS=deb rpm")
	b, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("packaging/build.sh: %v\n%s%s", err, b, stderr)
	}
	p := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		p[strings.TrimPrefix(filepath.Ext(f), ".")] = f
	}
	for _, k := range []string{"deb", "rpm"} {
		want := filepath.Join(out, fmt.Sprintf("nuthatch_%s_%s.%s", version, runtime.GOARCH, k))
		if p[k] != want {
			t.Fatalf("packaging/build.sh made %q, want %s", b, want)
		}
	}
	built[version] = p
	return p
}

// need skips the test when a host program is missing.
func need(t *testing.T, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (test/scripts/deps.sh installs it)", p)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
