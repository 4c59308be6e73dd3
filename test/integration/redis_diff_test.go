package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
	"github.com/nuthatch-proxy/nuthatch/test/redisdiff"
)

// The differential test sends one script of raw requests
// (test/redisdiff) to nutcracker (Debian's 0.5.0) and to nuthatch, each
// in front of its own two fresh redis-servers with the same names, hash
// and distribution, so that every key lands on the same position. Replies
// must be byte-identical, except for the steps tagged with one of the
// expected differences (redisdiff's Refused, Arity, ...); every one of
// them is a row of the table in docs/redis.md. A step that differs
// without a tag fails the test, and so does a tagged step that no longer
// differs, so the list stays exact.

type (
	diffStep    = redisdiff.Step
	respSession = redisdiff.Session
)

func newRespSession(t *testing.T, addr string) *respSession { return redisdiff.NewSession(t, addr) }

// diffLayout places keys as both proxies of the differential test do.
var diffLayout = redisdiff.Layout{Server: func(k []byte) int { return diffPlacer.Server(k) }}

// diffScript is the script as both proxies place its keys.
func diffScript() []diffStep { return redisdiff.Script(diffLayout) }

var (
	normalize  = redisdiff.Normalize
	short      = redisdiff.Short
	splitElems = redisdiff.SplitElems
)

// diffPlacer places keys as both proxies of the differential test do.
var diffPlacer = func() *hashkit.Placer {
	h, err := hashkit.Hash("fnv1a_64")
	if err != nil {
		panic(err)
	}
	r, err := hashkit.Build(hashkit.Ketama, []hashkit.Node{{Name: "s1", Weight: 1}, {Name: "s2", Weight: 1}}, nil)
	if err != nil {
		panic(err)
	}
	return &hashkit.Placer{Hash: h, HashTag: "{}", Ring: r}
}()

// diffSetup is a pair of proxies, each over its own redis-servers.
type diffSetup struct {
	nc, nh           string
	ncRedis, nhRedis []*harness.Proc
}

// startDiffSetup starts nutcracker and nuthatch, each over n fresh
// redis-servers named s1..sn, with the same hash, hash tag and
// distribution.
func startDiffSetup(t *testing.T, n int, distribution string) *diffSetup {
	t.Helper()
	harness.Need(t, "nutcracker", "redis-server")
	d := &diffSetup{}
	var yamlServers strings.Builder
	for i := 0; i < n; i++ {
		d.ncRedis = append(d.ncRedis, harness.Redis(t))
		d.nhRedis = append(d.nhRedis, harness.Redis(t))
		fmt.Fprintf(&yamlServers, "   - %s:1 s%d\n", d.ncRedis[i].Addr, i+1)
	}
	d.nc = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	yaml := fmt.Sprintf(`diff:
  listen: %s
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: %s
  redis: true
  timeout: 2000
  server_connections: 1
  servers:
%s`, d.nc, distribution, yamlServers.String())
	harness.Nutcracker(t, yaml, d.nc)
	d.nh = startNuthatchDiff(t, d.nhRedis, distribution)
	return d
}

// startNuthatchDiff starts nuthatch as the differential test configures
// it over the given redis-servers, named s1..sn, and returns its address.
func startNuthatchDiff(t *testing.T, backends []*harness.Proc, distribution string) string {
	t.Helper()
	var hclServers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&hclServers, "  server \"s%d\" { address = %q }\n", i+1, b.Addr)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes = 1
stats {
  listen = ""
}
pool "diff" {
  listen       = %q
  protocol     = "redis"
  hash         = "fnv1a_64"
  hash_tag     = "{}"
  distribution = %q
  timeout      = "2s"
%s}
`, addr, distribution, hclServers.String())
	harness.Nuthatch(t, hcl, addr)
	return addr
}

// TestRedisPlacementNutcracker checks that keys, including the empty key
// (which twemproxy hashes to 0 instead of hashing it) and hash-tagged
// keys, land on the same server behind both proxies.
func TestRedisPlacementNutcracker(t *testing.T) {
	for _, dist := range []string{"ketama", "modula"} {
		t.Run(dist, func(t *testing.T) {
			d := startDiffSetup(t, 3, dist)
			nc, nh := newRespSession(t, d.nc), newRespSession(t, d.nh)
			keys := []string{"", "{}", "{}x", "{", "}", "{a}", "{a}b", "a{b}c", "a{}b{c}", "\x00", "k"}
			for i := 0; i < 100; i++ {
				keys = append(keys, fmt.Sprintf("key:%d", i))
			}
			for _, k := range keys {
				req := resp.AppendCommand(nil, [][]byte{[]byte("SET"), []byte(k), []byte("v")})
				if a, b := nc.Do(req), nh.Do(req); a != "+OK\r\n" || b != a {
					t.Fatalf("SET %q: nutcracker %q, nuthatch %q", k, a, b)
				}
			}
			for i := range d.ncRedis {
				a, b := backendKeys(t, d.ncRedis[i].Addr), backendKeys(t, d.nhRedis[i].Addr)
				if !slices.Equal(a, b) {
					t.Errorf("server s%d: nutcracker placed %q\n nuthatch placed %q", i+1, a, b)
				}
			}
		})
	}
}

func TestRedisDifferentialNutcracker(t *testing.T) {
	d := startDiffSetup(t, 2, "ketama")
	script := diffScript()
	nc, nh := newRespSession(t, d.nc), newRespSession(t, d.nh)
	identical, expected := redisdiff.Compare(t, script, nc, nh, "nutcracker", "nuthatch", func(st diffStep) string { return st.Diff })
	ndiff := 0
	for _, n := range expected {
		ndiff += n
	}
	t.Logf("%d steps: %d identical, %d expected differences %v", len(script), identical, ndiff, expected)

	// Keys landed on the same server on both sides.
	for i := range d.ncRedis {
		a := backendKeys(t, d.ncRedis[i].Addr)
		b := backendKeys(t, d.nhRedis[i].Addr)
		if !slices.Equal(a, b) {
			t.Errorf("server s%d holds different keys:\n nutcracker side: %q\n nuthatch side:   %q", i+1, a, b)
		}
		if len(a) == 0 {
			t.Errorf("server s%d holds no key: the script does not exercise both servers", i+1)
		}
	}
}

// backendKeys lists a redis-server's keys, sorted, leaving out those that
// only steps with an expected difference touch.
func backendKeys(t *testing.T, addr string) []string { return redisdiff.Keys(t, addr, divergentKeys) }

// divergentKeys are written by commands that only nuthatch runs (streams,
// inline, LMPOP) or that nutcracker runs on the wrong server (the
// RPOPLPUSH of the script).
var divergentKeys = map[string]bool{
	"x:a": true, "inl:a": true, "{l}src": true,
	diffLayout.PlacedKeys("p1:", 0, 3)[2]: true, diffLayout.PlacedKeys("p2:", 1, 3)[2]: true,
}
