package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn"
)

// tls checks a pool's tls block and loads its files, so that a bad
// certificate fails the load (nuthatch -t, a reload) and never a worker.
func (c *checker) tls(rp *rawPool) *TLS {
	if len(rp.TLS) == 0 {
		return nil
	}
	if len(rp.TLS) > 1 {
		c.errorf(rp.TLS[1].DefRange, "Duplicate tls block", "pool %q has more than one tls block.", rp.Name)
	}
	rt := rp.TLS[0]
	t := &TLS{
		Cert:             deref(rt.Cert, ""),
		Key:              deref(rt.Key, ""),
		ClientCA:         deref(rt.ClientCA, ""),
		MinVersion:       c.tlsVersion(rt.MinVersion, rt.MinVersionRange),
		HandshakeTimeout: c.duration("handshake_timeout", deref(rt.HandshakeTimeout, DefaultHandshakeTimeout.String()), rt.HandshakeTimeoutRange, 0),
	}
	if rt.Listen != nil {
		a, err := parseAddress(*rt.Listen, addrListen)
		if err != nil {
			c.errorf(rt.ListenRange, "Invalid listen address", "%s.", err)
		}
		t.Listen = a
	}
	if t.HandshakeTimeout <= 0 {
		c.errorf(rt.HandshakeTimeoutRange, "Invalid handshake_timeout", "handshake_timeout must be more than 0.")
	}
	ok := c.tlsPath("cert", t.Cert, rt.CertRange, rt.DefRange, true)
	ok = c.tlsPath("key", t.Key, rt.KeyRange, rt.DefRange, true) && ok
	ok = c.tlsPath("client_ca", t.ClientCA, rt.ClientCARange, rt.DefRange, false) && ok
	if !ok {
		return t
	}
	s, err := tlsconn.NewServer(tlsconn.ServerFiles{Read: c.readFile, Cert: t.Cert, Key: t.Key, ClientCA: t.ClientCA, MinVersion: t.MinVersion})
	if err != nil {
		c.errorf(rt.DefRange, "Unusable TLS material", "%s.", err)
		return t
	}
	t.NotAfter = s.NotAfter()
	return t
}

// serverTLS checks a pool's server_tls block and loads its files.
func (c *checker) serverTLS(rp *rawPool) *ServerTLS {
	if len(rp.ServerTLS) == 0 {
		return nil
	}
	if len(rp.ServerTLS) > 1 {
		c.errorf(rp.ServerTLS[1].DefRange, "Duplicate server_tls block", "pool %q has more than one server_tls block.", rp.Name)
	}
	rt := rp.ServerTLS[0]
	t := &ServerTLS{
		CA:         deref(rt.CA, ""),
		Cert:       deref(rt.Cert, ""),
		Key:        deref(rt.Key, ""),
		ServerName: deref(rt.ServerName, ""),
		MinVersion: c.tlsVersion(rt.MinVersion, rt.MinVersionRange),
	}
	ok := c.tlsPath("ca", t.CA, rt.CARange, rt.DefRange, false)
	ok = c.tlsPath("cert", t.Cert, rt.CertRange, rt.DefRange, false) && ok
	ok = c.tlsPath("key", t.Key, rt.KeyRange, rt.DefRange, false) && ok
	if (t.Cert == "") != (t.Key == "") {
		c.errorf(rt.DefRange, "Incomplete client certificate", "server_tls needs both cert and key for a client certificate, or neither.")
		ok = false
	}
	if !ok {
		return t
	}
	if _, err := tlsconn.NewClient(tlsconn.ClientFiles{Read: c.readFile, CA: t.CA, Cert: t.Cert, Key: t.Key, ServerName: t.ServerName, MinVersion: t.MinVersion}); err != nil {
		c.errorf(rt.DefRange, "Unusable TLS material", "%s.", err)
	}
	return t
}

func (c *checker) tlsPath(name, path string, rng, block hcl.Range, required bool) bool {
	switch {
	case path == "" && required:
		c.errorf(block, "Missing "+name, "the tls block needs %s = \"/path/to/file\".", name)
		return false
	case path != "" && !filepath.IsAbs(path):
		c.errorf(rng, "Invalid "+name, "%s %q must be an absolute path (reloads and the daemon do not run from the configuration's directory).", name, path)
		return false
	}
	return true
}

func (c *checker) tlsVersion(v *string, rng hcl.Range) uint16 {
	ver, err := tlsconn.ParseVersion(deref(v, ""))
	if err != nil {
		c.errorf(rng, "Invalid min_version", "min_version is \"1.2\" or \"1.3\" (got %q).", *v)
		return ver
	}
	return ver
}

// readFile reads a TLS file once per load, from what was given or from
// disk, and keeps its contents for the workers.
func (c *checker) readFile(name string) ([]byte, error) {
	if b, ok := c.read[name]; ok {
		return b, nil
	}
	var b []byte
	if c.given != nil {
		var ok bool
		if b, ok = c.given[name]; !ok {
			return nil, fmt.Errorf("%w (not among the files the master read)", fs.ErrNotExist)
		}
	} else {
		var err error
		if b, err = os.ReadFile(name); err != nil {
			return nil, err
		}
	}
	c.read[name] = b
	return b, nil
}
