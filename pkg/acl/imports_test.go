package acl

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestNoIO keeps the package free of I/O: its non-test files import only
// computation packages and the RESP codec (for the command table).
func TestNoIO(t *testing.T) {
	allowed := map[string]bool{
		"bytes": true, "compress/gzip": true, "crypto/sha256": true, "crypto/subtle": true,
		"embed": true, "encoding/hex": true, "errors": true, "fmt": true, "io": true,
		"sort": true, "strings": true, "sync": true,
		"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp": true,
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
				t.Errorf("%s imports %q; acl must stay free of I/O", name, path)
			}
		}
	}
}
