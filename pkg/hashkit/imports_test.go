package hashkit

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestNoIO keeps the package free of I/O: its non-test files may import
// only pure computation packages.
func TestNoIO(t *testing.T) {
	allowed := map[string]bool{
		"bytes": true, "cmp": true, "crypto/md5": true, "encoding/binary": true,
		"errors": true, "fmt": true, "hash/crc32": true, "math": true,
		"math/rand/v2": true, "slices": true, "strconv": true, "strings": true,
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[path] {
				t.Errorf("%s imports %q; hashkit must stay free of I/O", name, path)
			}
		}
	}
}
