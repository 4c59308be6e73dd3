package tlsconn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// ErrMaterial marks a certificate, key or CA file that cannot be used.
var ErrMaterial = errors.New("tlsconn: bad TLS material")

// LoadKeyPair reads a PEM certificate chain and its private key and checks
// that they belong together; errors name the files, never the key.
func LoadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	return loadKeyPair(os.ReadFile, certFile, keyFile)
}

// ReadFunc reads a file: os.ReadFile, or contents read before (a worker
// builds its material from the bytes the master checked).
type ReadFunc func(name string) ([]byte, error)

func orDisk(r ReadFunc) ReadFunc {
	if r == nil {
		return os.ReadFile
	}
	return r
}

func loadKeyPair(read ReadFunc, certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := read(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: cert %s: %w", ErrMaterial, certFile, err)
	}
	keyPEM, err := read(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: key %s: %w", ErrMaterial, keyFile, err)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: cert %s: no PEM certificate in the file", ErrMaterial, certFile)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || !isKeyBlock(b.Type) {
		return nil, fmt.Errorf("%w: key %s: no PEM private key in the file", ErrMaterial, keyFile)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's texts say what is wrong without quoting the key.
		return nil, fmt.Errorf("%w: cert %s, key %s: %w", ErrMaterial, certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: cert %s: %w", ErrMaterial, certFile, err)
		}
	}
	switch c.PrivateKey.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("%w: key %s: unsupported key type %T", ErrMaterial, keyFile, c.PrivateKey)
	}
	return &c, nil
}

func isKeyBlock(t string) bool {
	return t == "PRIVATE KEY" || t == "EC PRIVATE KEY" || t == "RSA PRIVATE KEY"
}

// LoadCAs reads a PEM bundle of CA certificates; it must hold at least one.
func LoadCAs(file string) (*x509.CertPool, error) { return loadCAs(os.ReadFile, file) }

func loadCAs(read ReadFunc, file string) (*x509.CertPool, error) {
	b, err := read(file)
	if err != nil {
		return nil, fmt.Errorf("%w: ca %s: %w", ErrMaterial, file, err)
	}
	pool := x509.NewCertPool()
	n := 0
	for len(b) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: ca %s: certificate %d: %w", ErrMaterial, file, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: ca %s: no PEM certificate in the file", ErrMaterial, file)
	}
	return pool, nil
}

// ParseVersion maps "1.2" and "1.3" to crypto/tls versions; "" is 1.2.
func ParseVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tlsconn: unknown TLS version %q (1.2 or 1.3)", v)
}

// ServerFiles are where a listener's material lives.
type ServerFiles struct {
	Read       ReadFunc // nil: from disk
	Cert, Key  string
	ClientCA   string // "" = clients present no certificate
	MinVersion uint16
}

// Server is a listener's TLS configuration; its certificate (and client
// CAs) can be swapped while it serves: handshakes that start after Swap
// use the new material, open connections keep theirs.
type Server struct {
	files   ServerFiles
	mat     atomic.Pointer[serverMaterial]
	cfg     *tls.Config
	tickets atomic.Pointer[[][32]byte]
}

type serverMaterial struct {
	cert *tls.Certificate
	cfg  *tls.Config // for client certificates: ClientCAs of this material
}

// NewServer loads f.
func NewServer(f ServerFiles) (*Server, error) {
	s := &Server{files: f}
	m, err := s.load(f)
	if err != nil {
		return nil, err
	}
	s.mat.Store(m)
	s.cfg = &tls.Config{
		MinVersion:                  f.MinVersion,
		GetCertificate:              s.getCertificate,
		DynamicRecordSizingDisabled: true,
	}
	if f.ClientCA != "" {
		s.cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.mat.Load().cfg, nil }
	}
	return s, nil
}

