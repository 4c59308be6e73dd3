package convert

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// ketamaDefaultPort is left out of an unnamed server's name by twemproxy
// (CONF_DEFAULT_KETAMA_PORT), for libmemcached compatibility.
const ketamaDefaultPort = 11211

// maxUnixPath is the longest socket path: sun_path is 108 bytes with NUL.
const maxUnixPath = 107

// listenSpec is a parsed "listen:" value.
type listenSpec struct {
	raw  string // as written: twemproxy compares pools by this string
	unix bool
	addr string // nuthatch form: host:port, [v6]:port, or unix:/path
	perm uint32 // unix socket mode, 0 = leave as created
}

// setListen parses "host:port" or "/path [perm]" as conf_set_listen does,
// both from the end of the string.
func (c *converter) setListen(p *pool, v *yaml.Node) {
	if p.listen != nil {
		c.duplicate(p, "listen", v, p.listen.line)
		return
	}
	s := v.Value
	l := listenSpec{raw: s}
	p.rejectedListen++ // undone on success
	if s[0] == '/' {
		path := s
		if i := strings.LastIndexByte(s, ' '); i >= 0 {
			path = s[:i]
			perm, ok := strtolOctal(s[i+1:])
			if !ok || perm < 0 || perm > 0o777 {
				c.errorf(ErrInvalid, v.Line, "pool %q: listen %q has an invalid file permission; use \"/path 0666\"", p.name, s)
				return
			}
			l.perm = uint32(perm)
		}
		if msg := checkUnixPath(path); msg != "" {
			c.errorf(ErrInvalid, v.Line, "pool %q: listen %q: %s", p.name, s, msg)
			return
		}
		l.unix, l.addr = true, "unix:"+path
	} else {
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			c.errorf(ErrInvalid, v.Line, "pool %q: listen %q is not \"host:port\" or \"/path [permissions]\"", p.name, s)
			return
		}
		host, portStr := s[:i], s[i+1:]
		port, ok := atoi(portStr)
		if !ok || port < 1 || port > 65535 {
			c.errorf(ErrInvalid, v.Line, "pool %q: listen %q has an invalid port", p.name, s)
			return
		}
		if strings.HasPrefix(host, "[") {
			// twemproxy resolves listen addresses while loading, and
			// getaddrinfo does not take brackets.
			c.errorf(ErrInvalid, v.Line, "pool %q: listen %q: twemproxy cannot resolve a bracketed address; write the IPv6 host bare, as in \"::1:22121\"", p.name, s)
			return
		}
		if host != "" {
			if msg := checkHost(host); msg != "" {
				c.errorf(ErrUnsupported, v.Line, "pool %q: listen %q: %s", p.name, s, msg)
				return
			}
		}
		l.addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	p.rejectedListen--
	p.listen = &setting[listenSpec]{l, v.Line}
}

