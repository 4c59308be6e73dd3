package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// tlsRig is a CA with a server certificate for the proxy and one for a
// client, in a temporary directory.
type tlsRig struct {
	ca             *tlstest.CA
	server, client *tlstest.Leaf
}

func newTLSRig(t *testing.T) *tlsRig {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	return &tlsRig{ca: ca, server: ca.Leaf(t, "server", "localhost"), client: ca.Leaf(t, "client", "app")}
}

// tlsRedis starts a redis-server speaking only TLS, asking for client
// certificates of the rig's CA; it returns its address.
func (r *tlsRig) tlsRedis(t *testing.T) string {
	t.Helper()
	harness.Need(t, "redis-server")
	port := harness.FreePort(t)
	harness.Start(t, "redis-server", "--port", "0", "--tls-port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(),
		"--tls-cert-file", r.server.CertFile, "--tls-key-file", r.server.KeyFile,
		"--tls-ca-cert-file", r.ca.File, "--tls-auth-clients", "yes")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	harness.WaitPort(t, "tcp", addr, 10*time.Second)
	return addr
}

func (r *tlsRig) block(extra string) string {
	return fmt.Sprintf("  tls {\n    cert = %q\n    key = %q\n%s  }\n", r.server.CertFile, r.server.KeyFile, extra)
}

func (r *tlsRig) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: r.ca.Pool, ServerName: "localhost"}
}

func tlsRoundTrip(t *testing.T, addr string, cfg *tls.Config, req, want string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestTLSClientRedis(t *testing.T) {
	harness.Need(t, "redis-server")
	rig := newTLSRig(t)
	be := harness.Redis(t)
	_, addr := serveHCL(t, fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n%s  server %q {}\n}\n",
		rig.block(""), be.Addr))
	tlsRoundTrip(t, addr, rig.clientConfig(), "*1\r\n$4\r\nPING\r\n", "+PONG\r\n")

	// go-redis v9 with a TLS config: pipelines, large values, many clients.
	rc := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: rig.clientConfig(), PoolSize: 8})
	defer rc.Close()
	ctx := context.Background()
	big := strings.Repeat("v", 3<<20)
	if err := rc.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := rc.Get(ctx, "big").Result(); err != nil || got != big {
		t.Fatalf("big value: %v (len %d)", err, len(got))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				pipe := rc.Pipeline()
				for j := 0; j < 8; j++ {
					pipe.Set(ctx, fmt.Sprintf("k%d:%d:%d", g, i, j), j, 0)
					pipe.Get(ctx, fmt.Sprintf("k%d:%d:%d", g, i, j))
				}
				cmds, err := pipe.Exec(ctx)
				if err != nil {
					errs <- err
					return
				}
				for j := 0; j < 8; j++ {
					if v := cmds[2*j+1].(*redis.StringCmd).Val(); v != fmt.Sprint(j) {
						errs <- fmt.Errorf("got %q want %d", v, j)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// redis-py over ssl (Debian's python3-redis, as the client matrix).
	if err := exec.Command("/usr/bin/python3", "-c", "import redis").Run(); err == nil {
		host, port, _ := net.SplitHostPort(addr)
		script := `import redis, sys
r = redis.Redis(host=sys.argv[1], port=int(sys.argv[2]), ssl=True, ssl_ca_certs=sys.argv[3])
r.set("py", "tls")
p = r.pipeline(transaction=False)
for i in range(100):
    p.set("py%d" % i, i)
    p.get("py%d" % i)
out = p.execute()
assert out[1::2] == [str(i).encode() for i in range(100)], out
print(r.get("py").decode())`
		out, err := exec.Command("/usr/bin/python3", "-c", script, host, port, rig.ca.File).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "tls" {
			t.Fatalf("redis-py ssl: %v %s", err, out)
		}
	}

	// redis-cli --tls.
	if _, err := exec.LookPath("redis-cli"); err == nil {
		host, port, _ := net.SplitHostPort(addr)
		out, err := exec.Command("redis-cli", "--tls", "--cacert", rig.ca.File, "--sni", "localhost", "-h", host, "-p", port, "SET", "cli", "ok").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Fatalf("redis-cli --tls: %v %s", err, out)
		}
	}
}

func TestTLSClientMemcache(t *testing.T) {
	harness.Need(t, "memcached")
	rig := newTLSRig(t)
	be := harness.Memcached(t)
	_, addr := serveHCL(t, fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"memcache\"\n%s  server %q {}\n}\n",
		rig.block("    min_version = \"1.3\"\n"), be.Addr))
	tlsRoundTrip(t, addr, rig.clientConfig(), "set a 0 0 1\r\nx\r\nget a\r\n", "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n")
	// openssl s_client, the memcached operator's TLS client.
	if _, err := exec.LookPath("openssl"); err == nil {
		cmd := exec.Command("openssl", "s_client", "-quiet", "-verify_return_error", "-CAfile", rig.ca.File, "-connect", addr, "-servername", "localhost")
		cmd.Stdin = strings.NewReader("get a\r\nquit\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "VALUE a 0 1\r\nx\r\nEND\r\n") {
			t.Fatalf("openssl s_client: %v %q", err, out)
		}
	}
	// min_version 1.3 refuses a TLS 1.2 client.
	cfg := rig.clientConfig()
	cfg.MaxVersion = tls.VersionTLS12
	if c, err := tls.Dial("tcp", addr, cfg); err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 client was accepted under min_version 1.3")
	}
}

