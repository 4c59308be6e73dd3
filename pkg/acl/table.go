package acl

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// The command table ACL rules are resolved against: redis 7.0.15's own
// COMMAND reply, with every command's ACL categories, key specs (whose
// access flags %R~ and %W~ check) and subcommands.
//
//go:embed redis-7.0.15-command.resp.gz
var commandReply []byte

// Categories are redis 7.0's ACL categories (ACL CAT), in redis's order.
var Categories = []string{
	"keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
	"bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
	"blocking", "dangerous", "connection", "transaction", "scripting",
}

// Command is one command or subcommand as ACL rules see it.
type Command struct {
	// Name is redis's full name: "get", "config|get".
	Name string
	id   int
	cats uint32
	// NoAuth commands (AUTH, HELLO, QUIT, RESET) run for any user.
	NoAuth bool
	lc     *resp.LearnedCommand
	subs   map[string]*Command
	parent *Command
	chans  chanKind
}

// chanKind is how a command names pub/sub channels.
type chanKind uint8

const (
	chanNone    chanKind = iota
	chanFirst            // PUBLISH, SPUBLISH: argument 1
	chanAll              // SUBSCRIBE, SSUBSCRIBE: every argument
	chanPattern          // PSUBSCRIBE: every argument, a pattern
)

var channelCommands = map[string]chanKind{
	"publish": chanFirst, "spublish": chanFirst,
	"subscribe": chanAll, "ssubscribe": chanAll, "psubscribe": chanPattern,
}

// Table is a set of commands rules are compiled against.
type Table struct {
	top map[string]*Command
	all []*Command // by id
}

var (
	builtinOnce sync.Once
	builtin     *Table
	builtinErr  error
)

// Builtin returns the table of redis 7.0.15's commands, parsed once.
func Builtin() *Table {
	builtinOnce.Do(func() {
		builtin, builtinErr = loadBuiltin()
	})
	if builtinErr != nil {
		// The reply is embedded and tested: this cannot happen in a build
		// that passed its tests.
		panic(builtinErr)
	}
	return builtin
}

func loadBuiltin() (*Table, error) {
	zr, err := gzip.NewReader(bytes.NewReader(commandReply))
	if err != nil {
		return nil, fmt.Errorf("acl: command table: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("acl: command table: %w", err)
	}
	kt, err := resp.ParseCommandReply(raw)
	if err != nil {
		return nil, fmt.Errorf("acl: command table: %w", err)
	}
	return NewTable(kt), nil
}

// NewTable makes a table of the commands a COMMAND reply described.
func NewTable(kt *resp.KeySpecTable) *Table {
	t := &Table{top: map[string]*Command{}}
	var lcs []*resp.LearnedCommand
	kt.Each(func(lc *resp.LearnedCommand) { lcs = append(lcs, lc) })
	// Ids in name order, so that a table is the same on every run.
	sort.Slice(lcs, func(i, j int) bool { return lcs[i].Name < lcs[j].Name })
	for _, lc := range lcs {
		c := t.add(lc, nil)
		for _, sl := range lc.Subs {
			sc := t.add(sl, c)
			if c.subs == nil {
				c.subs = map[string]*Command{}
			}
			_, sub, _ := strings.Cut(sl.Name, "|")
			c.subs[sub] = sc
		}
	}
	return t
}

func (t *Table) add(lc *resp.LearnedCommand, parent *Command) *Command {
	c := &Command{Name: lc.Name, id: len(t.all), lc: lc, parent: parent,
		NoAuth: lc.Flags&resp.CmdNoAuth != 0, chans: channelCommands[lc.Name]}
	for _, cat := range lc.Categories {
		if i := categoryIndex(cat); i >= 0 {
			c.cats |= 1 << i
		}
	}
	t.all = append(t.all, c)
	if parent == nil {
		t.top[lc.Name] = c
	}
	return c
}

func categoryIndex(name string) int {
	for i, c := range Categories {
		if c == name {
			return i
		}
	}
	return -1
}

// maxName bounds the names Lookup lowercases on the stack.
const maxName = 64

// Lookup finds the command a request runs: the command named by args[0]
// and, for a container (CONFIG, CLIENT, OBJECT, ...), its subcommand
// args[1]. ok is false for a name the table does not know; sub is
// false when args[1] is not a subcommand the table knows (then cmd is the
// container).
func (t *Table) Lookup(args [][]byte) (cmd *Command, ok bool) {
	if len(args) == 0 {
		return nil, false
	}
	var buf [maxName]byte
	name, fits := lowerInto(&buf, args[0])
	if !fits {
		return nil, false
	}
	// The compiler does not allocate for m[string(b)].
	c := t.top[string(name)]
	if c == nil {
		return nil, false
	}
	if c.subs != nil && len(args) > 1 {
		if sub, fits := lowerInto(&buf, args[1]); fits {
			if sc := c.subs[string(sub)]; sc != nil {
				return sc, true
			}
		}
	}
	return c, true
}

func lowerInto(buf *[maxName]byte, b []byte) ([]byte, bool) {
	if len(b) > maxName {
		return nil, false
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(b)], true
}

// command returns the command named name ("get", "config|get").
func (t *Table) command(name string) *Command {
	top, sub, isSub := strings.Cut(name, "|")
	c := t.top[top]
	if c == nil || !isSub {
		return c
	}
	return c.subs[sub]
}

// HasSubcommands reports whether the command is a container.
func (c *Command) HasSubcommands() bool { return c.subs != nil }

// Container returns the command a subcommand belongs to, or nil.
func (c *Command) Container() *Command { return c.parent }
