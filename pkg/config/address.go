package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// maxUnixPath is the longest socket path bind(2) accepts on Linux:
// sun_path is 108 bytes including the terminating NUL.
const maxUnixPath = 107

// unixPrefix marks a unix socket address.
const unixPrefix = "unix:"

// addrKind says which address forms a context accepts.
type addrKind int

const (
	addrListen addrKind = iota // tcp (host may be empty) or unix
	addrServer                 // tcp with a host, or unix
	addrTCP                    // tcp only, host may be empty (stats, metrics)
)

// parseAddress checks s against the syntax for kind. The error text is a
// diagnostic detail and quotes s, so it must never be called on a secret.
func parseAddress(s string, kind addrKind) (Address, error) {
	if rest, ok := strings.CutPrefix(s, unixPrefix); ok {
		if kind == addrTCP {
			return Address{}, fmt.Errorf("%q is a unix socket, but this listener needs host:port", s)
		}
		return parseUnix(rest)
	}
	if strings.HasPrefix(s, "/") {
		return Address{}, fmt.Errorf("%q looks like a socket path; write it as %q", s, unixPrefix+s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "too many colons in address" {
			return Address{}, fmt.Errorf("%q: an IPv6 address must be in brackets, as in \"[::1]:6379\"", s)
		}
		return Address{}, fmt.Errorf("%q is not host:port or unix:/path", s)
	}
	p, err := parsePort(port)
	if err != nil {
		return Address{}, fmt.Errorf("%q: %w", s, err)
	}
	if host == "" {
		if kind == addrServer {
			return Address{}, fmt.Errorf("%q has no host", s)
		}
	} else if err := checkHost(host); err != nil {
		return Address{}, fmt.Errorf("%q: %w", s, err)
	}
	return Address{Network: "tcp", Addr: net.JoinHostPort(host, strconv.Itoa(p))}, nil
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("the port is missing")
	}
	if !isDigits(s) {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %s is out of range 1-65535", s)
	}
	return p, nil
}

// checkHost accepts IP literals (with an IPv6 zone) and DNS-style names.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if strings.Contains(h, ":") {
		return fmt.Errorf("%q is not a valid IPv6 address", h)
	}
	if len(h) > 253 {
		return errors.New("the host name is longer than 253 bytes")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("host %q has an invalid character %q", h, c)
		}
	}
	return nil
}

func parseUnix(p string) (Address, error) {
	switch {
	case p == "":
		return Address{}, errors.New("the unix socket path is empty")
	case p[0] != '/':
		return Address{}, fmt.Errorf("unix socket path %q is not absolute", p)
	case strings.HasSuffix(p, "/"):
		return Address{}, fmt.Errorf("unix socket path %q names a directory", p)
	case strings.IndexByte(p, 0) >= 0:
		return Address{}, errors.New("the unix socket path contains a NUL byte")
	case len(p) > maxUnixPath:
		return Address{}, fmt.Errorf("unix socket path is %d bytes; the limit is %d", len(p), maxUnixPath)
	}
	return Address{Network: "unix", Addr: p}, nil
}

// parseMode parses a unix socket permission such as "0666".
func parseMode(s string) (uint32, error) {
	digits := strings.TrimPrefix(s, "0o")
	if digits == "" {
		return 0, errors.New("the mode is empty")
	}
	m, err := strconv.ParseUint(digits, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an octal file mode", s)
	}
	if m > 0o777 {
		return 0, fmt.Errorf("%q has bits above 0777", s)
	}
	return uint32(m), nil
}

// listenKey identifies what a listener binds, for conflict detection.
type listenKey struct {
	network string
	host    string // canonical IP, lower-case name, or "" for a wildcard
	port    int
	wild    int // 0 specific, 4 IPv4 any, 6 dual-stack any
}

func keyOf(a Address) listenKey {
	if a.Network == "unix" {
		return listenKey{network: "unix", host: path.Clean(a.Addr)}
	}
	host, port, _ := net.SplitHostPort(a.Addr)
	p, _ := strconv.Atoi(port)
	k := listenKey{network: "tcp", port: p, host: strings.ToLower(host)}
	if ip, err := netip.ParseAddr(host); err == nil {
		k.host = ip.Unmap().String()
		if ip.IsUnspecified() {
			if ip.Unmap().Is4() {
				k.wild = 4
			} else {
				k.wild = 6
			}
		}
	} else if host == "" {
		// Go listens dual-stack on an empty host.
		k.wild = 6
	}
	return k
}

// conflicts reports whether two listeners would fight over one socket.
// Two TCP listeners conflict on the same port when the hosts are equal or
// one of them is a wildcard covering the other.
func (k listenKey) conflicts(o listenKey) bool {
	if k.network != o.network {
		return false
	}
	if k.network == "unix" {
		return k.host == o.host
	}
	if k.port != o.port {
		return false
	}
	if k.host == o.host || k.wild == 6 || o.wild == 6 {
		return true
	}
	return k.wild == 4 && o.isIPv4() || o.wild == 4 && k.isIPv4()
}

func (k listenKey) isIPv4() bool {
	ip, err := netip.ParseAddr(k.host)
	return err == nil && ip.Is4()
}
