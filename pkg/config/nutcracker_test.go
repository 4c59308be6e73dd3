package config

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestPlacementNamesMatchNutcracker checks PlacementName against the server
// names the real nutcracker 0.5.0 reports in its stats (the same names seed
// its ketama continuum).
func TestPlacementNamesMatchNutcracker(t *testing.T) {
	bin, err := exec.LookPath("nutcracker")
	if err != nil {
		t.Skip("nutcracker is not installed; cannot compare placement names")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "m.sock")
	listen, stats, other := freePort(t), freePort(t), freePort(t)

	yml := fmt.Sprintf(`alpha:
  listen: 127.0.0.1:%d
  servers:
   - %s:1
   - 127.0.0.1:11211:1
   - 127.0.0.1:%d:1
   - 127.0.0.2:%d:2 cache-x
`, listen, sock, other, other)
	hclSrc := fmt.Sprintf(`pool "alpha" {
  listen   = "127.0.0.1:%d"
  protocol = "memcache"
  server "unix:%s" {}
  server "127.0.0.1:11211" {}
  server "127.0.0.1:%d" {}
  server "cache-x" {
    address = "127.0.0.2:%d"
    weight  = 2
  }
}
`, listen, sock, other, other)

	cfg, err := Parse([]byte(hclSrc), "placement.hcl")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range cfg.Pools[0].Servers {
		want = append(want, s.PlacementName())
	}

	ymlPath := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(ymlPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", ymlPath, "-a", "127.0.0.1", "-s", fmt.Sprint(stats),
		"-o", filepath.Join(dir, "nutcracker.log"), "-p", filepath.Join(dir, "nutcracker.pid"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	got := statsServerNames(t, stats, "alpha")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		log, _ := os.ReadFile(filepath.Join(dir, "nutcracker.log"))
		t.Fatalf("nutcracker names %q, PlacementName gives %q\nlog:\n%s", got, want, log)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// statsServerNames reads nutcracker's stats document and returns the keys
// of the pool's server objects.
func statsServerNames(t *testing.T, port int, pool string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			body, err := io.ReadAll(c)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]json.RawMessage
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("stats %q: %v", body, err)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(doc[pool], &fields); err != nil {
				t.Fatalf("stats pool %q: %v", doc[pool], err)
			}
			var names []string
			for k, v := range fields {
				if len(v) > 0 && v[0] == '{' {
					names = append(names, k)
				}
			}
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("nutcracker stats port never opened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
