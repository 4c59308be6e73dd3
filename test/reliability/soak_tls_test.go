package reliability

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// tlsRig is the soak's TLS pool "t": a plaintext listen and a tls.listen
// serving the same keys, over two redis-servers that speak only TLS and ask
// for a client certificate (server_tls with cert and key), all signed by
// one test CA. Its certificate and its client certificate are rotated
// under the load (rotate).
type tlsRig struct {
	ca       *tlstest.CA
	leaf     *tlstest.Leaf // the listener's, rotated
	client   *tlstest.Leaf // server_tls's client certificate, rotated
	server   *tlstest.Leaf // the redis-servers', fixed
	plainL   string
	tlsL     string
	backends []*backendProc

	rotations  int
	verified   int          // acknowledged TLS writes read back at the end
	handshakes atomic.Int64 // checked by rotate and checkServing
	ok, failed atomic.Int64 // the TLS writers' requests
	wrong      atomic.Int64
	errs       sync.Map
}

func startTLSRig(t *testing.T) *tlsRig {
	t.Helper()
	dir := t.TempDir()
	r := &tlsRig{ca: tlstest.NewCA(t, dir, "ca")}
	r.leaf = r.ca.Leaf(t, "proxy", "rot0", month())
	r.client = r.ca.Leaf(t, "proxy-client", "client0", month())
	r.server = r.ca.Leaf(t, "backend", "backend")
	for i := 0; i < 2; i++ {
		be := &backendProc{kind: "redis", port: harness.FreePort(t), dir: t.TempDir(),
			tls: []string{"--tls-cert-file", r.server.CertFile, "--tls-key-file", r.server.KeyFile,
				"--tls-ca-cert-file", r.ca.File, "--tls-auth-clients", "yes"}}
		be.start(t)
		r.backends = append(r.backends, be)
	}
	r.plainL = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	r.tlsL = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	return r
}

// month: a leaf valid for 30 days, so that the master does not warn at
// every reload that it expires within 14.
func month() tlstest.Options { return tlstest.Options{NotAfter: time.Now().Add(30 * 24 * time.Hour)} }

// pool is the configuration of pool name.
func (r *tlsRig) pool(name, timeout string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pool %q {\n  listen = %q\n  protocol = \"redis\"\n  timeout = %q\n", name, r.plainL, timeout)
	fmt.Fprintf(&b, "  tls {\n    listen = %q\n    cert = %q\n    key = %q\n  }\n", r.tlsL, r.leaf.CertFile, r.leaf.KeyFile)
	fmt.Fprintf(&b, "  server_tls {\n    ca = %q\n    cert = %q\n    key = %q\n  }\n", r.ca.File, r.client.CertFile, r.client.KeyFile)
	for _, be := range r.backends {
		fmt.Fprintf(&b, "  server %q {}\n", be.addr())
	}
	b.WriteString("}\n")
	return b.String()
}

// clientConfig trusts the test CA; with cache, sessions are resumed (the
// writers), without, every handshake shows the certificate (the checks).
func (r *tlsRig) clientConfig(cache bool) *tls.Config {
	c := &tls.Config{RootCAs: r.ca.Pool, ServerName: "localhost"}
	if cache {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return c
}

func (r *tlsRig) dial() (*client, *big.Int, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: r.clientConfig(false)}
	c, err := d.Dial("tcp", r.tlsL)
	r.handshakes.Add(1)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS dial: %w", err)
	}
	tc := c.(*tls.Conn)
	return &client{Conn: tc, r: bufio.NewReader(tc)}, tc.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// roundTrip writes a new value to key and reads it back on c.
func roundTrip(c *client, key string, i int) error {
	v := strconv.Itoa(i)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(redisCmd("SET", key, v) + redisCmd("GET", key))); err != nil {
		return err
	}
	for _, want := range []string{"+OK\r\n", bulk(v)} {
		got, err := c.redisReply()
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s: got %q, want %q", key, got, want)
		}
	}
	return nil
}

// fail, addOK and addWrong count a TLS writer's request; on nil, nothing
// (another pool's writer).
func (r *tlsRig) fail(err error) {
	if r == nil {
		return
	}
	r.failed.Add(1)
	r.errs.Store(portRE.ReplaceAllString(err.Error(), ":N"), true)
}

func (r *tlsRig) addOK() {
	if r != nil {
		r.ok.Add(1)
	}
}

func (r *tlsRig) addWrong() {
	if r != nil {
		r.wrong.Add(1)
	}
}

func (r *tlsRig) errSummary() []string {
	var msgs []string
	r.errs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
	return msgs
}

// certErrors are the writers' errors a certificate could cause: a rotation
// that broke a handshake (an unknown CA, a key that is not the
// certificate's, an alert from the proxy) shows here; the faults' resets
// and refusals do not.
func (r *tlsRig) certErrors() []string {
	var out []string
	for _, m := range r.errSummary() {
		if strings.Contains(m, "x509") || strings.Contains(m, "certificate") || strings.Contains(m, "remote error") {
			out = append(out, m)
		}
	}
	return out
}