func (s *Server) load(f ServerFiles) (*serverMaterial, error) {
	read := orDisk(f.Read)
	cert, err := loadKeyPair(read, f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	m := &serverMaterial{cert: cert}
	if f.ClientCA != "" {
		cas, err := loadCAs(read, f.ClientCA)
		if err != nil {
			return nil, err
		}
		// A whole config per material: ClientCAs cannot change in place.
		m.cfg = &tls.Config{
			MinVersion:                  f.MinVersion,
			Certificates:                []tls.Certificate{*cert},
			ClientCAs:                   cas,
			ClientAuth:                  tls.RequireAndVerifyClientCert,
			DynamicRecordSizingDisabled: true,
		}
		if s.cfg != nil {
			m.cfg.SetSessionTicketKeys(s.ticketKeys())
		}
	}
	return m, nil
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.mat.Load().cert, nil
}

// Config is the tls.Config for tls.Server.
func (s *Server) Config() *tls.Config { return s.cfg }

// Reload reads the files again (through read, nil: from disk) and swaps
// the material in; on error the material in use stays.
func (s *Server) Reload(read ReadFunc) error {
	f := s.files
	f.Read = read
	m, err := s.load(f)
	if err != nil {
		return err
	}
	s.mat.Store(m)
	return nil
}

// NotAfter is when the certificate in use expires.
func (s *Server) NotAfter() time.Time { return s.mat.Load().cert.Leaf.NotAfter }

// ticketKeys are the keys set with SetSessionTicketKeys, nil when unset.
func (s *Server) ticketKeys() [][32]byte {
	if k := s.tickets.Load(); k != nil {
		return *k
	}
	return nil
}

// SetSessionTicketKeys makes every handshake of s encrypt session tickets
// with keys[0] and accept all of keys: processes given the same keys resume
// each other's sessions.
func (s *Server) SetSessionTicketKeys(keys [][32]byte) {
	if len(keys) == 0 {
		return
	}
	s.tickets.Store(&keys)
	s.cfg.SetSessionTicketKeys(keys)
	if m := s.mat.Load(); m.cfg != nil {
		m.cfg.SetSessionTicketKeys(keys)
	}
}

// ClientFiles are a backend side's material.
type ClientFiles struct {
	Read       ReadFunc // nil: from disk
	CA         string   // "" = the system's roots
	Cert, Key  string   // a client certificate, or none
	ServerName string   // "" = the host of each server's address
	MinVersion uint16
}

// Client is the TLS configuration for dialling backends. Reload swaps its
// CAs and client certificate: links dialled afterwards use them, links
// already up keep their verified sessions.
type Client struct {
	files ClientFiles
	cache tls.ClientSessionCache
	base  atomic.Pointer[tls.Config]
	cert  atomic.Pointer[tls.Certificate]
}

// NewClient loads f.
func NewClient(f ClientFiles) (*Client, error) {
	c := &Client{files: f, cache: tls.NewLRUClientSessionCache(256)}
	if err := c.load(f.Read); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) load(r ReadFunc) error {
	read := orDisk(r)
	f := c.files
	base := &tls.Config{
		MinVersion:                  f.MinVersion,
		ClientSessionCache:          c.cache,
		DynamicRecordSizingDisabled: true,
	}
	if f.CA != "" {
		cas, err := loadCAs(read, f.CA)
		if err != nil {
			return err
		}
		base.RootCAs = cas
	}
	var cert *tls.Certificate
	if f.Cert != "" {
		var err error
		if cert, err = loadKeyPair(read, f.Cert, f.Key); err != nil {
			return err
		}
		// Always offered, whatever CA names the server lists (Go's own
		// choice from Certificates would send none on a mismatch).
		base.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	c.base.Store(base)
	c.cert.Store(cert)
	return nil
}

// Config is the tls.Config to dial host with (the server_name wins).
func (c *Client) Config(host string) *tls.Config {
	cfg := c.base.Load().Clone()
	cfg.ServerName = c.files.ServerName
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}

// Reload reads the files again (through read, nil: from disk); on error
// the material in use stays.
func (c *Client) Reload(read ReadFunc) error { return c.load(read) }

// NotAfter is when the client certificate expires; zero without one.
func (c *Client) NotAfter() time.Time {
	if cert := c.cert.Load(); cert != nil {
		return cert.Leaf.NotAfter
	}
	return time.Time{}
}
