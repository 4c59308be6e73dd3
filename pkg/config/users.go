package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/nuthatch-proxy/nuthatch/pkg/acl"
)

// A redis pool's ACL users (user blocks) and the credentials the proxy
// uses on its servers (redis_username with redis_auth, a server block's
// username and password).

type rawUser struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	PasswordSHA256 hcl.Expression `hcl:"password_sha256,optional"`
	NoPass         *bool          `hcl:"nopass,optional"`
	Enabled        *bool          `hcl:"enabled,optional"`
	Commands       *[]string      `hcl:"commands,optional"`
	Keys           *[]string      `hcl:"keys,optional"`
	Channels       *[]string      `hcl:"channels,optional"`

	NoPassRange   hcl.Range `hcl:"nopass,attr_value_range"`
	CommandsRange hcl.Range `hcl:"commands,attr_value_range"`
	KeysRange     hcl.Range `hcl:"keys,attr_value_range"`
	ChannelsRange hcl.Range `hcl:"channels,attr_value_range"`
}

// users compiles a pool's user blocks and works out its default user:
//
//   - no user block and no redis_auth: no users, every client is the open
//     default user (Users nil);
//   - a user "default" block defines the default user; redis_auth is then
//     only the password sent to the servers;
//   - otherwise redis_auth, if set, is the default user's password and the
//     default user may run everything (twemproxy's redis_auth); without
//     redis_auth, a pool with user blocks has its default user off, so
//     that every client authenticates as one of them.
func (c *checker) users(rp *rawPool, p *Pool) {
	p.RedisUsername = deref(rp.RedisUsername, "")
	if p.Protocol == ProtocolMemcache {
		for _, ru := range rp.Users {
			c.errorf(ru.DefRange, "Invalid block for a memcache pool", "user blocks are Redis ACL users; they are only valid in a redis pool.")
		}
		if rp.RedisUsername != nil {
			c.errorf(rp.RedisUsernameRange, "Invalid attribute for a memcache pool", "redis_username is only valid in a redis pool.")
		}
		return
	}
	if strings.ContainsAny(p.RedisUsername, " \t\r\n") {
		c.errorf(rp.RedisUsernameRange, "Invalid redis_username", "a Redis user name has no spaces or line breaks.")
	}
	if p.RedisUsername != "" && p.RedisAuth == "" && len(rp.Servers) == 0 {
		// A cluster pool's nodes have no blocks to give a password.
		c.errorf(rp.RedisUsernameRange, "Missing redis_auth", "redis_username %q needs redis_auth, its password.", p.RedisUsername)
	}
	if len(rp.Users) == 0 && p.RedisAuth == "" {
		return
	}
	table := acl.Builtin()
	p.Users = map[string]*acl.User{}
	seen := map[string]hcl.Range{}
	for _, ru := range rp.Users {
		if first, dup := seen[ru.Name]; dup {
			c.errorf(ru.NameRange, "Duplicate user", "pool %q already has a user %q at %s.", rp.Name, ru.Name, first)
			continue
		}
		seen[ru.Name] = ru.NameRange
		u := c.user(table, ru)
		if u != nil {
			p.Users[ru.Name] = u
		}
	}
	if u, ok := p.Users[acl.DefaultUser]; ok {
		p.DefaultUser = u
		return
	}
	spec := acl.Spec{Name: acl.DefaultUser, Disabled: true}
	if p.RedisAuth != "" {
		sum := sha256.Sum256([]byte(p.RedisAuth))
		spec = acl.Spec{Name: acl.DefaultUser, PasswordSHA256: []string{hex.EncodeToString(sum[:])},
			Commands: []string{"allcommands"}, Keys: []string{"allkeys"}, Channels: []string{"allchannels"}}
	}
	u, err := acl.Compile(table, spec)
	if err != nil {
		panic(err) // fixed rules that the tests compile
	}
	p.Users[acl.DefaultUser], p.DefaultUser = u, u
}

