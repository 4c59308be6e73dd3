package convert

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// twemproxyStats is where nutcracker's stats listener binds by default
// (-a 0.0.0.0 -s 22222).
const (
	twemproxyStatsPort = 22222
	twemproxyStats     = "0.0.0.0:22222"
)

// serverOut is one server block: the label is the placement identity
// whenever an address is given.
type serverOut struct {
	spec    *serverSpec
	label   string
	address string // "" = the label is the address
	comment []string
}

// emit renders pools as HCL. Attributes appear in a fixed order, the one
// docs/configuration.md documents, and only when the YAML set them
// (twemproxy's defaults are nuthatch's), except protocol, which nuthatch
// requires.
func (c *converter) emit(pools []*pool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Converted from %s by \"nuthatch convert\".\n", filepath.Base(c.file))
	b.WriteString("# Check it with \"nuthatch -t -c FILE\" before use.\n\n")
	b.WriteString("# twemproxy is single-threaded; \"auto\" runs one worker per CPU.\n")
	b.WriteString("worker_processes = \"auto\"\n\n")

	statsListen := twemproxyStats
	for _, p := range pools {
		if p.listen != nil && !p.listen.v.unix {
			if _, port, _ := net.SplitHostPort(p.listen.v.addr); port == strconv.Itoa(twemproxyStatsPort) {
				statsListen = ""
				c.warnf(p.listen.line, "pool %q listens on port %d, nutcracker's default stats port, so the stats listener is disabled; set stats { listen } to the address your nutcracker's -a/-s flags give", p.name, twemproxyStatsPort)
				break
			}
		}
	}
	b.WriteString("# nutcracker's command-line flags map to settings here:\n")
	b.WriteString("#   -a/--stats-addr and -s/--stats-port -> stats { listen } (twemproxy: 0.0.0.0:22222)\n")
	b.WriteString("#   -i/--stats-interval (milliseconds)  -> stats { interval } (twemproxy: 30000)\n")
	b.WriteString("#   -v/--verbose, -o/--output           -> log { level, format }\n")
	b.WriteString("#   -p/--pid-file                       -> pid_file\n")
	b.WriteString("# nuthatch's own default stats listener is 127.0.0.1:22222; this keeps twemproxy's.\n")
	b.WriteString("stats {\n")
	fmt.Fprintf(&b, "  listen = %s\n", quote(statsListen))
	b.WriteString("  interval = \"30s\"\n}\n")

	for _, p := range pools {
		b.WriteByte('\n')
		c.emitPool(&b, p)
	}
	return hclwrite.Format([]byte(b.String()))
}

