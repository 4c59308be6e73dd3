package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// TestTLSHandshakeFloodPlaintextLatency: 1,000 parallel TLS handshakes on
// the loop that also serves plaintext clients. Every handshake must finish
// and the plaintext clients keep being served; their p99 with and without
// the flood, and the handshake rate, are reported (timings are not
// asserted: the box is shared).
func TestTLSHandshakeFloodPlaintextLatency(t *testing.T) {
	if testing.Short() || raceEnabled {
		// Under the race detector a handshake costs ten times as much: the
		// flood would measure the detector.
		t.Skip("flood")
	}
	harness.Need(t, "redis-server")
	rig := newTLSRig(t)
	be := harness.Redis(t)
	hcl := fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n  server %q {}\n}\n"+
		"pool \"s\" {\n  listen = \"127.0.0.1:2\"\n  protocol = \"redis\"\n%s  server %q {}\n}\n", be.Addr, rig.block(""), be.Addr)
	cfg, err := config.Parse([]byte(hcl), "flood.hcl")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	px, err := New(cfg, logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	px.Start()
	t.Cleanup(px.Close)
	addrs := map[string]string{}
	for _, name := range []string{"p", "s"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[name] = ln.Addr().String()
		if err := px.Serve(name, ln); err != nil {
			t.Fatal(err)
		}
	}

	// measure runs 4 plaintext clients doing GET round trips for d.
	measure := func(d time.Duration) (p99 time.Duration, n int) {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", addrs["p"])
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				var mine []time.Duration
				for end := time.Now().Add(d); time.Now().Before(end); {
					start := time.Now()
					io.WriteString(c, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := r.ReadString('\n'); err != nil {
						t.Error(err)
						return
					}
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		if len(lat) == 0 {
			return 0, 0
		}
		return lat[len(lat)*99/100], len(lat)
	}
	base, nBase := measure(time.Second)

	const flood = 1000
	var ok, failed atomic.Int64
	var conns sync.Map
	start := time.Now()
	var fwg sync.WaitGroup
	floodDone := make(chan time.Duration, 1)
	for i := 0; i < flood; i++ {
		fwg.Add(1)
		go func(i int) {
			defer fwg.Done()
			d := net.Dialer{Timeout: 10 * time.Second}
			c, err := tls.DialWithDialer(&d, "tcp", addrs["s"], rig.clientConfig())
			if err != nil {
				failed.Add(1)
				return
			}
			ok.Add(1)
			conns.Store(i, c)
		}(i)
	}
	go func() { fwg.Wait(); floodDone <- time.Since(start) }()
	during, nDuring := measure(1500 * time.Millisecond)
	took := <-floodDone
	conns.Range(func(_, v any) bool { v.(*tls.Conn).Close(); return true })
	if failed.Load() > 0 {
		t.Errorf("%d of %d handshakes failed", failed.Load(), flood)
	}
	t.Logf("plaintext GET p99: %v alone (%d requests), %v during %d parallel TLS handshakes (%d requests); "+
		"the handshakes took %v (%.0f/s, client and server on the same 2 CPUs)",
		base, nBase, during, flood, nDuring, took, float64(ok.Load())/took.Seconds())
	if nDuring == 0 || during > time.Second {
		// Only a starved loop (handshakes on the loop's P) comes near this.
		t.Fatalf("plaintext clients starved during the flood: %d requests, p99 %v", nDuring, during)
	}
}
