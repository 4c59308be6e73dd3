package proxy

import (
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/acl"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// ACL users at the proxy (pkg/acl): who a client is, and the check of
// every request before it is dispatched. A pool without users and
// without redis_auth (cfg.Users nil) checks nothing: every client is
// redis's open default user.

// authRequired: a new connection must AUTH before it runs commands,
// because the default user has a password or is off.
func (p *pool) authRequired() bool {
	d := p.cfg.DefaultUser
	return d != nil && !(d.NoPass() && d.Enabled())
}

// aclUser is the user c's requests run as; nil when the pool has no
// users.
func (c *clientConn) aclUser() *acl.User {
	if c.rs != nil && c.rs.user != nil {
		return c.rs.user
	}
	return c.pool.cfg.DefaultUser
}

// userName is what CLIENT LIST and ACL WHOAMI show.
func (c *clientConn) userName() string {
	if u := c.aclUser(); u != nil {
		return u.Name
	}
	return acl.DefaultUser
}

// Replies of AUTH and HELLO AUTH, as redis 7.0 words them.
const (
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPassSet = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errAuthLimit = "ERR too many failed AUTH attempts, try again later"
)

// authenticate checks AUTH's arguments ([user] pass) and returns the user
// they authenticate as; nil and the error text otherwise. Failures are
// counted and logged without the password; past authChecksPerSecond
// failures a second in the worker, attempts are refused unchecked, so
// that guessing gets no faster with more connections.
func (r *redisProto) authenticate(args [][]byte) (*acl.User, string) {
	p := r.pool
	name := acl.DefaultUser
	if len(args) == 2 {
		name = string(args[0])
	}
	pass := args[len(args)-1]
	d := p.cfg.DefaultUser
	if len(args) == 1 && (d == nil || d.NoPass()) {
		// Like a server whose default user has nopass.
		return nil, errNoPassSet
	}
	if p.cfg.Users == nil {
		// No users at all: the open default user, whatever the password.
		if name == acl.DefaultUser {
			return nil, ""
		}
		return nil, errWrongPass
	}
	p.stats.AuthAttempts.Add(1)
	if !p.authLim.allow(time.Now().UnixNano()) {
		p.stats.AuthFailures.Add(1)
		return nil, errAuthLimit
	}
	u := p.cfg.Users[name]
	if u != nil && u.CheckPassword(pass) {
		p.authLim.undo()
		return u, ""
	}
	p.stats.AuthFailures.Add(1)
	if p.limitLog.allow(time.Now().UnixNano()) {
		// The name may be anything a client sent: bounded, never the
		// password.
		p.log.WithField("user", clip(name, 64)).Info("failed AUTH")
	}
	return nil, errWrongPass
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// loggedIn records a successful AUTH or HELLO AUTH.
func (c *clientConn) loggedIn(u *acl.User) {
	rs := c.session()
	rs.authed = true
	if u != nil {
		rs.user = u
	}
}

// permit checks args against c's user before dispatch; false when it
// answered NOPERM (the caller then does nothing more, and a transaction
// is flagged, by the caller, as redis flags a command refused at queue
// time). A client that must still authenticate is let through: NOAUTH
// comes first.
func (r *redisProto) permit(c *clientConn, args [][]byte) bool {
	p := r.pool
	u := c.aclUser()
	if u == nil || u.AllCommands() && u.AllKeysChannels() || p.authRequired() && !c.rs.authed {
		return true
	}
	cmd, ok := acl.Builtin().Lookup(args)
	if !ok {
		lc, learned := r.learned.Learned(lower(args[0]))
		if !learned {
			return true // the proxy answers unknown command
		}
		cmd = acl.CommandFor(lc)
	} else if cmd.HasSubcommands() && len(args) > 1 {
		// An unknown subcommand: redis answers "unknown subcommand" before
		// checking permissions, and so does the proxy's dispatch.
		return true
	}
	v := u.Check(cmd, args)
	if v == acl.Allowed {
		return true
	}
	switch v {
	case acl.DeniedCommand:
		p.stats.ACLDeniedCommand.Add(1)
	case acl.DeniedKey:
		p.stats.ACLDeniedKey.Add(1)
	case acl.DeniedChannel:
		p.stats.ACLDeniedChannel.Add(1)
	}
	if p.limitLog.allow(c.lp.now) {
		// Which command and what was refused, never an argument.
		p.log.WithField("user", u.Name).WithField("command", cmd.Name).WithField("denied", v.String()).
			WithField("client", c.remoteAddr()).Info("ACL denied a request")
	}
	c.localError(v.Reason(cmd.Name))
	return false
}

// aclCommand answers ACL WHOAMI, ACL CAT and ACL DRYRUN from the pool's
// users; the other subcommands manage a server's users and are refused.
func (r *redisProto) aclCommand(c *clientConn, args [][]byte) bool {
	if len(args) < 2 {
		return false
	}
	switch lower(args[1]) {
	case "whoami":
		if len(args) != 2 {
			c.localWrongArgs("acl|whoami")
			return true
		}
		name := c.userName()
		c.localReply(func(dst []byte) []byte { return resp.AppendBulkString(dst, name) })
		return true
	case "cat":
		if len(args) != 2 {
			return false
		}
		c.localReply(func(dst []byte) []byte {
			dst = resp.AppendArrayHeader(dst, len(acl.Categories))
			for _, cat := range acl.Categories {
				dst = resp.AppendBulkString(dst, cat)
			}
			return dst
		})
		return true
	case "dryrun":
		if len(args) < 4 {
			c.localWrongArgs("acl|dryrun")
			return true
		}
		users := r.pool.cfg.Users
		u := users[string(args[2])]
		if users == nil && string(args[2]) == acl.DefaultUser {
			c.localOK() // the open default user may run everything
			return true
		}
		if u == nil {
			c.localError("ERR User '" + clip(string(args[2]), 128) + "' not found")
			return true
		}
		req := args[3:]
		cmd, ok := acl.Builtin().Lookup(req)
		rc, rok := resp.Lookup(req[0])
		if !ok || !rok {
			c.localError("ERR Command '" + clip(string(req[0]), 128) + "' not found")
			return true
		}
		if !resp.CheckArity(rc, len(req)) {
			c.localWrongArgs(cmd.Name)
			return true
		}
		if v, i := u.CheckArg(cmd, req); v != acl.Allowed {
			// redis 7.0's ACL DRYRUN texts name the key or channel.
			text := "This user has no permissions to run the '" + cmd.Name + "' command"
			switch v {
			case acl.DeniedKey:
				text = "This user has no permissions to access the '" + string(req[i]) + "' key"
			case acl.DeniedChannel:
				text = "This user has no permissions to access the '" + string(req[i]) + "' channel"
			}
			c.localReply(func(dst []byte) []byte { return resp.AppendBulkString(dst, text) })
			return true
		}
		c.localOK()
		return true
	}
	return false
}
