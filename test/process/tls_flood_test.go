package process

import (
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// TestTLSHandshakeFloodOneWorker: rounds of 1,000 parallel TLS handshakes
// on the one worker that also serves plaintext clients (one pool, listen
// and tls.listen). Every round completes and the plaintext clients keep
// being served; their p99 before and during, and the handshake rate, are
// reported, not asserted (the box is shared).
func TestTLSHandshakeFloodOneWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	leaf := ca.Leaf(t, "proxy", "localhost")
	be := harness.Redis(t)
	plain, secure := harness.FreePort(t), harness.FreePort(t)
	conf := filepath.Join(dir, "n.hcl")
	os.WriteFile(conf, []byte(fmt.Sprintf(`worker_processes = 1
stats {
  listen = ""
}
pool "p" {
  listen = "127.0.0.1:%d"
  protocol = "redis"
  tls {
    listen = "127.0.0.1:%d"
    cert = %q
    key = %q
  }
  server %q {}
}
`, plain, secure, leaf.CertFile, leaf.KeyFile, be.Addr)), 0o644)
	harness.Start(t, harness.Binary(t), "-c", conf)
	harness.WaitPort(t, "tcp", fmt.Sprintf("127.0.0.1:%d", plain), 10*time.Second)
	harness.WaitPort(t, "tcp", fmt.Sprintf("127.0.0.1:%d", secure), 10*time.Second)

	// Both sides are redis-benchmark (C, one thread each), so that no Go
	// scheduler shared with the flood's client handshakes skews the
	// plaintext latency.
	harness.Need(t, "redis-benchmark")
	bench := func(args ...string) (rps, p99 float64) {
		out, err := exec.Command("redis-benchmark", append([]string{"-h", "127.0.0.1", "--csv"}, args...)...).Output()
		if err != nil {
			t.Fatalf("redis-benchmark %v: %v", args, err)
		}
		recs, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
		if err != nil || len(recs) < 2 {
			t.Fatalf("redis-benchmark output %q", out)
		}
		rps, _ = strconv.ParseFloat(recs[1][1], 64)
		p99, _ = strconv.ParseFloat(recs[1][6], 64)
		return rps, p99
	}
	plainArgs := []string{"-p", fmt.Sprint(plain), "-c", "4", "-n", "20000", "-t", "get"}
	baseRPS, base := bench(plainArgs...)
	// 1,000 clients connecting at once over TLS, again and again while the
	// plaintext clients are measured.
	stop := make(chan struct{})
	var rounds, handshakes atomic.Int64
	var floodTime atomic.Int64
	var fwg sync.WaitGroup
	fwg.Add(1)
	go func() {
		defer fwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			out, err := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", fmt.Sprint(secure), "--tls", "--cacert", ca.File,
				"--sni", "localhost", "-c", "1000", "-n", "1000", "-t", "ping", "--csv").CombinedOutput()
			if err != nil {
				t.Errorf("TLS flood: %v %s", err, out)
				return
			}
			floodTime.Add(int64(time.Since(start)))
			rounds.Add(1)
			handshakes.Add(1000)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	duringRPS, during := bench(plainArgs...)
	close(stop)
	fwg.Wait()
	secs := time.Duration(floodTime.Load()).Seconds()
	t.Logf("one worker: plaintext GET (4 clients) p99 %.2f ms at %.0f req/s alone, %.2f ms at %.0f req/s during rounds of 1,000 "+
		"parallel TLS handshakes (%d rounds, %.0f handshakes/s including connect and one PING each)",
		base, baseRPS, during, duringRPS, rounds.Load(), float64(handshakes.Load())/secs)
	if rounds.Load() == 0 {
		t.Fatal("no flood round finished")
	}
}
