package convert

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit/hashkittest"
)

// This file checks placement end to end without processes: a pool built
// from the converted HCL must place keys exactly where twemproxy's rules,
// derived here independently from the YAML, place them, and where a real
// nutcracker placed them (pkg/hashkit's recorded golden data).

// refPool is what the reference derivation needs from a YAML pool.
type refPool struct {
	name, hash, dist, tag string
	servers               []hashkit.Node
}

var (
	// "host:port:weight [name]": the name follows the last space, and the
	// host is everything before the last two colons of the rest.
	refTCP = regexp.MustCompile(`^(.*):([0-9]+):([0-9]+)(?: ([^ ]*))?$`)
	// "/path:weight [name]"; a path has no colon.
	refUnix = regexp.MustCompile(`^(/[^:]*):([0-9]+)(?: ([^ ]*))?$`)
)

// refName is twemproxy's server name for one servers entry, written from
// its documented rules rather than from the converter's code.
func refName(t *testing.T, entry string) hashkit.Node {
	t.Helper()
	if m := refUnix.FindStringSubmatch(entry); m != nil {
		w, _ := strconv.Atoi(m[2])
		if strings.Contains(entry, " ") {
			return hashkit.Node{Name: m[3], Weight: w}
		}
		return hashkit.Node{Name: m[1] + ":", Weight: w}
	}
	m := refTCP.FindStringSubmatch(entry)
	if m == nil {
		t.Fatalf("reference parser cannot read %q", entry)
	}
	w, _ := strconv.Atoi(m[3])
	switch port, _ := strconv.Atoi(m[2]); {
	case strings.Contains(entry, " "):
		return hashkit.Node{Name: m[4], Weight: w}
	case port == 11211:
		return hashkit.Node{Name: m[1], Weight: w}
	default:
		return hashkit.Node{Name: m[1] + ":" + m[2], Weight: w}
	}
}

// refPools reads the pools of a valid YAML file with twemproxy's defaults.
func refPools(t *testing.T, src []byte) []refPool {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	var pools []refPool
	for i := 0; i < len(root.Content); i += 2 {
		p := refPool{name: root.Content[i].Value, hash: "fnv1a_64", dist: "ketama"}
		m := root.Content[i+1]
		for j := 0; j < len(m.Content); j += 2 {
			values := []string{m.Content[j+1].Value}
			if m.Content[j+1].Kind == yaml.SequenceNode {
				values = nil
				for _, n := range m.Content[j+1].Content {
					values = append(values, n.Value)
				}
			}
			switch m.Content[j].Value {
			case "hash":
				p.hash = values[0]
			case "distribution":
				p.dist = values[0]
			case "hash_tag":
				p.tag = values[0]
			case "servers":
				for _, v := range values {
					p.servers = append(p.servers, refName(t, v))
				}
			}
		}
		pools = append(pools, p)
	}
	return pools
}

// placement returns the server index of each key.
func placement(t *testing.T, hash, tag, dist string, nodes []hashkit.Node, live []bool, keys [][]byte) []int {
	t.Helper()
	h, err := hashkit.Hash(hash)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hashkit.Build(dist, nodes, live)
	if err != nil {
		t.Fatal(err)
	}
	p := hashkit.Placer{Hash: h, HashTag: tag, Ring: r}
	out := make([]int, len(keys))
	for i, k := range keys {
		out[i] = p.Server(k)
	}
	return out
}

// configNodes are the ring nodes a nuthatch pool builds (pkg/proxy newPool).
func configNodes(p *config.Pool) []hashkit.Node {
	nodes := make([]hashkit.Node, len(p.Servers))
	for i, s := range p.Servers {
		nodes[i] = hashkit.Node{Name: s.PlacementName(), Weight: s.Weight}
	}
	return nodes
}