func TestTLSMutualClient(t *testing.T) {
	harness.Need(t, "redis-server")
	rig := newTLSRig(t)
	be := harness.Redis(t)
	px, addr := serveHCL(t, fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n%s  server %q {}\n}\n",
		rig.block(fmt.Sprintf("    client_ca = %q\n", rig.ca.File)), be.Addr))
	cfg := rig.clientConfig()
	cfg.Certificates = []tls.Certificate{rig.client.TLS}
	tlsRoundTrip(t, addr, cfg, "*1\r\n$4\r\nPING\r\n", "+PONG\r\n")
	// Without a certificate: refused (TLS 1.3 reports it at the first read).
	c, err := tls.Dial("tcp", addr, rig.clientConfig())
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "*1\r\n$4\r\nPING\r\n")
		_, err = c.Read(make([]byte, 16))
		c.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	waitFor(t, "a failed handshake counted", func() bool { return px.Snapshot().Pools[0].TLSHandshakeFailed >= 1 })
}

// closedSoon reads from c until EOF or an error, failing after 5 s.
func closedSoon(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection not closed within %v", within)
	}
}

func TestTLSHostileClients(t *testing.T) {
	harness.Need(t, "redis-server")
	rig := newTLSRig(t)
	be := harness.Redis(t)
	px, addr := serveHCL(t, fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n%s  server %q {}\n}\n",
		rig.block("    handshake_timeout = \"300ms\"\n"), be.Addr))
	_, plain := serveHCL(t, fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n  server %q {}\n}\n", be.Addr))

	// Garbage on the TLS port: closed at once.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "*1\r\n$4\r\nPING\r\n")
	closedSoon(t, c, 3*time.Second)
	c.Close()

	// TLS on the plaintext port: a protocol error, closed.
	if tc, err := tls.Dial("tcp", plain, rig.clientConfig()); err == nil {
		tc.Close()
		t.Fatal("a TLS handshake succeeded on the plaintext port")
	}

	// A ClientHello byte by byte: closed by handshake_timeout.
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go func() {
		for _, b := range []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00} {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	closedSoon(t, c, 5*time.Second)
	c.Close()
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("slow handshake closed after %v, before the timeout", d)
	}
	waitFor(t, "failed handshakes counted", func() bool { return px.Snapshot().Pools[0].TLSHandshakeFailed >= 2 })
	// And the pool still serves.
	tlsRoundTrip(t, addr, rig.clientConfig(), "*1\r\n$4\r\nPING\r\n", "+PONG\r\n")
	waitFor(t, "every client gone", func() bool { return px.Clients() == 0 })
}

func TestTLSBackendRedis(t *testing.T) {
	harness.Need(t, "redis-server")
	rig := newTLSRig(t)
	backend := rig.tlsRedis(t)
	_, addr := serveHCL(t, fmt.Sprintf(`pool "p" {
  listen = "127.0.0.1:1"
  protocol = "redis"
  timeout = "5s"
%s  server_tls {
    ca = %q
    cert = %q
    key = %q
  }
  server %q {}
}
`, rig.block(""), rig.ca.File, rig.client.CertFile, rig.client.KeyFile, backend))
	// TLS on both sides, with a client certificate towards redis.
	tlsRoundTrip(t, addr, rig.clientConfig(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "+OK\r\n$2\r\nv1\r\n")
	rc := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: rig.clientConfig()})
	defer rc.Close()
	big := strings.Repeat("b", 2<<20)
	ctx := context.Background()
	if err := rc.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, _ := rc.Get(ctx, "big").Result(); got != big {
		t.Fatalf("big value through TLS both sides: len %d", len(got))
	}
}

func TestTLSBackendRedisWithoutClientCert(t *testing.T) {
	harness.Need(t, "redis-server")
	rig := newTLSRig(t)
	backend := rig.tlsRedis(t)
	_, addr := serveHCL(t, fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n  timeout = \"2s\"\n  server_tls {\n    ca = %q\n  }\n  server %q {}\n}\n", rig.ca.File, backend))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "-ERR") {
		t.Fatalf("a server refusing the proxy's certificate-less handshake gave %q", line)
	}
}

func TestTLSBackendMemcache(t *testing.T) {
	harness.Need(t, "memcached")
	rig := newTLSRig(t)
	// memcached asks for a client certificate (ssl_verify_mode 2).
	be := harness.Memcached(t, "-Z", "-o", "ssl_chain_cert="+rig.server.CertFile+",ssl_key="+rig.server.KeyFile+
		",ssl_ca_cert="+rig.ca.File+",ssl_verify_mode=2")
	_, addr := serveHCL(t, fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"memcache\"\n  timeout = \"5s\"\n  server_tls {\n    ca = %q\n    cert = %q\n    key = %q\n  }\n  server %q {}\n}\n",
		rig.ca.File, rig.client.CertFile, rig.client.KeyFile, be.Addr))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "set a 0 0 2\r\nhi\r\nget a\r\n")
	want := "STORED\r\nVALUE a 0 2\r\nhi\r\nEND\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q %v", got, err)
	}
}

// TestTLSBackendNameChecked: a server whose certificate does not name
// server_name is refused, and the client gets an error, not its data.
func TestTLSBackendNameChecked(t *testing.T) {
	rig := newTLSRig(t)
	backend := rig.tlsRedis(t)
	for _, c := range []struct{ name, want string }{
		{"redis.wrong.example", "-ERR"},
		{"localhost", "$-1"},
	} {
		_, addr := serveHCL(t, fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n  timeout = \"2s\"\n"+
			"  server_tls {\n    ca = %q\n    cert = %q\n    key = %q\n    server_name = %q\n  }\n  server %q {}\n}\n",
			rig.ca.File, rig.client.CertFile, rig.client.KeyFile, c.name, backend))
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n")
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if !strings.HasPrefix(line, c.want) {
			t.Errorf("server_name %q: got %q, want %s...", c.name, line, c.want)
		}
	}
}
