package convert

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// FuzzConvert feeds arbitrary YAML to Convert. It must not panic; a
// success must load in nuthatch and be reproducible; a failure must carry
// a sentinel on every error.
func FuzzConvert(f *testing.F) {
	for _, dir := range []string{"testdata", "testdata/invalid", "testdata/unsupported"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
		for _, file := range files {
			b, err := readFileErr(file)
			if err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		out, warns, err := Convert(src, "fuzz.yml")
		if err != nil {
			if out != nil || warns != nil {
				t.Fatal("output alongside an error")
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T is not a non-empty ErrorList", err)
			}
			for _, e := range list {
				if !errors.Is(e, ErrInvalid) && !errors.Is(e, ErrUnsupported) {
					t.Fatalf("error without a sentinel: %v", e)
				}
			}
			return
		}
		if _, err := config.Parse(out, "fuzz.hcl"); err != nil {
			t.Fatalf("output does not load: %v\n%s", err, out)
		}
		again, _, _ := Convert(src, "fuzz.yml")
		if !bytes.Equal(out, again) {
			t.Fatal("not deterministic")
		}
	})
}
