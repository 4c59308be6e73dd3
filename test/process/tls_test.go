package process

import (
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// tlsSetup is nuthatch with one TLS pool in front of two redis-servers.
type tlsSetup struct {
	*setup
	ca   *tlstest.CA
	leaf *tlstest.Leaf
	addr string
	dir  string
}

func startTLS(t *testing.T, workers int) *tlsSetup {
	t.Helper()
	dir := t.TempDir()
	ts := &tlsSetup{setup: &setup{conf: filepath.Join(dir, "nuthatch.hcl")}, dir: dir}
	ts.ca = tlstest.NewCA(t, dir, "ca")
	ts.leaf = ts.ca.Leaf(t, "proxy", "gen0")
	ts.backends = []*harness.Proc{harness.Redis(t), harness.Redis(t)}
	port := harness.FreePort(t)
	ts.addr = fmt.Sprintf("127.0.0.1:%d", port)
	var b strings.Builder
	fmt.Fprintf(&b, "worker_processes = %d\nworker_shutdown_timeout = \"5s\"\nstats {\n  listen = \"\"\n}\n", workers)
	fmt.Fprintf(&b, "pool \"tls\" {\n  listen = %q\n  protocol = \"redis\"\n  timeout = \"2s\"\n  tls {\n    cert = %q\n    key = %q\n  }\n",
		ts.addr, ts.leaf.CertFile, ts.leaf.KeyFile)
	for _, be := range ts.backends {
		fmt.Fprintf(&b, "  server %q {}\n", be.Addr)
	}
	b.WriteString("}\n")
	if err := os.WriteFile(ts.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ts.proxy = harness.Start(t, harness.Binary(t), "-c", ts.conf)
	harness.WaitPort(t, "tcp", ts.addr, 10*time.Second)
	waitWorkers(t, ts.proxy.Cmd.Process.Pid, workers, 5*time.Second)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(ts.proxy.Output(), "workers ready"); {
		if time.Now().After(deadline) {
			t.Fatalf("workers never ready:\n%s", ts.proxy.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ts
}

func (ts *tlsSetup) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: ts.ca.Pool, ServerName: "localhost"}
}

// subject is the CN of the certificate a new connection is shown.
func (ts *tlsSetup) subject(t *testing.T) string {
	t.Helper()
	c, err := tls.Dial("tcp", ts.addr, ts.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// roundTrip does a SET and GET on an open connection.
func roundTrip(c *tls.Conn, i int) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	v := strconv.Itoa(i)
	req := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$3\r\nold\r\n$%d\r\n%s\r\n*2\r\n$3\r\nGET\r\n$3\r\nold\r\n", len(v), v)
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	want := fmt.Sprintf("+OK\r\n$%d\r\n%s\r\n", len(v), v)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("got %q want %q", got, want)
	}
	return nil
}

type tlsLoad struct {
	ok, failed atomic.Int64
	errs       sync.Map
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startTLSLoad(addr string, cfg *tls.Config, n int) *tlsLoad {
	l := &tlsLoad{stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: cfg, PoolSize: 1, DialTimeout: time.Second, ReadTimeout: 3 * time.Second})
		l.wg.Add(1)
		go func(i int) {
			defer l.wg.Done()
			defer c.Close()
			for j := 0; ; j++ {
				select {
				case <-l.stop:
					return
				default:
				}
				k := fmt.Sprintf("tls:%d:%d", i, j%50)
				pipe := c.Pipeline()
				pipe.Set(ctx, k, j, 0)
				g := pipe.Get(ctx, k)
				_, err := pipe.Exec(ctx)
				if err == nil && g.Val() != strconv.Itoa(j) {
					err = fmt.Errorf("got %q want %d", g.Val(), j)
				}
				if err != nil {
					l.failed.Add(1)
					l.errs.Store(err.Error(), true)
				} else {
					l.ok.Add(1)
				}
			}
		}(i)
	}
	return l
}

func (l *tlsLoad) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.failed.Load() > 0 {
		var msgs []string
		l.errs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Errorf("%d of %d requests failed: %v", l.failed.Load(), l.failed.Load()+l.ok.Load(), msgs)
	}
	if l.ok.Load() == 0 {
		t.Error("the load made no request")
	}
	t.Logf("load: %d requests ok, %d failed", l.ok.Load(), l.failed.Load())
}

// TestTLSCertRotationUnderLoad: 16 TLS clients keep working while the
// certificate is replaced and the service reloaded 5 times; the workers
// stay (the material is swapped inside them), new connections see each new
// certificate, a connection opened before the first keeps working, and a
// broken key is refused with nothing changed.
func TestTLSCertRotationUnderLoad(t *testing.T) {
	ts := startTLS(t, 2)
	master := ts.proxy.Cmd.Process.Pid
	workers := waitWorkers(t, master, 2, time.Second)
	if got := ts.subject(t); got != "gen0" {
		t.Fatalf("first certificate %q", got)
	}
	old, err := tls.Dial("tcp", ts.addr, ts.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := roundTrip(old, 0); err != nil {
		t.Fatal(err)
	}
	l := startTLSLoad(ts.addr, ts.clientConfig(), 16)
	time.Sleep(300 * time.Millisecond)
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("gen%d", i)
		ts.ca.Leaf(t, "proxy", name)
		ts.proxy.Signal(syscall.SIGHUP)
		// Each worker swaps on its own message: wait until 8 connections
		// in a row (landing on both workers) get the new certificate.
		deadline := time.Now().Add(5 * time.Second)
		for run := 0; run < 8; {
			if ts.subject(t) == name {
				run++
				continue
			}
			run = 0
			if time.Now().After(deadline) {
				t.Fatalf("reload %d: new connections still get %q", i, ts.subject(t))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := roundTrip(old, i); err != nil {
			t.Fatalf("reload %d: the connection opened before: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if now := children(master); len(now) != 2 || !containsInt(now, workers[0]) || !containsInt(now, workers[1]) {
		t.Fatalf("workers changed over certificate reloads: %v -> %v", workers, now)
	}

	// A broken key: the reload fails, nothing changes.
	os.WriteFile(ts.leaf.KeyFile, []byte("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"), 0o600)
	out, code := runBinary(t, "-t", "-c", ts.conf)
	if code == 0 || !strings.Contains(out, ts.leaf.KeyFile) {
		t.Fatalf("-t with a broken key: exit %d, %q", code, out)
	}
	ts.proxy.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(ts.proxy.Output(), "reload failed"); {
		if time.Now().After(deadline) {
			t.Fatalf("broken key not refused:\n%s", ts.proxy.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := ts.subject(t); got != "gen5" {
		t.Fatalf("after a refused reload new connections get %q", got)
	}
	if err := roundTrip(old, 99); err != nil {
		t.Fatal(err)
	}
	l.finish(t)
	if now := children(master); len(now) != 2 || !containsInt(now, workers[0]) {
		t.Fatalf("workers changed: %v -> %v", workers, now)
	}
	if strings.Contains(ts.proxy.Output(), "MIIB") {
		t.Fatal("key material in the log")
	}
}

// TestTLSResumptionAcrossWorkers: the master's session ticket keys let a
// client resume on whichever worker its next connection lands, also after
// a certificate reload and in a new generation's workers.
func TestTLSResumptionAcrossWorkers(t *testing.T) {
	ts := startTLS(t, 2)
	cfg := ts.clientConfig()
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	dial := func() bool {
		c, err := tls.Dial("tcp", ts.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// TLS 1.3 tickets come after the handshake: a round trip reads them.
		if err := roundTrip(c, 1); err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().DidResume
	}
	dial()
	check := func(when string) {
		for i := 0; i < 12; i++ {
			if !dial() {
				t.Fatalf("%s: connection %d did not resume", when, i)
			}
		}
	}
	check("before a reload")
	ts.ca.Leaf(t, "proxy", "next")
	ts.proxy.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); ts.subject(t) != "next"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("certificate not reloaded")
		}
	}
	dial() // the session of the old certificate may be refused once
	check("after a certificate reload")

	// A reload that changes the configuration: new workers, the same keys.
	master := ts.proxy.Cmd.Process.Pid
	before := waitWorkers(t, master, 2, time.Second)
	b, _ := os.ReadFile(ts.conf)
	os.WriteFile(ts.conf, append(b, []byte("# changed\n")...), 0o644)
	ts.proxy.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		now := children(master)
		if len(now) == 2 && !containsInt(now, before[0]) && !containsInt(now, before[1]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new generation")
		}
	}
	check("after a new generation")
}

// TestTLSAndPlaintextListenersOnePool: tls.listen adds a TLS listener
// beside the pool's plaintext one; both serve the same keys, on every
// worker, and a reload keeps both.
func TestTLSAndPlaintextListenersOnePool(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	leaf := ca.Leaf(t, "proxy", "localhost")
	be := harness.Redis(t)
	plain, secure := harness.FreePort(t), harness.FreePort(t)
	conf := filepath.Join(dir, "n.hcl")
	os.WriteFile(conf, []byte(fmt.Sprintf(`worker_processes = 2
stats {
  listen = ""
}
pool "both" {
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
	p := harness.Start(t, harness.Binary(t), "-c", conf)
	plainAddr, tlsAddr := fmt.Sprintf("127.0.0.1:%d", plain), fmt.Sprintf("127.0.0.1:%d", secure)
	harness.WaitPort(t, "tcp", plainAddr, 10*time.Second)
	harness.WaitPort(t, "tcp", tlsAddr, 10*time.Second)
	check := func(when string) {
		pc := redis.NewClient(&redis.Options{Addr: plainAddr})
		defer pc.Close()
		tc := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}})
		defer tc.Close()
		for i := 0; i < 20; i++ {
			k := fmt.Sprintf("both:%d", i)
			if err := tc.Set(ctx, k, when, 0).Err(); err != nil {
				t.Fatalf("%s: TLS SET: %v", when, err)
			}
			if got, err := pc.Get(ctx, k).Result(); err != nil || got != when {
				t.Fatalf("%s: plaintext GET %q %v", when, got, err)
			}
		}
		// The plaintext port refuses a TLS handshake, the TLS port speaks no plaintext.
		if c, err := tls.Dial("tcp", plainAddr, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}); err == nil {
			c.Close()
			t.Fatalf("%s: TLS accepted on the plaintext listener", when)
		}
		if err := redis.NewClient(&redis.Options{Addr: tlsAddr, MaxRetries: -1, ReadTimeout: time.Second}).Ping(ctx).Err(); err == nil {
			t.Fatalf("%s: plaintext served on the TLS listener", when)
		}
	}
	check("first")
	before := waitWorkers(t, p.Cmd.Process.Pid, 2, time.Second)
	// A reload that changes the configuration: a new generation, both listeners kept.
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(b, []byte("# changed\n")...), 0o644)
	p.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		now := children(p.Cmd.Process.Pid)
		if len(now) == 2 && !containsInt(now, before[0]) && !containsInt(now, before[1]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new generation")
		}
	}
	check("reloaded")
}

// TestTLSStartWarnings: a key file every user can read and a certificate
// that expires within 14 days are warned about at start, naming the files
// and never their contents; the pool serves anyway.
func TestTLSStartWarnings(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	leaf := ca.Leaf(t, "proxy", "localhost", tlstest.Options{NotAfter: time.Now().Add(5 * 24 * time.Hour)})
	if err := os.Chmod(leaf.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	be := harness.Redis(t)
	port := harness.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "n.hcl")
	os.WriteFile(conf, []byte(fmt.Sprintf("worker_processes = 1\nstats {\n  listen = \"\"\n}\npool \"w\" {\n  listen = %q\n  protocol = \"redis\"\n  tls {\n    cert = %q\n    key = %q\n  }\n  server %q {}\n}\n",
		addr, leaf.CertFile, leaf.KeyFile, be.Addr)), 0o644)
	p := harness.Start(t, harness.Binary(t), "-c", conf)
	harness.WaitPort(t, "tcp", addr, 10*time.Second)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	out := p.Output()
	for _, want := range []string{"TLS private key is readable by every user", "key=" + leaf.KeyFile,
		"TLS certificate expires soon", "days_left=4", "cert=" + leaf.CertFile} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	kb, _ := os.ReadFile(leaf.KeyFile)
	lines := strings.Split(strings.TrimSpace(string(kb)), "\n")
	if strings.Contains(out, lines[1]) {
		t.Error("key material in the log")
	}
}
