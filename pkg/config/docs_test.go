package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const docsPath = "../../docs/configuration.md"

// hclBlock is one ```hcl fenced block of a markdown file.
type hclBlock struct {
	line int // of the opening fence
	src  []byte
}

func fencedHCL(t *testing.T, md []byte) []hclBlock {
	t.Helper()
	var (
		blocks []hclBlock
		cur    *hclBlock
		n      int
	)
	sc := bufio.NewScanner(bytes.NewReader(md))
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```hcl":
			cur = &hclBlock{line: n}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.src = append(cur.src, line...)
			cur.src = append(cur.src, '\n')
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("unterminated hcl block at line %d", cur.line)
	}
	return blocks
}

func TestDocsExamplesParse(t *testing.T) {
	md, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedHCL(t, md)
	if len(blocks) < 4 {
		t.Fatalf("found %d hcl blocks in %s; the extractor or the document is broken", len(blocks), docsPath)
	}
	for _, b := range blocks {
		name := fmt.Sprintf("configuration.md:%d", b.line)
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(b.src, name); err != nil {
				t.Errorf("example does not parse:\n%v", err)
			}
		})
	}
}

// TestDocsCoverEveryAttribute fails when an attribute or block is added to
// the schema without being documented.
func TestDocsCoverEveryAttribute(t *testing.T) {
	md, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			name, kind, _ := strings.Cut(f.Tag.Get("hcl"), ",")
			switch kind {
			case "optional", "attr", "block":
				if !bytes.Contains(md, []byte("`"+name+"`")) {
					t.Errorf("%s %q is not documented in %s", kind, name, docsPath)
				}
			}
			if kind == "block" {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[rawConfig]())
	if len(seen) < 6 {
		t.Fatalf("walked only %d schema types", len(seen))
	}
}

func TestEtcExamplesParse(t *testing.T) {
	files, err := filepath.Glob("../../etc/nuthatch/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no example configurations under etc/nuthatch")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if _, err := Load(path); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
}

func TestExampleConfig(t *testing.T) {
	cfg, err := Load("../../etc/nuthatch/example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.WorkerProcessesAuto || cfg.Stats.Listen != "127.0.0.1:22222" || len(cfg.Pools) != 2 {
		t.Fatalf("unexpected example: %+v", cfg)
	}
	want := []struct {
		name, listen string
		proto        Protocol
		servers      []string
	}{
		{"redis", "127.0.0.1:22121", ProtocolRedis, []string{"127.0.0.1:6380", "127.0.0.1:6381"}},
		{"memcache", "127.0.0.1:22122", ProtocolMemcache, []string{"127.0.0.1:11212", "127.0.0.1:11213"}},
	}
	for i, w := range want {
		p := cfg.Pools[i]
		var servers []string
		for _, s := range p.Servers {
			servers = append(servers, s.Address.Addr)
		}
		if p.Name != w.name || p.Listen.Addr != w.listen || p.Protocol != w.proto || !reflect.DeepEqual(servers, w.servers) {
			t.Errorf("pool %d = %v %v; want %+v", i, p, servers, w)
		}
	}
}
