package reliability

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// The redis_auth password appears nowhere nuthatch writes: not in its log
// (at debug level, through failed and successful AUTHs and a reload), not
// on the stats or metrics listeners, not in `nuthatch -t` output for a valid
// or an invalid file.
func TestSecretNeverShown(t *testing.T) {
	const secret = "Sup3r-S3cret-pa55word"
	be := fakeserver.New(t, fakeserver.Redis)
	listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	statsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	conf := fmt.Sprintf(`worker_processes = 1
log {
  level = "trace"
}
stats {
  listen   = %q
  interval = "1s"
}
metrics {
  listen = %q
}
pool "secret" {
  listen     = %q
  protocol   = "redis"
  redis_auth = %q
  redis_db   = 1
  slowlog_slower_than = "1us"
  slowlog_log_keys    = true
  server %q {}
}
`, statsAddr, metricsAddr, listen, secret, be.Addr())
	path := filepath.Join(t.TempDir(), "nuthatch.hcl")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := harness.Start(t, harness.Binary(t), "-c", path)
	harness.WaitPort(t, "tcp", listen, 10*time.Second)

	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{Conn: c, r: newReader(c)}
	for _, step := range []struct{ req, want string }{
		{redisCmd("GET", "k"), "-NOAUTH"},
		{redisCmd("AUTH", "wrong-"+secret), "-WRONGPASS"},
		{redisCmd("AUTH", secret), "+OK"},
		{redisCmd("SET", "k", "v"), "+OK"},
		{redisCmd("GET", "k"), "$1"},
	} {
		cl.send(t, step.req)
		got, err := cl.redisReply()
		if err != nil || !strings.HasPrefix(got, step.want) {
			t.Fatalf("%q: %q, %v", step.req, got, err)
		}
	}
	c.Close()
	// A reload logs the configuration work again.
	p.Signal(1) // SIGHUP
	time.Sleep(1500 * time.Millisecond)

	var stats []byte
	if sc, err := net.DialTimeout("tcp", statsAddr, 2*time.Second); err == nil {
		sc.SetReadDeadline(time.Now().Add(3 * time.Second))
		stats, _ = io.ReadAll(sc)
		sc.Close()
	}
	if len(stats) == 0 {
		t.Error("no stats document")
	}
	var metrics []byte
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err == nil {
		metrics, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if len(metrics) == 0 {
		t.Error("no metrics")
	}
	check, _ := runOnce(t, "-t", "-c", path)
	// Broken files: an error next to the password, and the password
	// itself malformed (unquoted, so HCL sees a variable reference).
	var brokenOut string
	for i, edit := range [][2]string{
		{"redis_db   = 1", "redis_db   = \"one\""},
		{"redis_auth = \"" + secret + "\"", "redis_auth = " + secret},
	} {
		broken := filepath.Join(t.TempDir(), fmt.Sprintf("broken%d.hcl", i))
		os.WriteFile(broken, []byte(strings.Replace(conf, edit[0], edit[1], 1)), 0o600)
		out, code := runOnce(t, "-t", "-c", broken)
		if code == 0 {
			t.Errorf("-t accepted a broken file: %s", out)
		}
		brokenOut += out
	}
	for name, out := range map[string]string{
		"log": p.Output(), "stats": string(stats), "metrics": string(metrics),
		"-t": check, "-t on a broken file": brokenOut,
	} {
		if strings.Contains(out, secret) {
			i := strings.Index(out, secret)
			t.Errorf("the password appears in the %s output: …%s…", name, out[max(0, i-120):min(len(out), i+40)])
		}
	}
	if !strings.Contains(p.Output(), "level=debug") && !strings.Contains(p.Output(), "level=trace") {
		t.Errorf("no debug output to check:\n%s", p.Output())
	}
}

func runOnce(t *testing.T, args ...string) (string, int) {
	t.Helper()
	p := harness.Start(t, harness.Binary(t), args...)
	<-p.Done()
	return p.Output(), p.Cmd.ProcessState.ExitCode()
}

// Stats and metrics listen on loopback unless told otherwise.
func TestObservabilityLoopbackByDefault(t *testing.T) {
	cfg, err := config.Parse([]byte("pool \"a\" {\n  listen = \"127.0.0.1:22121\"\n  protocol = \"redis\"\n  server \"127.0.0.1:6379\" {}\n}\n"), "min.hcl")
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(cfg.Stats.Listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("default stats listen %q is not loopback", cfg.Stats.Listen)
	}
	if cfg.Metrics.Listen != "" {
		t.Errorf("metrics enabled by default on %q", cfg.Metrics.Listen)
	}
}
