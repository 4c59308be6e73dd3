package hashkit

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit/hashkittest"
)

const goldenFile = "testdata/nutcracker_placement.txt"

// goldenServer is one "servers:" entry of the recorded configuration.
type goldenServer struct {
	label  string // host:port, unix path, or the name when named
	named  bool
	weight int
}

func (s goldenServer) node() Node { return Node{Name: PointName(s.label, s.named), Weight: s.weight} }

// goldenCase is one pool's recorded placement: digit i is the server that
// nutcracker stored key i on.
type goldenCase struct {
	hash, dist, tag string
	live            []bool
	servers         string
}

func (c goldenCase) liveString() string {
	var b strings.Builder
	for _, l := range c.live {
		if l {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

func readGolden(t *testing.T) ([]goldenServer, []goldenCase) {
	t.Helper()
	f, err := os.Open(goldenFile)
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
	return servers, cases
}

func writeGolden(path string, servers []goldenServer, cases []goldenCase) error {
	var b strings.Builder
	b.WriteString("# Key placement recorded from a real nutcracker 0.5.0 (Debian) with redis\n")
	b.WriteString("# backends: go test ./pkg/hashkit -run TestNutcrackerPlacement -update\n")
	b.WriteString("# Keys are hashkittest.GoldenKeys(len(servers string)).\n")
	b.WriteString("# server <label> <named|unnamed> <weight>, in configuration order\n")
	b.WriteString("# case <hash> <distribution> <hash_tag or -> <live mask> <server index per key>\n")
	for _, s := range servers {
		named := "unnamed"
		if s.named {
			named = "named"
		}
		fmt.Fprintf(&b, "server %s %s %d\n", s.label, named, s.weight)
	}
	for _, c := range cases {
		tag := c.tag
		if tag == "" {
			tag = "-"
		}
		fmt.Fprintf(&b, "case %s %s %s %s %s\n", c.hash, c.dist, tag, c.liveString(), c.servers)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// predict is what this package places for a recorded case.
func predict(t *testing.T, servers []goldenServer, c goldenCase, keys [][]byte) string {
	t.Helper()
	nodes := make([]Node, len(servers))
	for i, s := range servers {
		nodes[i] = s.node()
	}
	p := mustPlacer(t, c.hash, c.tag, c.dist, nodes, c.live)
	out := make([]byte, len(keys))
	for i, k := range keys {
		out[i] = byte('0' + p.Server(k))
	}
	return string(out)
}

// TestGoldenPlacement replays placements recorded from real nutcracker.
func TestGoldenPlacement(t *testing.T) {
	servers, cases := readGolden(t)
	if len(servers) < 4 || len(cases) < 24 {
		t.Fatalf("golden file too small: %d servers, %d cases", len(servers), len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		name := fmt.Sprintf("%s/%s/tag=%q/live=%s", c.hash, c.dist, c.tag, c.liveString())
		seen[c.hash+"/"+c.dist] = true
		t.Run(name, func(t *testing.T) {
			keys := hashkittest.GoldenKeys(len(c.servers))
			got := predict(t, servers, c, keys)
			for i := range got {
				if got[i] != c.servers[i] {
					t.Fatalf("key %d (%q): placed on server %c, nutcracker used %c", i, keys[i], got[i], c.servers[i])
				}
			}
		})
	}
	for _, h := range HashNames() {
		for _, d := range []string{Ketama, Modula} {
			if !seen[h+"/"+d] {
				t.Errorf("golden file lacks %s/%s", h, d)
			}
		}
	}
}
