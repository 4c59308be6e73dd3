package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the .golden files under testdata")

// goldenCPUs is the usable CPU count in tests ("auto": 4 workers), so goldens do not depend
// on the machine.
const goldenCPUs = 8

func TestMain(m *testing.M) {
	numCPU = func() int { return goldenCPUs }
	os.Exit(m.Run())
}

func TestValidGolden(t *testing.T) {
	files := globHCL(t, "testdata/valid")
	if len(files) < 10 {
		t.Fatalf("only %d valid cases", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkGolden(t, path, renderJSON(t, cfg))
		})
	}
}

func TestInvalidGolden(t *testing.T) {
	files := globHCL(t, "testdata/invalid")
	if len(files) < 25 {
		t.Fatalf("only %d invalid cases", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", cfg)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error is %T, not *LoadError: %v", err, err)
			}
			for _, d := range le.Diags {
				if d.Subject == nil || d.Subject.Filename != path {
					t.Errorf("diagnostic without a source range: %v", d)
				}
			}
			var text bytes.Buffer
			if err := le.WriteText(&text, 100, false); err != nil {
				t.Fatal(err)
			}
			out := err.Error() + "\n\n" + text.String()
			if strings.Contains(out, "hunter2") {
				t.Errorf("diagnostics leak a redis_auth value:\n%s", out)
			}
			checkGolden(t, path, []byte(out))
		})
	}
}

func globHCL(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func checkGolden(t *testing.T, hclPath string, got []byte) {
	t.Helper()
	golden := strings.TrimSuffix(hclPath, ".hcl") + ".golden"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", golden, got, want)
	}
}

// renderJSON renders the redacted config as indented JSON with durations
// written as Go duration strings, fields in declaration order.
func renderJSON(t *testing.T, cfg *Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	writeJSON(t, &buf, reflect.ValueOf(cfg.Redacted()))
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		t.Fatalf("indent %s: %v", buf.Bytes(), err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

var durationType = reflect.TypeFor[time.Duration]()

func writeJSON(t *testing.T, b *bytes.Buffer, v reflect.Value) {
	switch {
	case v.Type() == durationType:
		fmt.Fprintf(b, "%q", time.Duration(v.Int()).String())
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			b.WriteString("null")
			return
		}
		writeJSON(t, b, v.Elem())
	case v.Kind() == reflect.Struct && v.Type().PkgPath() != durationType.PkgPath() && v.Type().PkgPath() != reflect.TypeFor[Config]().PkgPath():
		// Another package's value (a compiled acl.User): its exported
		// fields only.
		enc := json.NewEncoder(b)
		if err := enc.Encode(v.Interface()); err != nil {
			t.Fatal(err)
		}
	case v.Kind() == reflect.Struct:
		b.WriteByte('{')
		for i := range v.NumField() {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, "%q:", v.Type().Field(i).Name)
			writeJSON(t, b, v.Field(i))
		}
		// The derived ring identity is part of what the goldens pin down.
		if s, ok := v.Addr().Interface().(*Server); ok {
			fmt.Fprintf(b, ",%q:", "PlacementName")
			writeJSON(t, b, reflect.ValueOf(s.PlacementName()))
		}
		b.WriteByte('}')
	case v.Kind() == reflect.Slice:
		b.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(t, b, v.Index(i))
		}
		b.WriteByte(']')
	default:
		enc := json.NewEncoder(b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v.Interface()); err != nil {
			t.Fatal(err)
		}
	}
}