// checkServing: 8 new handshakes all show the certificate last written
// (after a reload that started new workers, or a worker respawned after a
// kill: the master gives them the material it holds).
func (ch *chaos) checkServing(when string) {
	r := ch.tlsr
	want := r.leaf.Cert.SerialNumber
	for i := 0; i < 8; i++ {
		c, serial, err := r.dial()
		if err != nil {
			ch.t.Errorf("%s: %v", when, err)
			continue
		}
		c.Close()
		if serial.Cmp(want) != 0 {
			ch.t.Errorf("%s: a new TLS connection shows certificate serial %v, the current is %v", when, serial, want)
		}
	}
}

// rotate writes a new listener certificate and a new client certificate
// (new keys and serials, the same CA) over the files and reloads: the
// configuration text is unchanged, so the running workers swap them in
// place. It checks that the master took that path, that TLS connections
// opened before keep working, that every handshake after it succeeds and,
// once both workers have swapped, shows the new serial, that no worker
// was replaced, and that the TLS writers see no error meanwhile (from 2 s
// after the last fault, as the end of the soak: a reload's TLS clients,
// which are not handed over, and a killed worker's fail at once; a
// restarted server's for a moment).
func (ch *chaos) rotate(workers int) {
	t, r := ch.t, ch.tlsr
	r.rotations++
	k := r.rotations
	if d := 2*time.Second - time.Since(time.Unix(0, ch.lastFault.Load())); d > 0 {
		time.Sleep(d)
	}
	f0 := r.failed.Load()
	defer func() {
		if n := r.failed.Load() - f0; n > 0 {
			t.Errorf("rotation %d: the TLS writers saw %d errors during it (%v)", k, n, r.errSummary())
		}
	}()
	before := ch.waitWorkers(workers)
	old := r.leaf.Cert.SerialNumber
	// Probe keys on the server that is never restarted.
	var probes []*client
	for i := 0; i < 4; i++ {
		c, serial, err := r.dial()
		if err != nil {
			t.Errorf("rotation %d: before it: %v", k, err)
			continue
		}
		defer c.Close()
		if serial.Cmp(old) != 0 {
			t.Errorf("rotation %d: before it, a new connection shows serial %v, not the current %v", k, serial, old)
		}
		if err := roundTrip(c, ch.probeKey(i), 0); err != nil {
			t.Errorf("rotation %d: before it: %v", k, err)
			continue
		}
		probes = append(probes, c)
	}
	swaps := strings.Count(ch.proc.Output(), "only TLS certificates changed")
	r.leaf = r.ca.Leaf(t, "proxy", fmt.Sprintf("rot%d", k), month())
	r.client = r.ca.Leaf(t, "proxy-client", fmt.Sprintf("client%d", k), month())
	syscall.Kill(ch.master(), syscall.SIGHUP)
	for deadline := time.Now().Add(10 * time.Second); strings.Count(ch.proc.Output(), "only TLS certificates changed") == swaps; {
		if time.Now().After(deadline) {
			t.Errorf("rotation %d: the master did not swap the certificates in place", k)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Each worker swaps on its own message: wait until 8 handshakes in a
	// row show the new serial, then every one must.
	for run, deadline := 0, time.Now().Add(10*time.Second); run < 8; {
		if time.Now().After(deadline) {
			t.Errorf("rotation %d: 10 s after the reload, not 8 handshakes in a row show the new certificate", k)
			return
		}
		c, serial, err := r.dial()
		if err != nil {
			t.Errorf("rotation %d: a handshake during the swap: %v", k, err)
			run = 0
			time.Sleep(50 * time.Millisecond)
			continue
		}
		c.Close()
		switch {
		case serial.Cmp(r.leaf.Cert.SerialNumber) == 0:
			run++
		case serial.Cmp(old) == 0:
			run = 0
		default:
			t.Errorf("rotation %d: a handshake shows serial %v, neither the old %v nor the new %v", k, serial, old, r.leaf.Cert.SerialNumber)
			run = 0
		}
	}
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 8; i++ {
		c, serial, err := r.dial()
		if err != nil {
			t.Errorf("rotation %d: a handshake after the swap: %v", k, err)
			continue
		}
		if serial.Cmp(r.leaf.Cert.SerialNumber) != 0 {
			t.Errorf("rotation %d: a handshake after the swap shows serial %v, not the new %v", k, serial, r.leaf.Cert.SerialNumber)
		}
		if err := roundTrip(c, ch.probeKey(i), k); err != nil {
			t.Errorf("rotation %d: a connection made after the swap: %v", k, err)
		}
		c.Close()
	}
	for i, c := range probes {
		if err := roundTrip(c, ch.probeKey(i), k); err != nil {
			t.Errorf("rotation %d: a connection opened before it: %v", k, err)
		}
	}
	now := children(ch.master())
	for _, p := range before {
		if len(now) != workers || !containsPid(now, p) {
			t.Errorf("rotation %d: workers %v -> %v (the swap replaces none)", k, before, now)
			break
		}
	}
}

// probeKey is the rotation checks' key i, on the TLS pool's server 0.
func (ch *chaos) probeKey(i int) string {
	for n := 0; ; n++ {
		if k := fmt.Sprintf("tlsprobe:%d:%d", i, n); ch.owner["t"](k) == 0 {
			return k
		}
	}
}