func (c *converter) emitPool(b *strings.Builder, p *pool) {
	fmt.Fprintf(b, "pool %s {\n", quote(p.name))
	attr := func(name, value string) { fmt.Fprintf(b, "  %s = %s\n", name, value) }
	str := func(name string, s *setting[string]) {
		if s != nil {
			attr(name, quote(s.v))
		}
	}
	num := func(name string, s *setting[int]) {
		if s != nil {
			attr(name, strconv.Itoa(s.v))
		}
	}
	ms := func(name string, s *setting[int]) {
		if s != nil {
			attr(name, quote(strconv.Itoa(s.v)+"ms"))
		}
	}
	boolean := func(name string, s *setting[bool]) {
		if s != nil {
			attr(name, strconv.FormatBool(s.v))
		}
	}

	l := p.listen.v
	attr("listen", quote(l.addr))
	if l.perm != 0 {
		attr("listen_mode", quote(fmt.Sprintf("%04o", l.perm)))
	}
	protocol := config.ProtocolMemcache
	if p.isRedis() {
		protocol = config.ProtocolRedis
	}
	attr("protocol", quote(string(protocol)))
	str("hash", p.hash)
	str("hash_tag", p.hashTag)
	str("distribution", p.distribution)
	if t := p.timeout; t != nil {
		ms("timeout", t)
		if t.v > 0 {
			c.warnf(t.line, "pool %q: timeout: nuthatch starts the clock when a request is written to the server; twemproxy starts it when the request is queued, so a request queued behind others may now wait longer before it times out", p.name)
		}
	}
	num("backlog", p.backlog)
	boolean("preconnect", p.preconnect)
	if cc := p.clientConnections; cc != nil {
		num("client_connections", cc)
		if cc.v > 0 {
			c.warnf(cc.line, "pool %q: client_connections: twemproxy ignores this key, nuthatch enforces it: client connections beyond %d are refused; remove it to keep twemproxy's behaviour", p.name, cc.v)
		}
	}
	num("server_connections", p.serverConnections)
	boolean("auto_eject_hosts", p.autoEjectHosts)
	ms("server_retry_timeout", p.serverRetryTimeout)
	num("server_failure_limit", p.serverFailureLimit)
	boolean("tcpkeepalive", p.tcpKeepalive)
	if r := p.reusePort; r != nil {
		c.warnf(r.line, "pool %q: reuseport (a twemproxy development-branch key) is dropped: nuthatch always opens its TCP listeners with SO_REUSEPORT, one socket per worker", p.name)
	}
	str("redis_auth", p.redisAuth)
	if db := p.redisDB; db != nil {
		if p.isRedis() {
			num("redis_db", db)
		} else {
			c.warnf(db.line, "pool %q: redis_db is dropped: it has no effect in a memcache pool, and nuthatch refuses it there", p.name)
		}
	}

	for _, s := range serverBlocks(p.servers) {
		for _, line := range s.comment {
			fmt.Fprintf(b, "  # %s\n", line)
		}
		if s.address == "" && s.spec.weight == 1 {
			fmt.Fprintf(b, "  server %s {}\n", quote(s.label))
			continue
		}
		fmt.Fprintf(b, "  server %s {\n", quote(s.label))
		if s.address != "" {
			fmt.Fprintf(b, "    address = %s\n", quote(s.address))
		}
		if s.spec.weight != 1 {
			fmt.Fprintf(b, "    weight = %d\n", s.spec.weight)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
}

// serverBlocks chooses each server's label and address so that nuthatch
// derives twemproxy's name (pkg/config Server.PlacementName):
//
//   - an unnamed "host:port:w" becomes server "host:port" {}, and nuthatch
//     drops port 11211 from the name just as twemproxy does;
//   - an unnamed "/path:w" becomes server "unix:/path" {}, named "/path:";
//   - a named entry becomes server "name" { address = "host:port" }.
//
// When a short form would repeat another server's label, or cannot name
// the server (a bare IPv6 host), the explicit form label = name, address
// = address is used instead; names are unique, so those labels are too.
func serverBlocks(servers []*serverSpec) []serverOut {
	out := make([]serverOut, len(servers))
	for i, s := range servers {
		out[i] = shortForm(s)
	}
	for {
		count := map[string]int{}
		for _, o := range out {
			count[o.label]++
		}
		changed := false
		for i, o := range out {
			if count[o.label] > 1 && o.label != o.spec.name {
				out[i] = explicitForm(o.spec)
				changed = true
			}
		}
		if !changed {
			return out
		}
	}
}

func shortForm(s *serverSpec) serverOut {
	switch {
	case !s.named && s.unix:
		return serverOut{spec: s, label: s.addr}
	case !s.named && (!strings.Contains(s.host, ":") || unbracket(s.host) != s.host):
		// The label as written, leading zeros and all: twemproxy's name
		// keeps the port's spelling, and so does PlacementName.
		return serverOut{spec: s, label: s.host + ":" + s.port}
	case s.named && s.name == s.addr && placementName(s.name, "", s.unix) == s.name:
		return serverOut{spec: s, label: s.name}
	}
	return explicitForm(s)
}

func explicitForm(s *serverSpec) serverOut {
	o := serverOut{spec: s, label: s.name, address: s.addr}
	if placementName(o.label, o.address, s.unix) != s.name {
		// The address equals the label, which would make the label an
		// address (and drop port 11211, or add a colon to a socket
		// path). Spell the same address differently so that nuthatch
		// treats the label as an explicit name.
		if s.unix {
			o.address = "unix:/." + strings.TrimPrefix(s.addr, "unix:")
		} else {
			host, port, _ := net.SplitHostPort(s.addr)
			o.address = net.JoinHostPort(host, "0"+port)
		}
		o.comment = []string{
			"twemproxy: - " + s.raw,
			"The address is spelled differently from the label on purpose: that",
			"makes the label an explicit name, as it is in twemproxy.",
		}
	} else if !s.named {
		o.comment = []string{"twemproxy: - " + s.raw}
	}
	return o
}

// placementName is the name pkg/config derives for a server block with
// this label and address attribute ("" = none).
func placementName(label, address string, unix bool) string {
	srv := config.Server{Name: label, Named: address != "" && address != label}
	srv.Address.Network = "tcp"
	if unix {
		srv.Address.Network = "unix"
		if !srv.Named {
			srv.Address.Addr = strings.TrimPrefix(label, "unix:")
		}
	}
	return srv.PlacementName()
}

// quote renders s as an HCL string literal, escaping template sequences.
func quote(s string) string {
	return string(hclwrite.TokensForValue(cty.StringVal(s)).Bytes())
}