// TestPlacementMatchesReference checks 2000 keys per pool of every valid
// corpus file: converted HCL against the reference derivation.
func TestPlacementMatchesReference(t *testing.T) {
	keys := hashkittest.GoldenKeys(2000)
	for _, file := range corpus(t, "testdata") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src := readFile(t, file)
			out, _, err := Convert(src, file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(out, file+".hcl")
			if err != nil {
				t.Fatal(err)
			}
			ref := refPools(t, src)
			if len(ref) != len(cfg.Pools) {
				t.Fatalf("%d pools in the YAML, %d converted", len(ref), len(cfg.Pools))
			}
			for i, cp := range cfg.Pools {
				rp := ref[i]
				if cp.Name != rp.name || cp.Hash != rp.hash || cp.Distribution != rp.dist || cp.HashTag != rp.tag {
					t.Errorf("pool %q: converted %s/%s/%q, want %q %s/%s/%q", cp.Name, cp.Hash, cp.Distribution, cp.HashTag, rp.name, rp.hash, rp.dist, rp.tag)
				}
				got := configNodes(cp)
				if fmt.Sprint(got) != fmt.Sprint(rp.servers) {
					t.Errorf("pool %q: servers (name, weight) %v, want %v", cp.Name, got, rp.servers)
				}
				if rp.dist == hashkit.Random {
					continue // nothing deterministic to compare
				}
				a := placement(t, cp.Hash, cp.HashTag, cp.Distribution, got, nil, keys)
				b := placement(t, rp.hash, rp.tag, rp.dist, rp.servers, nil, keys)
				for k := range keys {
					if a[k] != b[k] {
						t.Fatalf("pool %q: key %q placed on server %d, twemproxy's rules give %d", cp.Name, keys[k], a[k], b[k])
					}
				}
			}
		})
	}
}

// TestPlacementMatchesNutcracker rebuilds, as a nutcracker.yml, the server
// list pkg/hashkit recorded from a real nutcracker, converts it, and
// replays every recorded case (each hash and distribution, with and
// without a hash tag, with a server ejected) against the converted pools.
func TestPlacementMatchesNutcracker(t *testing.T) {
	servers, cases := readNutcrackerGolden(t, "../hashkit/testdata/nutcracker_placement.txt")
	var entries []string
	for i, s := range servers {
		switch {
		case s.named:
			// The address of a named server does not affect placement.
			entries = append(entries, fmt.Sprintf("127.0.0.1:%d:%d %s", 7000+i, s.weight, s.label))
		default:
			entries = append(entries, fmt.Sprintf("%s:%d", s.label, s.weight))
		}
	}
	var y strings.Builder
	for i, c := range cases {
		fmt.Fprintf(&y, "case%d:\n  listen: 127.0.0.1:%d\n  redis: true\n  hash: %s\n  distribution: %s\n", i, 20000+i, c.hash, c.dist)
		if c.tag != "" {
			fmt.Fprintf(&y, "  hash_tag: %q\n", c.tag)
		}
		y.WriteString("  servers:\n")
		for _, e := range entries {
			fmt.Fprintf(&y, "   - %s\n", e)
		}
	}
	out, _, err := Convert([]byte(y.String()), "golden.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(out, "golden.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		cp := cfg.Pools[i]
		keys := hashkittest.GoldenKeys(len(c.servers))
		got := placement(t, cp.Hash, cp.HashTag, cp.Distribution, configNodes(cp), c.live, keys)
		for k := range keys {
			if want := int(c.servers[k] - '0'); got[k] != want {
				t.Fatalf("case %s/%s tag %q live %v: key %d (%q) on server %d, nutcracker used %d",
					c.hash, c.dist, c.tag, c.live, k, keys[k], got[k], want)
			}
		}
	}
}

type goldenServer struct {
	label  string
	named  bool
	weight int
}

type goldenCase struct {
	hash, dist, tag string
	live            []bool
	servers         string
}

// readNutcrackerGolden reads pkg/hashkit's recorded placements (format
// described in the file's header).
func readNutcrackerGolden(t *testing.T, path string) ([]goldenServer, []goldenCase) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var servers []goldenServer
	var cases []goldenCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		fs := strings.Fields(line)
		switch {
		case fs[0] == "server" && len(fs) == 4:
			w, err := strconv.Atoi(fs[3])
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			servers = append(servers, goldenServer{fs[1], fs[2] == "named", w})
		case fs[0] == "case" && len(fs) == 6:
			c := goldenCase{hash: fs[1], dist: fs[2], tag: fs[3], servers: fs[5]}
			if c.tag == "-" {
				c.tag = ""
			}
			for _, b := range fs[4] {
				c.live = append(c.live, b == '1')
			}
			cases = append(cases, c)
		default:
			t.Fatalf("bad line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(servers) < 4 || len(cases) < 24 {
		t.Fatalf("%s: only %d servers and %d cases", path, len(servers), len(cases))
	}
	return servers, cases
}
