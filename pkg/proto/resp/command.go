package resp

import (
	"bytes"
	"fmt"
)

// Kind tells the engine how to route a command.
type Kind uint8

const (
	// KindUnsupported commands are refused; Command.Reason says why. The
	// engine serves some of them on links of their own (transactions,
	// blocking calls, pub/sub) or over every server (SCAN, DBSIZE, ...):
	// pkg/proxy/redis_txn.go.
	KindUnsupported Kind = iota
	// KindSingleKey commands go to the server of their first key (the
	// first index Keys returns). With CrossKey set they name more keys,
	// which must all live on that server.
	KindSingleKey
	// KindMultiKey commands are split per server and their replies merged:
	// MGET, DEL, UNLINK, TOUCH, EXISTS (Step 1) and MSET (Step 2, key then
	// value).
	KindMultiKey
	// KindEval commands (EVAL, EVALSHA, FCALL and their _RO forms) take
	// their key count at argument KeyNum (2) and are routed by the first
	// key; a key count of 0 is an error (ErrNoKeys from Keys).
	KindEval
	// KindLocal commands are answered by the proxy itself (PING, QUIT,
	// AUTH, SELECT, ...).
	KindLocal
)

var kindNames = [...]string{"unsupported", "single-key", "multi-key", "eval", "local"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Command describes a redis 7 command. Name, Arity and the key positions
// come from redis's COMMAND output (commands_table.go); Kind, CrossKey and
// Reason are the proxy's policy (commandPolicy).
type Command struct {
	Name string // lowercase
	// Arity follows redis: > 0 is the exact argument count, < 0 the
	// minimum, both counting the command name.
	Arity int
	Kind  Kind
	// FirstKey, LastKey and Step are redis's legacy key range (COMMAND
	// INFO): keys are args[FirstKey], args[FirstKey+Step], ... up to
	// LastKey, which counts from the end when negative. FirstKey is 0 when
	// the range names no key.
	FirstKey, LastKey, Step int
	// KeyNum > 0 is the index of a numkeys argument; that many keys follow
	// it (EVAL, ZUNION, ZINTERSTORE's sources, ...). Use Keys, not the
	// range, for such commands.
	KeyNum int
	// CrossKey marks KindSingleKey and KindEval commands that may name
	// several keys (RPOPLPUSH, SUNIONSTORE, ZUNION, EVAL, ...). twemproxy
	// sends them to the first key's server unchecked.
	CrossKey bool
	// Reason is a short explanation for KindUnsupported.
	Reason string
	// ReadOnly is redis's readonly flag: running the command twice
	// changes nothing, so it may be replayed after a lost connection.
	ReadOnly bool
	// Learned is set for commands learned from a server's COMMAND reply
	// (Classify): Keys follows its key specs instead of the fields above.
	Learned *LearnedCommand
}

// Unsupported reasons.
const (
	ReasonBlocking    = "blocking command"
	ReasonPubSub      = "pub/sub"
	ReasonTransaction = "transactions"
	ReasonSpan        = "keys may span servers"
	ReasonServer      = "server command"
	ReasonCluster     = "cluster command"
	ReasonSubcommand  = "keys in subcommands"
	ReasonConnection  = "connection state"
	ReasonDatabase    = "the pool serves one database"
	// WAIT counts the replicas that have the writes of the connection it
	// is sent on; a client's writes travel on the proxy's shared links.
	ReasonWait = "the client's writes travel on the proxy's shared server connections, whose replication WAIT cannot follow"
)

type policy struct {
	kind   Kind
	reason string
}

// commandPolicy is the proxy's decision for every redis command that the
// default rule in classify does not cover. It follows twemproxy 0.5's
// src/proto/nc_redis.c, extended to redis 7 commands of the same shape.
var commandPolicy = map[string]policy{
	// Split and merged (twemproxy redis_argx / redis_argkvx). twemproxy
	// does not split EXISTS; the proxy does, so its count is correct.
	"mget": {KindMultiKey, ""}, "del": {KindMultiKey, ""}, "unlink": {KindMultiKey, ""},
	"touch": {KindMultiKey, ""}, "exists": {KindMultiKey, ""}, "mset": {KindMultiKey, ""},

	"eval": {KindEval, ""}, "evalsha": {KindEval, ""}, "eval_ro": {KindEval, ""},
	"evalsha_ro": {KindEval, ""}, "fcall": {KindEval, ""}, "fcall_ro": {KindEval, ""},

	// twemproxy answers PING, QUIT and AUTH itself and forwards COMMAND and
	// LOLWUT to any server; the engine decides how to answer these.
	"ping": {KindLocal, ""}, "echo": {KindLocal, ""}, "quit": {KindLocal, ""},
	"select": {KindLocal, ""}, "auth": {KindLocal, ""}, "hello": {KindLocal, ""},
	"command": {KindLocal, ""}, "client": {KindLocal, ""}, "lolwut": {KindLocal, ""},

	// Movable keys that twemproxy still routes by the first key: SORT's
	// BY/GET/STORE and GEORADIUS's STORE name keys the proxy cannot see.
	"sort": {KindSingleKey, ""}, "sort_ro": {KindSingleKey, ""},
	"georadius": {KindSingleKey, ""}, "georadiusbymember": {KindSingleKey, ""},
	// Key count arguments: Keys finds every key (twemproxy hashes ZDIFF's
	// numkeys argument as if it were the key).
	"zdiff": {KindSingleKey, ""}, "zinter": {KindSingleKey, ""}, "zunion": {KindSingleKey, ""},
	"zdiffstore": {KindSingleKey, ""}, "zinterstore": {KindSingleKey, ""},
	"zunionstore": {KindSingleKey, ""}, "sintercard": {KindSingleKey, ""},
	"zintercard": {KindSingleKey, ""}, "lmpop": {KindSingleKey, ""}, "zmpop": {KindSingleKey, ""},

	"multi": {KindUnsupported, ReasonTransaction}, "exec": {KindUnsupported, ReasonTransaction},
	"discard": {KindUnsupported, ReasonTransaction}, "watch": {KindUnsupported, ReasonTransaction},
	"unwatch": {KindUnsupported, ReasonTransaction},

	"keys": {KindUnsupported, ReasonSpan}, "scan": {KindUnsupported, ReasonSpan},
	"randomkey": {KindUnsupported, ReasonSpan}, "rename": {KindUnsupported, ReasonSpan},
	"renamenx": {KindUnsupported, ReasonSpan}, "msetnx": {KindUnsupported, ReasonSpan},
	"bitop": {KindUnsupported, ReasonSpan}, "migrate": {KindUnsupported, ReasonSpan},

	"publish": {KindUnsupported, ReasonPubSub}, "pubsub": {KindUnsupported, ReasonPubSub},

	"readonly": {KindLocal, ""}, "readwrite": {KindLocal, ""},
	"asking": {KindUnsupported, ReasonCluster}, "cluster": {KindUnsupported, ReasonCluster},
	"restore-asking": {KindUnsupported, ReasonCluster},

	"object": {KindUnsupported, ReasonSubcommand}, "xinfo": {KindUnsupported, ReasonSubcommand},
	"xgroup": {KindUnsupported, ReasonSubcommand},

	"reset": {KindLocal, ""},

	// MOVE takes a key out of the pool's redis_db, where no client of the
	// proxy can see it again; twemproxy refuses it too.
	"move": {KindUnsupported, ReasonDatabase},

	"acl": {KindUnsupported, ReasonServer}, "config": {KindUnsupported, ReasonServer},
	"dbsize": {KindUnsupported, ReasonServer}, "flushall": {KindUnsupported, ReasonServer},
	"flushdb": {KindUnsupported, ReasonServer}, "function": {KindUnsupported, ReasonServer},
	"info": {KindLocal, ""}, "lastsave": {KindUnsupported, ReasonServer},
	"latency": {KindUnsupported, ReasonServer}, "memory": {KindUnsupported, ReasonServer},
	"module": {KindUnsupported, ReasonServer}, "script": {KindUnsupported, ReasonServer},
	"slowlog": {KindUnsupported, ReasonServer}, "swapdb": {KindUnsupported, ReasonServer},
	"time": {KindUnsupported, ReasonServer}, "wait": {KindUnsupported, ReasonWait},
	"role": {KindUnsupported, ReasonServer},
}

// classify applies commandPolicy, then the default rules: blocking and
// pub/sub commands and admin commands are refused, commands whose keys sit
// at fixed positions from argument 1 are routed by their first key. It
// returns ok=false for a command no rule covers, so that a new redis
// command cannot slip in without a decision (TestEveryCommandClassified).
func classify(f *redisCommand) (p policy, ok bool) {
	if p, ok := commandPolicy[f.name]; ok {
		return p, true
	}
	switch {
	case f.flags&flagBlocking != 0:
		return policy{KindUnsupported, ReasonBlocking}, true
	case f.flags&flagPubSub != 0:
		return policy{KindUnsupported, ReasonPubSub}, true
	case f.flags&flagAdmin != 0:
		return policy{KindUnsupported, ReasonServer}, true
	case f.first == 1 && f.keyNum == 0 && f.flags&flagMovable == 0:
		return policy{KindSingleKey, ""}, true
	}
	return policy{}, false
}

var commands = buildCommands()

func buildCommands() map[string]*Command {
	m := make(map[string]*Command, len(redisCommands))
	for i := range redisCommands {
		f := &redisCommands[i]
		p, ok := classify(f)
		if !ok {
			p = policy{KindUnsupported, "not supported by the proxy"}
		}
		c := &Command{
			Name: f.name, Arity: f.arity, Kind: p.kind,
			FirstKey: f.first, LastKey: f.last, Step: f.step,
			KeyNum: f.keyNum, Reason: p.reason, ReadOnly: f.flags&flagReadonly != 0,
		}
		if p.kind == KindSingleKey || p.kind == KindEval {
			c.CrossKey = c.KeyNum > 0 || c.LastKey != c.FirstKey
		}
		m[f.name] = c
	}
	return m
}

// maxNameLen bounds the names Lookup lowercases on the stack; the longest
// redis 7 command name has 20 bytes.
const maxNameLen = 32

// GET and SET are most of what a cache sees: Lookup compares them before
// hashing for the map. x|0x20 equals a lowercase letter only for that
// letter in either case.
var cmdGet, cmdSet = commands["get"], commands["set"]

// Lookup finds a command by name, case-insensitively, without allocating.
func Lookup(name []byte) (*Command, bool) {
	if len(name) == 3 && name[1]|0x20 == 'e' && name[2]|0x20 == 't' {
		switch name[0] | 0x20 {
		case 'g':
			return cmdGet, true
		case 's':
			return cmdSet, true
		}
	}
	if len(name) > maxNameLen {
		return nil, false
	}
	var b [maxNameLen]byte
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	c, ok := commands[string(b[:len(name)])]
	return c, ok
}

// Commands calls fn for every known command, in no particular order.
func Commands(fn func(*Command)) {
	for _, c := range commands {
		fn(c)
	}
}

// CheckArity reports whether nargs arguments (the name included) suit c, by
// redis's rule. MSET must also come in key-value pairs, which redis checks
// inside the command and the proxy must check before splitting it.
func CheckArity(c *Command, nargs int) bool {
	if c.Arity > 0 && nargs != c.Arity || nargs < -c.Arity {
		return false
	}
	if c.Kind == KindMultiKey && c.Step > 1 && (nargs-1)%c.Step != 0 {
		return false
	}
	return true
}

// Keys appends to dst the indexes in args of c's keys, in routing order:
// the first is the key that places the request. It does not allocate when
// dst has room. It fails with ErrNoKeys when the command names no key and
// with ErrKeyCount, ErrKeyCountNeg or ErrKeyCountBig (redis's EVAL texts)
// when a numkeys argument is invalid; redis's exact text for other commands
// differs, so the engine may forward such a request to get it. Arity must
// have been checked.
func Keys(c *Command, args [][]byte, dst []int) ([]int, error) {
	if c.Learned != nil {
		return c.Learned.Keys(args, dst)
	}
	start := len(dst)
	if c.FirstKey > 0 {
		last := c.LastKey
		if last < 0 {
			last += len(args)
		}
		last = min(last, len(args)-1)
		for i := c.FirstKey; i <= last; i += max(c.Step, 1) {
			dst = append(dst, i)
		}
	}
	if c.KeyNum > 0 {
		if c.KeyNum >= len(args) {
			return dst[:start], ErrKeyCount
		}
		n, ok := parseLL(args[c.KeyNum])
		switch {
		case !ok:
			return dst[:start], ErrKeyCount
		case n < 0:
			return dst[:start], ErrKeyCountNeg
		case n > int64(len(args)-c.KeyNum-1):
			return dst[:start], ErrKeyCountBig
		}
		for i := c.KeyNum + 1; i <= c.KeyNum+int(n); i++ {
			dst = append(dst, i)
		}
	}
	if len(dst) == start {
		return dst, ErrNoKeys
	}
	return dst, nil
}

// AppendWrongArgs appends redis 7's arity error for the command name,
// lowercased as redis prints its full name:
// "-ERR wrong number of arguments for 'get' command\r\n".
func AppendWrongArgs(dst, name []byte) []byte {
	dst = append(dst, "-ERR wrong number of arguments for '"...)
	for _, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, "' command\r\n"...)
}

// AppendUnknownCommand appends redis 7's reply to an unknown command:
// "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n".
// Like redis it prints at most 128 bytes of the name and of the arguments
// together, stops each at a NUL byte (C strings) and turns CR and LF into
// spaces.
func AppendUnknownCommand(dst []byte, args [][]byte) []byte {
	if len(args) == 0 {
		return dst
	}
	dst = append(dst, "-ERR unknown command '"...)
	dst = appendSafe(dst, cString(args[0]), 128)
	dst = append(dst, "', with args beginning with: "...)
	used := 0
	for _, a := range args[1:] {
		if used >= 128 {
			break
		}
		a = cString(a)
		a = a[:min(len(a), 128-used)]
		dst = append(dst, '\'')
		dst = appendSafe(dst, a, len(a))
		dst = append(dst, '\'', ' ')
		used += len(a) + 3
	}
	return append(dst, '\r', '\n')
}

func cString(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

func appendSafe(dst, b []byte, limit int) []byte {
	for _, c := range b[:min(len(b), limit)] {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}