// strtolOctal is strtol(s, NULL, 8) as conf_set_listen calls it: leading
// space and a sign are allowed, parsing stops at the first non-octal
// byte, and garbage alone gives 0. ok is false on overflow (ERANGE).
func strtolOctal(s string) (int64, bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] >= '\t' && s[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var n int64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '7'; i++ {
		if n > (1<<63-1)/8 {
			return 0, false
		}
		n = n*8 + int64(s[i]-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// serverSpec is one "servers:" entry.
type serverSpec struct {
	raw    string
	line   int
	unix   bool
	host   string // as written; the socket path for unix
	port   string // as written; "" for unix
	weight int
	named  bool
	// name is twemproxy's server name, which seeds the ketama continuum,
	// orders modula slots, and keys the stats: the explicit name, else
	// "host:port", else "host" when the port is 11211, else "path:".
	name string
	// addr is the nuthatch address: host:port, [v6]:port or unix:/path.
	addr string
}

// addServer parses "host:port:weight [name]" or "/path:weight [name]" as
// conf_add_server does: name after the last space, then weight and port
// after the last colons.
func (c *converter) addServer(p *pool, v *yaml.Node) {
	s := v.Value
	bad := func(kind error, format string, args ...any) {
		p.rejectedServers++
		c.errorf(kind, v.Line, "pool %q: server %q: "+format, append([]any{p.name, s}, args...)...)
	}
	srv := &serverSpec{raw: s, line: v.Line, unix: s[0] == '/'}
	rest := s
	if i := strings.LastIndexByte(rest, ' '); i >= 0 {
		srv.named, srv.name, rest = true, rest[i+1:], rest[:i]
	}
	format := `is not "host:port:weight [name]" or "/path/to/socket:weight [name]"`
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		bad(ErrInvalid, format)
		return
	}
	weight := rest[i+1:]
	rest = rest[:i]
	if srv.unix {
		// A second colon would be taken as a port, which a socket lacks.
		if strings.IndexByte(rest, ':') >= 0 {
			bad(ErrInvalid, format)
			return
		}
		srv.host = rest
	} else {
		i = strings.LastIndexByte(rest, ':')
		// twemproxy's delimiter list ends with NUL, which must not occur.
		if i < 0 || strings.IndexByte(rest[:i], 0) >= 0 {
			bad(ErrInvalid, format)
			return
		}
		srv.host, srv.port = rest[:i], rest[i+1:]
	}

	w, ok := atoi(weight)
	switch {
	case !ok && isDigits(weight):
		bad(ErrUnsupported, "weight %s is above nuthatch's limit of %d", weight, config.MaxWeight)
		return
	case !ok:
		bad(ErrInvalid, "has an invalid weight %q", weight)
		return
	case w == 0:
		bad(ErrInvalid, "has a zero weight")
		return
	case w > config.MaxWeight:
		bad(ErrUnsupported, "weight %d is above nuthatch's limit of %d", w, config.MaxWeight)
		return
	}
	srv.weight = w

	if srv.unix {
		if msg := checkUnixPath(srv.host); msg != "" {
			bad(ErrUnsupported, "%s", msg)
			return
		}
		srv.addr = "unix:" + srv.host
		if !srv.named {
			srv.name = srv.host + ":"
		}
	} else {
		port, ok := atoi(srv.port)
		if !ok || port < 1 || port > 65535 {
			bad(ErrInvalid, "has an invalid port %q", srv.port)
			return
		}
		host := unbracket(srv.host)
		if host == "" {
			bad(ErrUnsupported, "has no host")
			return
		}
		if msg := checkHost(host); msg != "" {
			bad(ErrUnsupported, "%s", msg)
			return
		}
		srv.addr = net.JoinHostPort(host, strconv.Itoa(port))
		if !srv.named {
			srv.name = srv.host + ":" + srv.port
			if port == ketamaDefaultPort {
				srv.name = srv.host
			}
		}
	}
	if msg := checkName(srv.name); msg != "" {
		bad(ErrUnsupported, "name %q: %s", srv.name, msg)
		return
	}
	p.servers = append(p.servers, srv)
}

// unbracket strips the brackets of "[v6]"; twemproxy also accepts a bare
// IPv6 host, since it splits at the last colon.
func unbracket(h string) string {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// checkHost applies nuthatch's host syntax (pkg/config): an IP literal,
// with an IPv6 zone allowed, or a DNS-style name.
func checkHost(h string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if strings.Contains(h, ":") {
		return strconv.Quote(h) + " is not a valid IPv6 address"
	}
	if len(h) > 253 {
		return "the host name is longer than 253 bytes"
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.' || b == '_') {
			return "host " + strconv.Quote(h) + " has a character nuthatch does not accept in a host name: " + strconv.QuoteRune(rune(b))
		}
	}
	return ""
}

// checkUnixPath applies the socket path limits that both twemproxy
// (nc_resolve_unix) and nuthatch enforce.
func checkUnixPath(p string) string {
	switch {
	case len(p) > maxUnixPath:
		return "the socket path is " + strconv.Itoa(len(p)) + " bytes; the limit is " + strconv.Itoa(maxUnixPath)
	case strings.HasSuffix(p, "/"):
		return "the socket path names a directory"
	case strings.IndexByte(p, 0) >= 0:
		return "the socket path contains a NUL byte"
	}
	return ""
}

// checkName applies nuthatch's rule for pool and server names, which are
// embedded verbatim in the stats JSON.
func checkName(s string) string {
	if s == "" {
		return "the name is empty"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return "the name contains " + strconv.QuoteRune(r) + ", which nuthatch does not allow in names (they appear in the stats JSON)"
		}
	}
	return ""
}
