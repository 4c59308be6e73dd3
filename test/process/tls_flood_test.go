package process

import (
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// and tls.listen), and, as the control, the same flood against another
// nuthatch process with its own worker. On a small box the flood's client
// and the handshakes' CPU slow every process down; the control measures
// that, so that "on the same worker" against "elsewhere on the box" is
// what the worker's design adds. Every round completes and the plaintext
// clients keep being served; the p99s are reported, not asserted (the
// box is shared).
func TestTLSHandshakeFloodOneWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	harness.Need(t, "redis-benchmark")
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	leaf := ca.Leaf(t, "proxy", "localhost")
	be := harness.Redis(t)
	start := func(name string) (plain, secure int) {
		plain, secure = harness.FreePort(t), harness.FreePort(t)
		conf := filepath.Join(dir, name+".hcl")
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
		return plain, secure
	}
	plain, secure := start("measured")
	_, otherSecure := start("other")

	// Both sides are redis-benchmark (C, one thread each), so that no Go
	// scheduler shared with the flood's client handshakes skews the
	// plaintext latency.
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
	var handshakes atomic.Int64
	var floodTime atomic.Int64
	// during measures the plaintext clients while 1,000 clients connect
	// at once over TLS to port, again and again.
	during := func(port int) float64 {
		stop := make(chan struct{})
		var rounds atomic.Int64
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
				begin := time.Now()
				out, err := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "--tls", "--cacert", ca.File,
					"--sni", "localhost", "-c", "1000", "-n", "1000", "-t", "ping", "--csv").CombinedOutput()
				if err != nil {
					t.Errorf("TLS flood: %v %s", err, out)
					return
				}
				floodTime.Add(int64(time.Since(begin)))
				rounds.Add(1)
				handshakes.Add(1000)
			}
		}()
		time.Sleep(200 * time.Millisecond)
		_, p99 := bench(plainArgs...)
		close(stop)
		fwg.Wait()
		if rounds.Load() == 0 {
			t.Fatal("no flood round finished")
		}
		return p99
	}
	// Alternating rounds: alone, flood on the same worker, flood on the
	// other process; medians.
	var alone, same, other []float64
	for r := 0; r < 3; r++ {
		_, p := bench(plainArgs...)
		alone = append(alone, p)
		if r%2 == 0 {
			same = append(same, during(secure))
			other = append(other, during(otherSecure))
		} else {
			other = append(other, during(otherSecure))
			same = append(same, during(secure))
		}
	}
	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	a, s, o := med(alone), med(same), med(other)
	secs := time.Duration(floodTime.Load()).Seconds()
	t.Logf("one worker, plaintext GET (4 clients), p99 medians of 3 rounds: %.2f ms alone; %.2f ms (%.1f×) while 1,000 TLS clients connect at once to the same worker; "+
		"%.2f ms (%.1f×) while they connect to another nuthatch on the box (the control); same worker ÷ control %.2f×; %.0f handshakes/s including connect and one PING each "+
		"(alone %v, same %v, other %v)",
		a, s, s/a, o, o/a, s/o, float64(handshakes.Load())/secs, alone, same, other)
}
