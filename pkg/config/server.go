package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ketamaDefaultPort is the port twemproxy leaves out of an unnamed
// server's identity, for libmemcached compatibility (CONF_DEFAULT_KETAMA_PORT).
const ketamaDefaultPort = 11211

// PlacementName is the server's identity exactly as twemproxy computes it
// (src/nc_conf.c conf_add_server). It seeds the ketama continuum points
// ("<name>-<i>") and keys the server in the stats output:
//
//   - a named server (Named) uses its label;
//   - an unnamed TCP server uses "host:port" as written, or just "host"
//     when the port is 11211;
//   - an unnamed unix server uses "/path:" — twemproxy copies one byte
//     past the path, the ':' that precedes the weight in its YAML form.
func (s *Server) PlacementName() string {
	if s.Named {
		return s.Name
	}
	switch s.Address.Network {
	case "unix":
		return s.Address.Addr + ":"
	case "tcp":
		i := strings.LastIndexByte(s.Name, ':')
		if i < 0 {
			return s.Name
		}
		if p, err := strconv.Atoi(s.Name[i+1:]); err == nil && p == ketamaDefaultPort {
			return s.Name[:i]
		}
	}
	return s.Name
}

func (s *Server) String() string {
	if s.Master != "" {
		return fmt.Sprintf("%s (Sentinel master %s) weight %d", s.Name, s.Master, s.Weight)
	}
	if s.Named {
		return fmt.Sprintf("%s (%s) weight %d", s.Name, s.Address, s.Weight)
	}
	return fmt.Sprintf("%s weight %d", s.Address, s.Weight)
}

// redactedMark replaces a secret in anything meant for humans.
const redactedMark = "<redacted>"

// String summarises the pool; it never includes redis_auth.
func (p *Pool) String() string {
	auth := ""
	if p.RedisAuth != "" {
		auth = " redis_auth=" + redactedMark
	}
	if p.RedisUsername != "" {
		auth += " redis_username=" + p.RedisUsername
	}
	if len(p.Users) > 0 {
		auth += fmt.Sprintf(" users=%d", len(p.Users))
	}
	if p.Sentinel != nil {
		auth += fmt.Sprintf(" sentinels=%v", p.Sentinel.Addresses)
		if p.Sentinel.Password != "" {
			auth += " sentinel_password=" + redactedMark
		}
	}
	return fmt.Sprintf("pool %q %s listen=%s hash=%s distribution=%s servers=%d%s",
		p.Name, p.Protocol, p.Listen, p.Hash, p.Distribution, len(p.Servers), auth)
}

// GoString keeps %#v from printing redis_auth.
func (p *Pool) GoString() string { return "config.Pool{" + p.String() + "}" }

// Redacted returns a deep copy of c whose secrets are replaced by a
// marker, safe to log or serialise.
func (c *Config) Redacted() *Config {
	out := *c
	out.TLSFiles = nil // private keys among them
	out.Pools = make([]*Pool, len(c.Pools))
	for i, p := range c.Pools {
		cp := *p
		if cp.RedisAuth != "" {
			cp.RedisAuth = redactedMark
		}
		if p.Sentinel != nil {
			sc := *p.Sentinel
			if sc.Password != "" {
				sc.Password = redactedMark
			}
			cp.Sentinel = &sc
		}
		cp.Servers = make([]*Server, len(p.Servers))
		for j, s := range p.Servers {
			cs := *s
			if cs.Password != "" {
				cs.Password = redactedMark
			}
			cp.Servers[j] = &cs
		}
		out.Pools[i] = &cp
	}
	return &out
}

// cpuCount is the number of usable CPUs worker_processes = "auto" is
// worked out from (HostCPUs).
func cpuCount() int { return HostCPUs().Usable() }
