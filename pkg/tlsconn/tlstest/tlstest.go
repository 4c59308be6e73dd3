// Package tlstest makes throwaway certificate authorities and leaf
// certificates for tests: ECDSA P-256 (or RSA-2048), SANs localhost and
// 127.0.0.1, written as PEM files that redis-server and memcached read too.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority that signs leaves.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	Pool *x509.CertPool
	File string // PEM of Cert
	dir  string
}

// Leaf is a signed certificate with its files.
type Leaf struct {
	CertFile, KeyFile string
	Cert              *x509.Certificate
	TLS               tls.Certificate
}

var serial int64 = time.Now().UnixNano()

func next() *big.Int { serial++; return big.NewInt(serial) }

// NewCA makes a CA named name with its PEM in dir.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	ca, err := MakeCA(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// MakeCA is NewCA for programs (the benchmark driver).
func MakeCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          next(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, Key: key, Pool: x509.NewCertPool(), File: filepath.Join(dir, name+".pem"), dir: dir}
	ca.Pool.AddCert(cert)
	return ca, writePEM(ca.File, "CERTIFICATE", der, 0o644)
}

// Options of a leaf.
type Options struct {
	RSA      bool
	NotAfter time.Time // zero: 24 h from now
}

// Leaf signs a certificate named cn (server and client auth, SANs
// localhost and 127.0.0.1) and writes name.crt and name.key in the CA's dir.
func (ca *CA) Leaf(t testing.TB, name, cn string, o ...Options) *Leaf {
	t.Helper()
	l, err := ca.MakeLeaf(name, cn, o...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// MakeLeaf is Leaf for programs.
func (ca *CA) MakeLeaf(name, cn string, o ...Options) (*Leaf, error) {
	var opt Options
	if len(o) > 0 {
		opt = o[0]
	}
	var key crypto.Signer
	var err error
	if opt.RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	notAfter := opt.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: next(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	l := &Leaf{CertFile: filepath.Join(ca.dir, name+".crt"), KeyFile: filepath.Join(ca.dir, name+".key")}
	l.Cert, _ = x509.ParseCertificate(der)
	if err := writePEM(l.CertFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	if err := writePEM(l.KeyFile, "PRIVATE KEY", kder, 0o600); err != nil {
		return nil, err
	}
	l.TLS = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: l.Cert}
	return l, nil
}

func writePEM(file, typ string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	// Written aside and renamed: a reload never sees half a file.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
