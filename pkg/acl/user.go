// Package acl is Redis's ACL model for the proxy's own users: who a
// client is (AUTH, HELLO AUTH) and what it may run (commands and
// categories, key patterns with redis 7's read/write split, pub/sub
// channels), decided before a request is dispatched. It does no I/O;
// rules are compiled once, at configuration load, against redis 7.0's
// command table.
package acl

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// DefaultUser is the user a connection starts as, and AUTH <password>'s.
const DefaultUser = "default"

// Spec is a user as the configuration writes it.
type Spec struct {
	Name string
	// PasswordSHA256 are hex SHA-256 digests of the accepted passwords
	// (several, so that a password can be rotated).
	PasswordSHA256 []string
	// NoPass accepts any password, and makes a default user's clients
	// authenticated from the start.
	NoPass bool
	// Disabled users cannot authenticate (redis's "off").
	Disabled bool
	// Commands, Keys and Channels are redis ACL rules, applied in order
	// from nothing allowed: "+@read", "-flushall", "+config|get",
	// "allcommands"; "app:*" (or "~app:*"), "%R~r:*", "%W~w:*",
	// "allkeys"; "news.*" (or "&news.*"), "allchannels".
	Commands, Keys, Channels []string
}

// RuleError is a rule the compiler refused.
type RuleError struct {
	Attr   string // commands, keys, channels, password_sha256
	Index  int    // position in the list
	Rule   string
	Reason string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("acl: %s[%d] %q: %s", e.Attr, e.Index, e.Rule, e.Reason)
}

// ErrRule is what every RuleError matches with errors.Is.
var ErrRule = errors.New("acl: invalid rule")

func (e *RuleError) Is(target error) bool { return target == ErrRule }

// Permission bits of a key pattern.
const (
	permRead  uint8 = 1
	permWrite uint8 = 2
)

type keyPattern struct {
	pat   []byte
	flags uint8
}

type cmdRule struct {
	all, allow bool
	cat        int // >= 0: a category
	name       string
}

// User is a compiled user.
type User struct {
	Name     string
	hashes   [][sha256.Size]byte
	noPass   bool
	disabled bool

	allCommands bool
	allowed     []uint64 // by Command id
	rules       []cmdRule

	allKeys bool
	keys    []keyPattern

	allChannels bool
	channels    [][]byte
}

// Compile checks and compiles a user against the table.
func Compile(t *Table, s Spec) (*User, error) {
	u := &User{Name: s.Name, noPass: s.NoPass, disabled: s.Disabled,
		allowed: make([]uint64, (len(t.all)+63)/64)}
	if s.Name == "" || strings.ContainsAny(s.Name, " \t\r\n") {
		return nil, &RuleError{"name", 0, s.Name, "a user name is not empty and has no spaces"}
	}
	for i, h := range s.PasswordSHA256 {
		var d [sha256.Size]byte
		if len(h) != 2*sha256.Size {
			return nil, &RuleError{"password_sha256", i, redactHash(h), "a SHA-256 digest is 64 hex digits (sha256sum of the password)"}
		}
		if _, err := hex.Decode(d[:], []byte(h)); err != nil {
			return nil, &RuleError{"password_sha256", i, redactHash(h), "not hex digits"}
		}
		u.hashes = append(u.hashes, d)
	}
	for i, r := range s.Commands {
		if err := u.commandRule(t, r); err != "" {
			return nil, &RuleError{"commands", i, r, err}
		}
	}
	for i, r := range s.Keys {
		if err := u.keyRule(r); err != "" {
			return nil, &RuleError{"keys", i, r, err}
		}
	}
	for i, r := range s.Channels {
		switch {
		case r == "allchannels" || r == "&*":
			u.allChannels, u.channels = true, nil
		case r == "resetchannels":
			u.allChannels, u.channels = false, nil
		case r == "" || r == "&":
			return nil, &RuleError{"channels", i, r, "empty channel pattern"}
		case u.allChannels:
			// redis refuses it too (EEXIST): it would have no effect.
			return nil, &RuleError{"channels", i, r, "a pattern after allchannels (&*) has no effect; start with resetchannels"}
		default:
			u.channels = append(u.channels, []byte(strings.TrimPrefix(r, "&")))
		}
	}
	return u, nil
}

