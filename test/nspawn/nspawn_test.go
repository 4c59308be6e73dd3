package nspawn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMirrorFromSources(t *testing.T) {
	deb822 := `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
`
	for _, tc := range []struct {
		name, src, want string
		parse           func(string) string
	}{
		{"deb822", deb822, "http://deb.example.org/debian", mirrorFromDeb822},
		{"deb822 security only", deb822[strings.Index(deb822, "\n\n")+2:], "", mirrorFromDeb822},
		{"deb822 disabled", "Enabled: no\nTypes: deb\nURIs: http://x/debian\nSuites: bookworm\n", "", mirrorFromDeb822},
		{"deb822 deb-src only", "Types: deb-src\nURIs: http://x/debian\nSuites: bookworm\n", "", mirrorFromDeb822},
		{"list", "# comment\ndeb http://m.example/debian bookworm main\n", "http://m.example/debian", mirrorFromList},
		{"list with options", "deb [arch=amd64 signed-by=/k.gpg] http://o.example/debian bookworm main\n", "http://o.example/debian", mirrorFromList},
		{"list other suite", "deb http://m.example/ubuntu jammy main\ndeb http://m.example/debian bookworm-updates main\n", "", mirrorFromList},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.parse(tc.src); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCacheKey(t *testing.T) {
	a := CacheKey([]string{"systemd", "dbus", "redis-server"})
	if b := CacheKey([]string{"redis-server", "systemd", "dbus", "dbus"}); a != b {
		t.Errorf("order or duplicates change the key: %s vs %s", a, b)
	}
	if b := CacheKey([]string{"systemd", "dbus"}); a == b {
		t.Errorf("a different package set has the same key %s", a)
	}
	if !strings.HasPrefix(a, Suite+"-") {
		t.Errorf("key %q does not name the suite", a)
	}
}

func TestTail(t *testing.T) {
	if got := tail("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("tail = %q", got)
	}
}

// TestBoot exercises every method on a real container.
func TestBoot(t *testing.T) {
	c := Boot(t, Options{})

	if out, code := c.Exec("systemctl", "is-active", "redis-server", "memcached"); code != 0 {
		t.Errorf("packaged servers not active (exit %d):\n%s", code, out)
	}
	if out, code := c.Exec("sh", "-c", "exit 3"); code != 3 {
		t.Errorf("exit code: got %d, want 3 (%s)", code, out)
	}
	if out := c.MustExec("cat", "/proc/1/comm"); strings.TrimSpace(out) != "systemd" {
		t.Errorf("PID 1 inside is %q, want systemd", out)
	}

	// CopyIn lands under the container's own /tmp (a tmpfs the host's view
	// of Root does not show) with the host file's mode.
	src := filepath.Join(t.TempDir(), "hello.sh")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hello from $(cat /proc/1/comm)\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := c.CopyIn(src, "/tmp/sub/hello.sh"); err != nil {
		t.Fatal(err)
	}
	if out := c.MustExec("stat", "-c", "%a", "/tmp/sub/hello.sh"); strings.TrimSpace(out) != "750" {
		t.Errorf("mode after CopyIn: %s", out)
	}
	if out := c.MustExec("/tmp/sub/hello.sh"); strings.TrimSpace(out) != "hello from systemd" {
		t.Errorf("script output %q", out)
	}

	// A host program in the container's network namespace reaches the
	// container's redis-server on its loopback.
	if out, code := c.NetExec("redis-cli", "-p", "6379", "ping"); code != 0 || strings.TrimSpace(out) != "PONG" {
		t.Errorf("host redis-cli in the container's network: exit %d: %q", code, out)
	}
	if out, _ := c.NetExec("cat", "/proc/self/net/dev"); strings.Contains(out, "eth0:") {
		// --private-network leaves only lo (and the host's eth0 must not show).
		t.Errorf("container network namespace is not private:\n%s", out)
	}

	if j := c.Journal("redis-server"); !strings.Contains(j, "redis") {
		t.Errorf("journal of redis-server:\n%s", j)
	}

	root := c.Root
	c.Stop()
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("root %s still there after Stop: %v", root, err)
	}
	c.Stop() // idempotent
}
