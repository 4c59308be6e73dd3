package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
)

func tlsPool(block string) string {
	return fmt.Sprintf("pool \"s\" {\n  listen = \"127.0.0.1:6380\"\n  protocol = \"redis\"\n%s\n  server \"127.0.0.1:6390\" {}\n}\n", block)
}

func TestTLSBlocks(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	srv := ca.Leaf(t, "srv", "localhost")
	other := ca.Leaf(t, "other", "other", tlstest.Options{RSA: true})
	good := tlsPool(fmt.Sprintf("tls {\n cert = %q\n key = %q\n client_ca = %q\n min_version = \"1.3\"\n}\nserver_tls {\n ca = %q\n cert = %q\n key = %q\n server_name = \"redis.internal\"\n}", srv.CertFile, srv.KeyFile, ca.File, ca.File, other.CertFile, other.KeyFile))
	cfg, err := Parse([]byte(good), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	if p.TLS == nil || p.TLS.MinVersion != 0x0304 || p.TLS.NotAfter.IsZero() || p.ServerTLS.ServerName != "redis.internal" {
		t.Fatalf("decoded %+v %+v", p.TLS, p.ServerTLS)
	}
	if len(cfg.TLSFiles) != 5 {
		t.Fatalf("kept %d files' contents, want 5", len(cfg.TLSFiles))
	}
	if cfg.Redacted().TLSFiles != nil {
		t.Fatal("Redacted keeps the key files' contents")
	}
	// A worker parses with the master's contents: the disk is not read.
	files := cfg.TLSFiles
	os.Remove(srv.KeyFile)
	if _, err := ParseWithFiles([]byte(good), "t.hcl", files); err != nil {
		t.Fatalf("with the master's contents: %v", err)
	}
	if _, err := Parse([]byte(good), "t.hcl"); err == nil || !strings.Contains(err.Error(), srv.KeyFile) {
		t.Fatalf("a missing key: %v", err)
	}
	srv = ca.Leaf(t, "srv", "localhost")

	for _, c := range []struct{ block, want string }{
		{fmt.Sprintf("tls {\n cert = %q\n key = %q\n}", srv.CertFile, other.KeyFile), "t.hcl:4,1-4: Unusable TLS material; tlsconn: bad TLS material: cert " + srv.CertFile},
		{fmt.Sprintf("tls {\n cert = \"srv.crt\"\n key = %q\n}", srv.KeyFile), "must be an absolute path"},
		{fmt.Sprintf("tls {\n key = %q\n}", srv.KeyFile), "Missing cert"},
		{fmt.Sprintf("tls {\n cert = %q\n key = %q\n min_version = \"1.1\"\n}", srv.CertFile, srv.KeyFile), "min_version is \"1.2\" or \"1.3\""},
		{fmt.Sprintf("tls {\n cert = %q\n key = %q\n client_ca = %q\n}", srv.CertFile, srv.KeyFile, srv.KeyFile), "ca " + srv.KeyFile + ": no PEM certificate"},
		{fmt.Sprintf("server_tls {\n cert = %q\n}", srv.CertFile), "needs both cert and key"},
		{fmt.Sprintf("tls {\n cert = %q\n key = %q\n handshake_timeout = \"0s\"\n}", srv.CertFile, srv.KeyFile), "handshake_timeout must be more than 0"},
		{fmt.Sprintf("tls {\n cert = %q\n key = %q\n listen = \"0.0.0.0:6380\"\n}", srv.CertFile, srv.KeyFile), "The pool \"s\" tls listener overlaps the pool \"s\" listener"},
	} {
		_, err := Parse([]byte(tlsPool(c.block)), "t.hcl")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.block, err, c.want)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("not ErrInvalid: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("key material in the error: %v", err)
		}
	}
}