// redactHash keeps a malformed digest out of error messages: it may be a
// password pasted by mistake.
func redactHash(string) string { return "<redacted>" }

func (u *User) setBit(id int, on bool) {
	if on {
		u.allowed[id/64] |= 1 << (id % 64)
	} else {
		u.allowed[id/64] &^= 1 << (id % 64)
		u.allCommands = false
	}
}

// change is redis's ACLChangeSelectorPerm: a command and all its
// subcommands.
func (u *User) change(c *Command, on bool) {
	u.setBit(c.id, on)
	for _, sc := range c.subs {
		u.setBit(sc.id, on)
	}
}

func (u *User) commandRule(t *Table, r string) string {
	lr := strings.ToLower(r)
	switch {
	case lr == "allcommands" || lr == "+@all":
		for i := range u.allowed {
			u.allowed[i] = ^uint64(0)
		}
		u.allCommands = true
		u.rules = append(u.rules, cmdRule{all: true, allow: true, cat: -1})
		return ""
	case lr == "nocommands" || lr == "-@all":
		clear(u.allowed)
		u.allCommands = false
		u.rules = append(u.rules, cmdRule{all: true, cat: -1})
		return ""
	case len(lr) < 2 || (lr[0] != '+' && lr[0] != '-'):
		return "a command rule is +command, -command, +@category, -@category, +command|subcommand, allcommands or nocommands"
	}
	on := lr[0] == '+'
	if lr[1] == '@' {
		cat := categoryIndex(lr[2:])
		if cat < 0 {
			return fmt.Sprintf("unknown category %q; redis 7.0's are: %s", lr[2:], strings.Join(Categories, ", "))
		}
		// redis's ACLSetSelectorCommandBitsForCategory: each command of
		// the category with all its subcommands, then the subcommands of
		// the category.
		for _, c := range t.top {
			if c.cats&(1<<cat) != 0 {
				u.change(c, on)
			}
			for _, sc := range c.subs {
				if sc.cats&(1<<cat) != 0 {
					u.change(sc, on)
				}
			}
		}
		u.rules = append(u.rules, cmdRule{allow: on, cat: cat})
		return ""
	}
	name := lr[1:]
	c := t.command(name)
	if c == nil {
		top, _, isSub := strings.Cut(name, "|")
		tc := t.command(top)
		if isSub && tc != nil && tc.subs == nil {
			return fmt.Sprintf("%q has no subcommands; rules on a first argument (redis's deprecated +select|0) are not supported", top)
		}
		if isSub && tc != nil {
			return fmt.Sprintf("%q is not a subcommand of %q in redis 7.0", name, top)
		}
		return fmt.Sprintf("unknown command %q in redis 7.0", name)
	}
	u.change(c, on)
	u.rules = append(u.rules, cmdRule{allow: on, cat: -1, name: name})
	return ""
}

func (u *User) keyRule(r string) string {
	switch r {
	case "allkeys", "~*":
		u.allKeys, u.keys = true, nil
		return ""
	case "resetkeys":
		u.allKeys, u.keys = false, nil
		return ""
	}
	flags, pat := permRead|permWrite, r
	if strings.HasPrefix(r, "%") {
		// %R~, %W~, %RW~ (redis 7): the pattern applies to reads or writes
		// only.
		perm, rest, ok := strings.Cut(r[1:], "~")
		if !ok || perm == "" {
			return "a selective key pattern is %R~pattern, %W~pattern or %RW~pattern"
		}
		flags = 0
		for _, p := range strings.ToUpper(perm) {
			switch p {
			case 'R':
				flags |= permRead
			case 'W':
				flags |= permWrite
			default:
				return fmt.Sprintf("%q is not a key permission (R or W)", string(p))
			}
		}
		pat = rest
	} else {
		pat = strings.TrimPrefix(r, "~")
	}
	if pat == "" {
		return "empty key pattern"
	}
	if u.allKeys {
		// redis refuses it too (EEXIST): it would have no effect.
		return "a pattern after allkeys (~*) has no effect; start with resetkeys"
	}
	if flags == permRead|permWrite && pat == "*" {
		u.allKeys, u.keys = true, nil
		return ""
	}
	u.keys = append(u.keys, keyPattern{[]byte(pat), flags})
	return ""
}

