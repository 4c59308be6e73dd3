package convert

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// corpus returns the .yml files of dir, sorted.
func corpus(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no corpus in %s", dir)
	}
	return files
}

// checkGolden compares got with the file at path, or rewrites it with
// -update. An empty got means the file must not exist.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if len(got) == 0 {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && len(got) == 0 {
		return
	}
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update after checking the change)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

func readFileErr(path string) ([]byte, error) { return os.ReadFile(path) }

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := readFileErr(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden converts every valid corpus file and compares the HCL and the
// warnings with testdata/NAME.hcl and testdata/NAME.warnings.
func TestGolden(t *testing.T) {
	for _, file := range corpus(t, "testdata") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src := readFile(t, file)
			out, warns, err := Convert(src, file)
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			if _, err := config.Parse(out, file+".hcl"); err != nil {
				t.Fatalf("the output does not load: %v\n%s", err, out)
			}
			again, warns2, _ := Convert(src, file)
			if !bytes.Equal(out, again) || strings.Join(warns, "\n") != strings.Join(warns2, "\n") {
				t.Fatal("Convert is not deterministic")
			}
			base := strings.TrimSuffix(file, ".yml")
			checkGolden(t, base+".hcl", out)
			var w []byte
			for _, s := range warns {
				w = append(w, s...)
				w = append(w, '\n')
			}
			checkGolden(t, base+".warnings", w)
		})
	}
}

// TestErrors converts the files twemproxy rejects (testdata/invalid) and
// those nuthatch cannot express (testdata/unsupported), and compares the
// error text with NAME.err.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		kind error
	}{
		{"testdata/invalid", ErrInvalid},
		{"testdata/unsupported", ErrUnsupported},
	} {
		for _, file := range corpus(t, tc.dir) {
			t.Run(filepath.Base(file), func(t *testing.T) {
				out, warns, err := Convert(readFile(t, file), file)
				if err == nil {
					t.Fatalf("converted without error:\n%s", out)
				}
				if out != nil || warns != nil {
					t.Error("a failed conversion returned output or warnings")
				}
				if !errors.Is(err, tc.kind) {
					t.Errorf("error is not %v: %v", tc.kind, err)
				}
				var list ErrorList
				if !errors.As(err, &list) || len(list) == 0 {
					t.Fatalf("error %T is not a non-empty ErrorList", err)
				}
				for _, e := range list {
					if !errors.Is(e, ErrInvalid) && !errors.Is(e, ErrUnsupported) {
						t.Errorf("error without a sentinel: %v", e)
					}
				}
				checkGolden(t, strings.TrimSuffix(file, ".yml")+".err", []byte(err.Error()+"\n"))
			})
		}
	}
}

// TestNutcrackerAgrees runs the real nutcracker -t on the corpus: it must
// accept every valid and unsupported file and reject every invalid one,
// so the converter's notion of valid is twemproxy's.
func TestNutcrackerAgrees(t *testing.T) {
	bin, err := exec.LookPath("nutcracker")
	if err != nil {
		t.Skip("nutcracker is not installed; cannot compare with twemproxy's own checks")
	}
	accepts := func(file string) bool {
		out, err := exec.Command(bin, "-t", "-c", file).CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("syntax is invalid")) {
			t.Fatalf("nutcracker -t %s: %v\n%s", file, err, out)
		}
		return err == nil
	}
	for _, file := range corpus(t, "testdata") {
		// reuseport is a development-branch key that 0.5.0 refuses.
		want := filepath.Base(file) != "reuseport.yml"
		if got := accepts(file); got != want {
			t.Errorf("nutcracker -t %s: accepted=%v, want %v", file, got, want)
		}
	}
	for _, file := range corpus(t, "testdata/unsupported") {
		if !accepts(file) {
			t.Errorf("nutcracker -t rejects %s, which the converter calls valid but unsupported", file)
		}
	}
	for _, file := range corpus(t, "testdata/invalid") {
		if accepts(file) {
			t.Errorf("nutcracker -t accepts %s, which the converter rejects as invalid", file)
		}
	}
}

func TestErrorFormatting(t *testing.T) {
	e := &Error{File: "n.yml", Line: 3, Msg: "bad", Kind: ErrInvalid}
	if got := e.Error(); got != "n.yml:3: bad" {
		t.Errorf("Error() = %q", got)
	}
	e.Line = 0
	if got := e.Error(); got != "n.yml: bad" {
		t.Errorf("Error() without a line = %q", got)
	}
	list := ErrorList{e, {File: "n.yml", Line: 9, Msg: "worse", Kind: ErrUnsupported}}
	if got := list.Error(); got != "n.yml: bad\nn.yml:9: worse" {
		t.Errorf("ErrorList.Error() = %q", got)
	}
	if !errors.Is(list, ErrInvalid) || !errors.Is(list, ErrUnsupported) {
		t.Error("ErrorList does not unwrap to its sentinels")
	}
}

func TestStrtolOctal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0666", 0o666, true},
		{"777", 0o777, true},
		{"  0644", 0o644, true},
		{"+0600", 0o600, true},
		{"-1", -1, true},
		{"0999", 0, true},
		{"0x1ff", 0, true},
		{"abc", 0, true},
		{"", 0, true},
		{"7777777777777777777777", 0, false},
	} {
		got, ok := strtolOctal(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("strtolOctal(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAtoi(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true},
		{"007", 7, true},
		{"2147483647", 2147483647, true},
		{"2147483648", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1.5", 0, false},
		{"", 0, false},
		{" 1", 0, false},
	} {
		got, ok := atoi(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("atoi(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestMigrationGuideExamples loads every hcl example of the migration guide.
func TestMigrationGuideExamples(t *testing.T) {
	md := readFile(t, "../../docs/migrating-from-twemproxy.md")
	var blocks []string
	var cur *strings.Builder
	for _, line := range strings.Split(string(md), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```hcl":
			cur = new(strings.Builder)
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatal("no hcl examples found")
	}
	for i, b := range blocks {
		if _, err := config.Parse([]byte(b), fmt.Sprintf("example %d", i+1)); err != nil {
			t.Errorf("example %d does not load: %v\n%s", i+1, err, b)
		}
	}
}