func (c *checker) user(table *acl.Table, ru *rawUser) *acl.User {
	spec := acl.Spec{Name: ru.Name, NoPass: deref(ru.NoPass, false), Disabled: !deref(ru.Enabled, true),
		Commands: deref(ru.Commands, nil), Keys: deref(ru.Keys, nil), Channels: deref(ru.Channels, nil)}
	hashes, hrng, ok := c.stringOrList(ru.PasswordSHA256, "password_sha256")
	if !ok {
		return nil
	}
	spec.PasswordSHA256 = hashes
	switch {
	case spec.NoPass && len(hashes) > 0:
		c.errorf(ru.NoPassRange, "Invalid user", "user %q sets both nopass and password_sha256; a nopass user accepts any password.", ru.Name)
		return nil
	case !spec.NoPass && !spec.Disabled && len(hashes) == 0:
		c.errorf(ru.DefRange, "Missing password_sha256",
			"user %q has no password: set password_sha256 = \"<sha256sum of the password>\" (or a list, to rotate), or nopass = true.", ru.Name)
		return nil
	}
	u, err := acl.Compile(table, spec)
	if err == nil {
		return u
	}
	rng := ru.NameRange
	var re *acl.RuleError
	if errors.As(err, &re) {
		switch re.Attr {
		case "commands":
			rng = ru.CommandsRange
		case "keys":
			rng = ru.KeysRange
		case "channels":
			rng = ru.ChannelsRange
		case "password_sha256":
			rng = hrng
		}
		c.errorf(rng, "Invalid user "+re.Attr, "user %q: %s[%d] %q: %s.", ru.Name, re.Attr, re.Index, re.Rule, re.Reason)
		return nil
	}
	c.errorf(rng, "Invalid user", "user %q: %s.", ru.Name, err)
	return nil
}

// stringOrList reads an attribute that is a string or a list of strings.
func (c *checker) stringOrList(expr hcl.Expression, name string) ([]string, hcl.Range, bool) {
	if expr == nil {
		return nil, hcl.Range{}, true
	}
	rng := expr.Range()
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		c.diags = append(c.diags, diags...)
		return nil, rng, false
	}
	bad := func() ([]string, hcl.Range, bool) {
		c.errorf(rng, "Invalid "+name, "%s is a string or a list of strings.", name)
		return nil, rng, false
	}
	switch {
	case v.IsNull():
		return nil, rng, true
	case !v.IsKnown():
		return bad()
	case v.Type() == cty.String:
		return []string{v.AsString()}, rng, true
	case v.Type().IsTupleType() || v.Type().IsListType():
		var out []string
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.IsNull() || !e.IsKnown() || e.Type() != cty.String {
				return bad()
			}
			out = append(out, e.AsString())
		}
		return out, rng, true
	}
	return bad()
}

// serverCredentials checks a server block's username and password.
func (c *checker) serverCredentials(rs *rawServer, s *Server, p *Pool) {
	if p.Protocol == ProtocolMemcache {
		for _, r := range []hcl.Range{rs.UsernameRange, rs.PasswordRange} {
			if present(r) {
				c.errorf(r, "Invalid attribute for a memcache pool", "username and password are Redis credentials; they are only valid in a redis pool.")
			}
		}
		return
	}
	s.Username = deref(rs.Username, "")
	s.Password, s.HasPassword = deref(rs.Password, ""), rs.Password != nil
	if strings.ContainsAny(s.Username, " \t\r\n") {
		c.errorf(rs.UsernameRange, "Invalid username", "a Redis user name has no spaces or line breaks.")
	}
	if user, pass := p.Credentials(s); user != "" && pass == "" {
		where := rs.UsernameRange
		if !present(where) {
			where = rs.LabelRange
		}
		c.errorf(where, "Missing password",
			"server %q authenticates as user %q but has no password: set redis_auth in the pool, or password in the server block.", rs.Label, user)
	}
}

// HasSecrets reports whether the configuration holds a password or a
// password digest: then its file should not be readable by every user.
func (c *Config) HasSecrets() bool {
	for _, p := range c.Pools {
		if p.RedisAuth != "" || len(p.Users) > 0 || p.Sentinel != nil && p.Sentinel.Password != "" {
			return true
		}
		for _, s := range p.Servers {
			if s.Password != "" {
				return true
			}
		}
	}
	return false
}