// CheckPassword reports whether pass is one of the user's passwords. It
// hashes once and compares with every digest in constant time.
func (u *User) CheckPassword(pass []byte) bool {
	if u.disabled {
		return false
	}
	if u.noPass {
		return true
	}
	sum := sha256.Sum256(pass)
	ok := 0
	for i := range u.hashes {
		ok |= subtle.ConstantTimeCompare(sum[:], u.hashes[i][:])
	}
	return ok == 1
}

// Fingerprint identifies the user's credentials (name, digests, nopass,
// off) without revealing them: equal fingerprints accept the same
// passwords. A hand-over to a new configuration keeps a client's login
// only while it is unchanged.
func (u *User) Fingerprint() [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte("nuthatch acl user\x00" + u.Name + "\x00"))
	var flags [2]byte
	if u.noPass {
		flags[0] = 1
	}
	if u.disabled {
		flags[1] = 1
	}
	h.Write(flags[:])
	// Order-independent: a rotated list in another order is the same.
	var acc [sha256.Size]byte
	for _, d := range u.hashes {
		x := sha256.Sum256(d[:])
		for i := range acc {
			acc[i] ^= x[i]
		}
	}
	h.Write(acc[:])
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// Enabled reports whether the user can authenticate at all.
func (u *User) Enabled() bool { return !u.disabled }

// NoPass reports whether the user is nopass (any password authenticates
// it, when it is enabled).
func (u *User) NoPass() bool { return u.noPass }

// AllKeysChannels reports whether the user may use every key and every
// channel.
func (u *User) AllKeysChannels() bool { return u.allKeys && u.allChannels }

// AllCommands reports whether the user may run every command, also those
// the table does not know.
func (u *User) AllCommands() bool { return u.allCommands }

// Verdict is what Check decided.
type Verdict uint8

// Verdicts, in the order redis checks them.
const (
	Allowed Verdict = iota
	DeniedCommand
	DeniedKey
	DeniedChannel
)

// Reason is the verdict's reply as redis 7.0 words it, without the
// leading '-'; name is the command's full name ("config|get").
func (v Verdict) Reason(name string) string {
	switch v {
	case DeniedCommand:
		return "NOPERM this user has no permissions to run the '" + name + "' command"
	case DeniedKey:
		return "NOPERM this user has no permissions to access one of the keys used as arguments"
	case DeniedChannel:
		return "NOPERM this user has no permissions to access one of the channels used as arguments"
	}
	return ""
}

func (v Verdict) String() string {
	return [...]string{"allowed", "command", "key", "channel"}[v]
}

// Check decides whether the user may run the request args as command c
// (from Table.Lookup; nil for a command the table does not know, which
// only allcommands allows). It looks at the command, then every key,
// then every channel, as redis's ACLSelectorCheckCmd. It does not
// allocate.
func (u *User) Check(c *Command, args [][]byte) Verdict {
	v, _ := u.CheckArg(c, args)
	return v
}

// CheckArg is Check that also says which argument (a key or a channel)
// was refused; 0 for a refused command.
func (u *User) CheckArg(c *Command, args [][]byte) (Verdict, int) {
	if c == nil {
		if !u.allCommands {
			return DeniedCommand, 0
		}
		return Allowed, 0
	}
	if c.NoAuth {
		return Allowed, 0
	}
	if !u.commandAllowed(c) {
		return DeniedCommand, 0
	}
	if !u.allKeys && c.lc != nil && len(c.lc.Specs) > 0 {
		if i := u.deniedKey(c, args); i > 0 {
			return DeniedKey, i
		}
	}
	if !u.allChannels && c.chans != chanNone {
		if i := u.deniedChannel(c, args); i > 0 {
			return DeniedChannel, i
		}
	}
	return Allowed, 0
}

