package process

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

func TestWarnSecretsReadable(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		attrs string
		mode  os.FileMode
		warn  bool
	}{
		{`redis_auth = "pw"`, 0o644, true},
		{`redis_auth = "pw"`, 0o640, false},
		{``, 0o644, false},
	} {
		path := filepath.Join(dir, "n.hcl")
		src := "pool \"p\" {\n listen = \"127.0.0.1:22121\"\n protocol = \"redis\"\n " + c.attrs + "\n server \"127.0.0.1:6379\" {}\n}\n"
		if err := os.WriteFile(path, []byte(src), c.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, c.mode)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		log := logrus.New()
		var out strings.Builder
		log.SetOutput(io.MultiWriter(&out))
		if got := warnSecretsReadable(cfg, logrus.NewEntry(log)); got != c.warn {
			t.Errorf("%q mode %o: warned %v", c.attrs, c.mode, got)
		}
		if strings.Contains(out.String(), "pw\"") {
			t.Errorf("the warning shows the password: %s", out.String())
		}
	}
}