func (u *User) commandAllowed(c *Command) bool {
	if u.allCommands {
		return true
	}
	if c.id >= 0 {
		return u.allowed[c.id/64]&(1<<(c.id%64)) != 0
	}
	// A command learned from the servers, not in the table the rules
	// were compiled against: replay the rules on it alone, which is what
	// the bitmap holds for a command of the table.
	on := false
	for _, r := range u.rules {
		switch {
		case r.all:
			on = r.allow
		case r.cat >= 0 && c.cats&(1<<r.cat) != 0:
			on = r.allow
		case r.name != "" && r.name == c.Name:
			on = r.allow
		}
	}
	return on
}

// deniedKey checks every key of every key spec, with the permission the
// spec's flags ask for (redis's ACLSelectorCheckKey), and returns the
// index of the first key refused, 0 if none.
func (u *User) deniedKey(c *Command, args [][]byte) int {
	var idx [16]int
	for i := range c.lc.Specs {
		s := &c.lc.Specs[i]
		if s.Flags&resp.KeyNotKey != 0 {
			continue
		}
		one := resp.LearnedCommand{Specs: c.lc.Specs[i : i+1]}
		keys, err := one.Keys(args, idx[:0])
		if err != nil {
			// No key, or a key count the command will reject itself:
			// redis's fallback names no key either.
			continue
		}
		need := keyPerm(c, s.Flags, args)
		for _, k := range keys {
			if !u.keyAllowed(args[k], need) {
				return k
			}
		}
	}
	return 0
}

func keyPerm(c *Command, f resp.KeySpecFlags, args [][]byte) uint8 {
	if f&resp.KeyVariableFlags != 0 {
		f = variableFlags(c.Name, args, f)
	}
	var need uint8
	if f&resp.KeyAccess != 0 {
		need |= permRead
	}
	if f&(resp.KeyInsert|resp.KeyDelete|resp.KeyUpdate) != 0 {
		need |= permWrite
	}
	return need
}

// variableFlags is redis's setGetKeys and bitfieldGetKeys: the flags of
// the key of SET and BITFIELD depend on their options.
func variableFlags(name string, args [][]byte, f resp.KeySpecFlags) resp.KeySpecFlags {
	switch name {
	case "set":
		for _, a := range args[min(3, len(args)):] {
			if len(a) == 3 && a[0]|0x20 == 'g' && a[1]|0x20 == 'e' && a[2]|0x20 == 't' {
				return resp.KeyRW | resp.KeyAccess | resp.KeyUpdate
			}
		}
		return resp.KeyOW | resp.KeyUpdate
	case "bitfield":
		for i := 2; i < len(args); i++ {
			rem := len(args) - i - 1
			switch op := strings.ToLower(string(args[i])); {
			case op == "get" && rem >= 2:
				i += 2
			case op == "overflow" && rem >= 1:
				i++
			default:
				return resp.KeyRW | resp.KeyAccess | resp.KeyUpdate
			}
		}
		return resp.KeyRO | resp.KeyAccess
	}
	return f
}

func (u *User) keyAllowed(key []byte, need uint8) bool {
	for i := range u.keys {
		p := &u.keys[i]
		if p.flags&need == need && Match(p.pat, key) {
			return true
		}
	}
	return false
}

func (u *User) deniedChannel(c *Command, args [][]byte) int {
	chans := args[1:]
	if c.chans == chanFirst {
		chans = args[1:min(2, len(args))]
	}
	for i, ch := range chans {
		ok := false
		for _, p := range u.channels {
			// A PSUBSCRIBE pattern must be one of the user's patterns
			// literally (redis's ACLCheckChannelAgainstList).
			if c.chans == chanPattern && string(p) == string(ch) || c.chans != chanPattern && Match(p, ch) {
				ok = true
				break
			}
		}
		if !ok {
			return i + 1
		}
	}
	return 0
}

// CommandFor makes a Command for a command the servers described that
// the table does not know (a newer redis's): rules reach it through its
// categories, and allcommands.
func CommandFor(lc *resp.LearnedCommand) *Command {
	c := &Command{Name: lc.Name, id: -1, lc: lc, NoAuth: lc.Flags&resp.CmdNoAuth != 0, chans: channelCommands[lc.Name]}
	for _, cat := range lc.Categories {
		if i := categoryIndex(cat); i >= 0 {
			c.cats |= 1 << i
		}
	}
	return c
}
