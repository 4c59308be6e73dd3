// Package redisdiff is the project's Redis differential script and the
// session that sends it: test/integration runs it through nuthatch and
// nutcracker (and against redis-server in RESP3), test/cluster through a
// cluster pool against one redis-server. Replies must be byte-identical
// but for steps tagged with an expected difference, each a row of a table
// in docs/redis.md; a step that differs without a tag fails, and so does
// a tagged step that no longer differs, so the lists stay exact.
package redisdiff

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Expected differences from nutcracker 0.5.0 (docs/redis.md, "Differences
// from twemproxy").
const (
	// nutcracker closes the connection without a reply on a command it
	// refuses (KEYS, MULTI, ...); nuthatch answers -ERR and keeps it.
	Refused = "refused-command"
	// nutcracker closes on a wrong argument count (or a numkeys that is
	// not a number); nuthatch replies with redis's own error.
	Arity = "wrong-arity"
	// nutcracker closes on an unknown command; nuthatch replies with
	// redis's unknown-command error.
	Unknown = "unknown-command"
	// nutcracker 0.5.0 does not know the command (redis 6.2/7 commands,
	// streams) or the newer syntax of one it knows; nuthatch forwards it.
	Newer = "newer-command"
	// nutcracker closes on inline commands; nuthatch parses them.
	Inline = "inline"
	// nutcracker closes on ECHO, SELECT, HELLO, CLIENT, PING <msg>,
	// COMMAND <sub>; nuthatch answers them locally (or forwards COMMAND).
	Local = "local-command"
	// QUIT: nutcracker closes silently, nuthatch replies +OK first as
	// redis does.
	Quit = "quit-ok"
	// AUTH errors: nuthatch uses redis 7's texts, nutcracker redis 2.x's.
	AuthText = "auth-text"
	// EXISTS with keys on several servers: nutcracker sends it whole to the
	// first key's server and counts only its keys; nuthatch splits it.
	ExistsSplit = "exists-split"
	// A command naming several keys that live on different servers:
	// nutcracker runs it on the first key's server, where the other keys
	// are missing; nuthatch refuses it.
	CrossKey = "cross-server-keys"
	// EVAL with numkeys 0: nutcracker closes, nuthatch replies -ERR.
	EvalNoKey = "eval-no-key"
	// ZDIFF/ZINTER/ZUNION (and their STORE forms with an explicit
	// destination first): nutcracker hashes the numkeys argument as if it
	// were the key; nuthatch routes by the first real key.
	Numkeys = "numkeys-routing"
	// Stateful commands (transactions, blocking calls, pub/sub) and
	// DBSIZE and SCRIPT over every server: nutcracker closes, nuthatch
	// answers as redis does (pinned links, docs/redis.md "Stateful
	// commands").
	Stateful = "stateful-command"
	// SCAN and RANDOMKEY: nutcracker closes; nuthatch answers from one
	// server (SCAN's cursor names it, RANDOMKEY picks one at random), so
	// the reply is not a single redis's.
	WholePool = "whole-pool"
)

// Expected differences of a cluster pool from one redis-server
// (docs/redis.md, "Redis Cluster").
const (
	// ClusterCrossSlot: keys of two slots in a command that needs one:
	// Redis Cluster's own -CROSSSLOT, where one redis-server runs it.
	// The other differences of a cluster pool from one redis-server are
	// the nutcracker ones of the same name: Refused (KEYS, CONFIG, WAIT,
	// MOVE: refused by the proxy, run by redis-server), WholePool (SCAN's
	// cursor names a node, RANDOMKEY and TIME are a node's), EvalNoKey,
	// Local (INFO and HELLO answered by the proxy).
	ClusterCrossSlot = "cross-slot"
)

// Step is one request of the script.
type Step struct {
	Req  []byte
	Norm func(t *testing.T, reply []byte) []byte // makes unordered replies comparable
	// Diff is the expected difference through nutcracker, ClusterDiff
	// through a cluster pool from one redis-server; "" for none.
	Diff, ClusterDiff string
	What              string
	onlyCluster       bool // in the cluster's script only
	// skipCluster: not in the cluster's script (FLUSHALL, refused by the
	// proxy, would empty the redis-server compared with).
	skipCluster bool
	// randomKey: the reply is a key picked at random (RANDOMKEY): only
	// its type is compared.
	randomKey bool
}

func (s Step) differs(id string) Step        { s.Diff = id; return s }
func (s Step) clusterDiffers(id string) Step { s.ClusterDiff = id; return s }
func (s Step) clusterOnly() Step             { s.onlyCluster = true; return s }
func (s Step) notCluster() Step              { s.skipCluster = true; return s }
func (s Step) anyKey() Step                  { s.randomKey = true; return s }
func (s Step) sorted() Step                  { s.Norm = SortElems; return s }
func (s Step) sortedScan() Step              { s.Norm = sortScan; return s }
func (s Step) counted() Step                 { s.Norm = countElems; return s }

// Cmd is a step of one command.
func Cmd(args ...string) Step {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return Step{Req: resp.AppendCommand(nil, bs), What: strings.Join(args, " ")}
}

func cmd(args ...string) Step { return Cmd(args...) }

func rawStep(req string) Step {
	return Step{Req: []byte(req), What: fmt.Sprintf("raw %q", req)}
}

// Layout is where the side under test places keys.
type Layout struct {
	// Server is 0 or 1: which of two servers holds key (for a cluster,
	// of two sets of slots), for the steps about keys kept apart.
	Server func(key []byte) int
	// Cluster: the script goes through a cluster pool; commands that
	// need one slot get tagged keys.
	Cluster bool
}

// placedKeys returns n keys starting with prefix that live on server idx.
func (l Layout) placedKeys(prefix string, idx, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if k := prefix + strconv.Itoa(i); l.Server([]byte(k)) == idx {
			out = append(out, k)
		}
	}
	return out
}

// PlacedKeys is placedKeys, for a test's own checks.
func (l Layout) PlacedKeys(prefix string, idx, n int) []string { return l.placedKeys(prefix, idx, n) }

// taggedKeys returns n keys sharing a hash tag that lives on server idx.
func (l Layout) taggedKeys(idx, n int) []string {
	for i := 0; ; i++ {
		tag := fmt.Sprintf("{t%d}", i)
		if l.Server([]byte(tag)) != idx {
			continue
		}
		out := make([]string, n)
		for j := range out {
			out[j] = tag + strconv.Itoa(j)
		}
		return out
	}
}

// Script is the sequence sent to both sides, its keys placed by l. Keys
// in {} share a hash tag, so cross-key commands stay on one server (one
// slot).
func Script(l Layout) []Step {
	// Keys of known placement: on1[i] lives on s1, on2[i] on s2, and
	// away2 on the server that does not own the key "2".
	on1, on2 := l.placedKeys("p1:", 0, 3), l.placedKeys("p2:", 1, 3)
	away2 := l.taggedKeys(1-l.Server([]byte("2")), 2)
	// The keys of commands that need them in one slot (RENAME, LCS,
	// BITOP, MSETNX): through nutcracker the script's first keys (the
	// commands are refused or unknown there); in a cluster tagged ones,
	// given values by steps of the cluster's script only.
	ren, lcs, bit := []string{"str:a", "str:z"}, []string{"str:b", "str:c"}, []string{"bit:c", "bit:a", "bit:b"}
	// MOVE, refused by the proxy, runs on one redis-server: there a
	// missing key, so that nothing moves.
	move := "str:a"
	if l.Cluster {
		move = "move:none"
		ren, lcs, bit = []string{"{ren}a", "{ren}z"}, []string{"{lcs}b", "{lcs}c"}, []string{"{bit}c", "{bit}a", "{bit}b"}
	}
	big := strings.Repeat("0123456789abcdef", 100<<10/16) // 100 KiB
	edge := strings.Repeat("e", 16<<10-40)                // a request near the 16 KiB read buffer
	bin := "\x00\r\n\xff\x01binary\r\n$3\r\n"
	s := []Step{
		// Strings.
		cmd("SET", "str:a", "1"), cmd("GET", "str:a"), cmd("INCR", "str:a"), cmd("INCRBY", "str:a", "41"),
		cmd("DECR", "str:a"), cmd("DECRBY", "str:a", "2"), cmd("INCRBYFLOAT", "str:a", "0.5"),
		cmd("GET", "str:a"), cmd("APPEND", "str:b", "hello"), cmd("APPEND", "str:b", " world"),
		cmd("STRLEN", "str:b"), cmd("GETRANGE", "str:b", "0", "4"), cmd("SETRANGE", "str:b", "6", "WORLD"),
		cmd("GET", "str:b"), cmd("GETSET", "str:b", "new"), cmd("SETNX", "str:b", "x"), cmd("SETNX", "str:c", "x"),
		cmd("SETEX", "str:ex", "100", "v"), cmd("TTL", "str:ex"), cmd("PSETEX", "str:px", "100000", "v"),
		cmd("SET", "str:d", "v", "NX"), cmd("SET", "str:d", "w", "XX"), cmd("SET", "str:d", "z", "NX", "XX"),
		cmd("SET", "str:e", "v", "EX", "100"), cmd("SET", "str:e", "v", "EX", "0"), cmd("SET", "str:e", "v", "EX", "abc"),
		cmd("SET", "str:d", "v2", "GET"), cmd("SET", "str:d", "v3", "KEEPTTL"),
		cmd("GETDEL", "str:d"), cmd("GETDEL", "str:d"), cmd("GETEX", "str:e", "PERSIST"), cmd("TTL", "str:e"),
		cmd("GET", "missing"), cmd("INCR", "str:b"), cmd("INCRBYFLOAT", "str:b", "1"), cmd("INCRBY", "str:c", "1.5"),
		cmd("SET", "", "empty-key"), cmd("GET", ""), cmd("SET", "str:empty", ""), cmd("GET", "str:empty"),
		cmd("SET", "str:bin", bin), cmd("GET", "str:bin"), cmd("SET", bin, "binary key"), cmd("GET", bin),
		cmd("SET", "str:big", big), cmd("GET", "str:big"), cmd("APPEND", "str:big", "tail"), cmd("STRLEN", "str:big"),
		cmd("SET", "str:edge", edge), cmd("GET", "str:edge"),
		cmd("SUBSTR", "str:b", "0", "1").differs(Newer),
		cmd("SET", lcs[0], "ohmytext").clusterOnly(), cmd("SET", lcs[1], "mynewtext").clusterOnly(),
		cmd("LCS", lcs[0], lcs[1]).differs(Newer),

		// Bitmaps.
		cmd("SETBIT", "bit:a", "7", "1"), cmd("SETBIT", "bit:a", "100", "1"), cmd("GETBIT", "bit:a", "7"),
		cmd("GETBIT", "bit:a", "8"), cmd("BITCOUNT", "bit:a"), cmd("BITCOUNT", "bit:a", "0", "0"),
		cmd("BITPOS", "bit:a", "1"), cmd("BITPOS", "bit:a", "0"), cmd("SETBIT", "bit:a", "7", "2"),
		cmd("BITFIELD", "bit:b", "SET", "u8", "0", "255", "GET", "u4", "0", "INCRBY", "u8", "0", "10"),
		cmd("BITFIELD_RO", "bit:b", "GET", "u8", "0").differs(Newer),
		cmd("SET", bit[1], "abc").clusterOnly(), cmd("SET", bit[2], "abd").clusterOnly(),
		cmd("BITOP", "AND", bit[0], bit[1], bit[2]).differs(Refused), cmd("GET", bit[0]).clusterOnly(),

		// TTL family.
		cmd("SET", "ttl:a", "v"), cmd("EXPIRE", "ttl:a", "100"), cmd("TTL", "ttl:a"), cmd("PERSIST", "ttl:a"),
		cmd("TTL", "ttl:a"), cmd("PTTL", "ttl:a"), cmd("TTL", "missing"), cmd("PTTL", "missing"),
		cmd("EXPIREAT", "ttl:a", "4102444800"), cmd("TTL", "ttl:a"), cmd("PEXPIREAT", "ttl:a", "4102444800000"),
		cmd("EXPIRETIME", "ttl:a").differs(Newer), cmd("PEXPIRETIME", "ttl:a").differs(Newer),
		cmd("PEXPIRE", "ttl:a", "100000"), cmd("EXPIRE", "ttl:a", "100", "NX").differs(Newer),
		cmd("EXPIRE", "ttl:a", "notanumber"), cmd("TYPE", "ttl:a"), cmd("TYPE", "missing"),
		cmd("TOUCH", "ttl:a"), cmd("TOUCH", "ttl:a", "str:a", "missing", "str:b"),
		cmd("EXPIRE", "ttl:gone", "0"), cmd("SET", "ttl:b", "v", "PX", "1"),

		// Hashes.
		cmd("HSET", "h:a", "f1", "v1", "f2", "v2"), cmd("HGET", "h:a", "f1"), cmd("HGET", "h:a", "nope"),
		cmd("HMSET", "h:a", "f3", "v3"), cmd("HMGET", "h:a", "f1", "nope", "f3"), cmd("HGETALL", "h:a"),
		cmd("HKEYS", "h:a"), cmd("HVALS", "h:a"), cmd("HLEN", "h:a"), cmd("HEXISTS", "h:a", "f2"),
		cmd("HDEL", "h:a", "f2", "nope"), cmd("HSETNX", "h:a", "f1", "x"), cmd("HSETNX", "h:a", "f9", "x"),
		cmd("HINCRBY", "h:a", "n", "5"), cmd("HINCRBYFLOAT", "h:a", "n", "1.25"), cmd("HINCRBY", "h:a", "f1", "1"),
		cmd("HSTRLEN", "h:a", "f1"), cmd("HSCAN", "h:a", "0"), cmd("HSCAN", "h:a", "0", "MATCH", "f*", "COUNT", "100"),
		cmd("HRANDFIELD", "h:a", "100").sorted(),
		cmd("HSET", "h:a", "odd"), cmd("HGETALL", "missing"),

		// Lists.
		cmd("RPUSH", "l:a", "a", "b", "c"), cmd("LPUSH", "l:a", "z"), cmd("LRANGE", "l:a", "0", "-1"),
		cmd("LLEN", "l:a"), cmd("LINDEX", "l:a", "1"), cmd("LINSERT", "l:a", "BEFORE", "b", "ins"),
		cmd("LINSERT", "l:a", "AFTER", "nope", "x"), cmd("LSET", "l:a", "0", "first"), cmd("LSET", "l:a", "99", "x"),
		cmd("LREM", "l:a", "1", "ins"), cmd("LPOS", "l:a", "c"), cmd("LPOP", "l:a"), cmd("RPOP", "l:a"),
		cmd("LPOP", "l:a", "2"), cmd("RPUSHX", "l:a", "x"), cmd("LPUSHX", "l:none", "x"), cmd("LTRIM", "l:a", "0", "0"),
		cmd("RPUSH", "{l}src", "1", "2", "3"), cmd("RPOPLPUSH", "{l}src", "{l}dst"),
		cmd("LMOVE", "{l}src", "{l}dst", "LEFT", "RIGHT"), cmd("LRANGE", "{l}dst", "0", "-1"),
		cmd("LMPOP", "1", "{l}src", "LEFT").differs(Newer),
		cmd("BLPOP", "l:blk", "0.01").differs(Stateful),
		cmd("BRPOPLPUSH", "{lb}src", "{lb}dst", "0.01").differs(Stateful),

		// Sets (string sets have no stable order in redis 7.0: sort them).
		cmd("SADD", "s:a", "x", "y", "z"), cmd("SADD", "s:a", "x"), cmd("SMEMBERS", "s:a").sorted(),
		cmd("SCARD", "s:a"), cmd("SISMEMBER", "s:a", "y"), cmd("SMISMEMBER", "s:a", "y", "q"), cmd("SREM", "s:a", "z"),
		cmd("SADD", "{s}1", "a", "b", "c"), cmd("SADD", "{s}2", "b", "c", "d"),
		cmd("SINTER", "{s}1", "{s}2").sorted(), cmd("SUNION", "{s}1", "{s}2").sorted(), cmd("SDIFF", "{s}1", "{s}2"),
		cmd("SINTERSTORE", "{s}3", "{s}1", "{s}2"), cmd("SUNIONSTORE", "{s}4", "{s}1", "{s}2"),
		cmd("SDIFFSTORE", "{s}5", "{s}1", "{s}2"), cmd("SMOVE", "{s}1", "{s}2", "a"),
		cmd("SINTERCARD", "2", "{s}1", "{s}2").differs(Newer),
		cmd("SADD", "s:int", "1", "2", "3"), cmd("SRANDMEMBER", "s:int", "10").sorted(), cmd("SSCAN", "s:a", "0").sortedScan(),
		cmd("SPOP", "s:int", "10").sorted(), cmd("SCARD", "s:int"), cmd("SPOP", "s:int"),

		// Sorted sets.
		cmd("ZADD", "z:a", "1", "one", "2", "two", "3", "three"), cmd("ZADD", "z:a", "NX", "9", "one"),
		cmd("ZADD", "z:a", "INCR", "1", "two"), cmd("ZSCORE", "z:a", "two"), cmd("ZMSCORE", "z:a", "one", "nope"),
		cmd("ZRANGE", "z:a", "0", "-1", "WITHSCORES"), cmd("ZREVRANGE", "z:a", "0", "1"), cmd("ZRANK", "z:a", "three"),
		cmd("ZREVRANK", "z:a", "three"), cmd("ZCARD", "z:a"), cmd("ZCOUNT", "z:a", "1", "2"),
		cmd("ZINCRBY", "z:a", "2.5", "one"), cmd("ZRANGEBYSCORE", "z:a", "-inf", "+inf", "WITHSCORES", "LIMIT", "0", "2"),
		cmd("ZREVRANGEBYSCORE", "z:a", "+inf", "-inf"), cmd("ZRANGE", "z:a", "(1", "5", "BYSCORE"),
		cmd("ZADD", "z:lex", "0", "a", "0", "b", "0", "c"), cmd("ZRANGEBYLEX", "z:lex", "-", "[b"),
		cmd("ZREVRANGEBYLEX", "z:lex", "+", "(a"), cmd("ZLEXCOUNT", "z:lex", "-", "+"),
		cmd("ZREMRANGEBYLEX", "z:lex", "[a", "[a"), cmd("ZREMRANGEBYRANK", "z:lex", "0", "0"),
		cmd("ZREMRANGEBYSCORE", "z:a", "100", "200"), cmd("ZREM", "z:a", "nope"), cmd("ZPOPMIN", "z:a"),
		cmd("ZPOPMAX", "z:a", "1"), cmd("ZRANDMEMBER", "z:a", "5").sorted(),
		cmd("ZADD", "{z}1", "1", "a", "2", "b"), cmd("ZADD", "{z}2", "3", "b", "4", "c"),
		cmd("ZUNIONSTORE", "{z}3", "2", "{z}1", "{z}2"), cmd("ZINTERSTORE", "{z}4", "2", "{z}1", "{z}2", "WEIGHTS", "1", "2"),
		cmd("ZRANGE", "{z}3", "0", "-1", "WITHSCORES"), cmd("ZRANGE", "{z}4", "0", "-1", "WITHSCORES"),
		cmd("ZRANGESTORE", "{z}5", "{z}3", "0", "1"), cmd("ZDIFFSTORE", "{z}6", "2", "{z}1", "{z}2"),
		cmd("ZUNION", "2", "{z}1", "{z}2", "WITHSCORES"), cmd("ZINTER", "2", "{z}1", "{z}2"), cmd("ZDIFF", "2", "{z}1", "{z}2"),
		// Keys placed away from the key "2" (nutcracker's routing key).
		cmd("ZADD", away2[0], "1", "a"), cmd("ZADD", away2[1], "1", "a"),
		cmd("ZUNION", "2", away2[0], away2[1]).differs(Numkeys),
		cmd("ZINTER", "2", away2[0], away2[1]).differs(Numkeys),
		cmd("ZINTERCARD", "2", "{z}1", "{z}2").differs(Newer),
		cmd("ZSCAN", "z:a", "0"), cmd("ZADD", "z:a", "notafloat", "x"), cmd("ZADD", "z:a", "1"),
		cmd("BZPOPMIN", "z:blk", "0.01").differs(Stateful),

		// HyperLogLog.
		cmd("PFADD", "{hll}a", "a", "b", "c"), cmd("PFADD", "{hll}b", "c", "d"), cmd("PFCOUNT", "{hll}a"),
		cmd("PFCOUNT", "{hll}a", "{hll}b"), cmd("PFMERGE", "{hll}c", "{hll}a", "{hll}b"), cmd("PFCOUNT", "{hll}c"),

		// Geo.
		cmd("GEOADD", "geo:a", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"),
		cmd("GEODIST", "geo:a", "Palermo", "Catania", "km"), cmd("GEOPOS", "geo:a", "Palermo", "nope"),
		cmd("GEOHASH", "geo:a", "Palermo"), cmd("GEORADIUS", "geo:a", "15", "37", "200", "km", "ASC"),
		cmd("GEORADIUSBYMEMBER", "geo:a", "Palermo", "300", "km", "ASC", "WITHDIST"),
		cmd("GEOSEARCH", "geo:a", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC"),
		cmd("GEOSEARCHSTORE", "{geo}b", "{geo}b", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
		cmd("GEORADIUS_RO", "geo:a", "15", "37", "200", "km").differs(Newer),
		cmd("GEOADD", "geo:a", "200", "100", "bad"),

		// Generic key commands.
		cmd("EXISTS", "str:a"), cmd("EXISTS", "missing"), cmd("EXISTS", "{s}1", "{s}2", "{s}1"),
		cmd("COPY", "{c}src", "{c}dst"), cmd("SET", "{c}src", "v"), cmd("COPY", "{c}src", "{c}dst"), cmd("GET", "{c}dst"),
		cmd("DUMP", "{c}src"), cmd("DEL", "{c}restored"),
		cmd("SORT", "l:a"), cmd("RPUSH", "l:num", "3", "1", "2"), cmd("SORT", "l:num"), cmd("SORT", "l:num", "DESC", "LIMIT", "0", "2"),
		cmd("SORT_RO", "l:num").differs(Newer), cmd("MOVE", move, "1").differs(Refused).clusterDiffers(Refused),
		cmd("OBJECT", "ENCODING", "str:a").differs(Stateful),
		cmd("SET", ren[0], "r").clusterOnly(),
		cmd("RENAME", ren[0], ren[1]).differs(Refused), cmd("RENAMENX", ren[1], ren[0]).differs(Refused),
		cmd("GET", ren[0]).clusterOnly(), cmd("RENAMENX", ren[0], ren[0]).clusterOnly(),
		cmd("KEYS", "*").differs(Refused).clusterDiffers(Refused), cmd("SCAN", "0").differs(WholePool).clusterDiffers(WholePool),
		cmd("RANDOMKEY").differs(WholePool).anyKey(), cmd("DBSIZE").differs(Stateful),

		// Streams: not in nutcracker 0.5.0.
		cmd("XADD", "x:a", "1-1", "f", "v").differs(Newer), cmd("XLEN", "x:a").differs(Newer),
		cmd("XRANGE", "x:a", "-", "+").differs(Newer),

		// Scripting.
		cmd("EVAL", "return redis.call('set', KEYS[1], ARGV[1])", "1", "ev:a", "v"),
		cmd("EVAL", "return redis.call('get', KEYS[1])", "1", "ev:a"),
		cmd("EVAL", "return {1, 2, {3, 'x', {4, redis.call('set', KEYS[1], 'y')}}}", "1", "ev:a"),
		cmd("EVAL", "return redis.error_reply('boom')", "1", "ev:a"),
		cmd("EVAL", "return redis.status_reply('FINE')", "1", "ev:a"),
		cmd("EVAL", "return {KEYS[1], KEYS[2], ARGV[1]}", "2", "{ev}1", "{ev}2", "arg"),
		cmd("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", "ev:a"),
		cmd("EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "1", "ev:a"),
		cmd("EVAL", "return 1", "0").differs(EvalNoKey).clusterDiffers(EvalNoKey),
		cmd("EVAL", "return 1", "5", "k"),
		cmd("EVAL", "return 1", "x", "k").differs(Arity),
		cmd("SCRIPT", "FLUSH").differs(Stateful),

		// Multi-key: split and merged.
		cmd("MSET", "mk:1", "a", "mk:2", "b", "mk:3", "c", "mk:4", "d", "mk:5", "e", "mk:6", "f"),
		cmd("MGET", "mk:1", "mk:2", "missing", "mk:3", "mk:4", "mk:5", "mk:6", "mk:1"),
		cmd("MGET", "mk:1"), cmd("MGET", "h:a", "mk:2"),
		cmd("DEL", "mk:1", "mk:2", "missing"), cmd("UNLINK", "mk:3", "mk:4"), cmd("TOUCH", "mk:5", "mk:6", "mk:1"),
		cmd("SET", on1[0], "1"), cmd("SET", on2[0], "2"),
		cmd("EXISTS", on1[0], on2[0], "missing").differs(ExistsSplit),
		cmd("MSET", "", "empty", "mk:bin", bin, "mk:big", big), cmd("MGET", "", "mk:bin", "mk:big"),
		cmd("MSET", "mk:edge1", edge, "mk:edge2", edge+"xy"), cmd("MGET", "mk:edge1", "mk:edge2"),
		cmd("DEL", "", "mk:bin", "mk:big", "mk:edge1", "mk:edge2"),
		cmd("MSETNX", "{mk}7", "a", "{mk}8", "b").differs(Refused), cmd("MGET", "{mk}7", "{mk}8").clusterOnly(),
		cmd("SADD", on1[1], "a"), cmd("SADD", on2[1], "b"),
		cmd("SUNION", on1[1], on2[1]).differs(CrossKey).clusterDiffers(ClusterCrossSlot),
		cmd("RPUSH", on1[2], "x"), cmd("RPOPLPUSH", on1[2], on2[2]).differs(CrossKey).clusterDiffers(ClusterCrossSlot),

		// Errors.
		cmd("LPUSH", "str:a", "x"), cmd("HGET", "str:a", "f"), cmd("GET", "l:a"), cmd("SADD", "h:a", "x"),
		cmd("ZADD", "l:a", "1", "x"), cmd("INCR", "h:a"),
		cmd("GET").differs(Arity), cmd("GET", "a", "b").differs(Arity), cmd("SET", "k"),
		cmd("HSET", "h:a"), cmd("LINSERT", "l:a", "BEFORE").differs(Arity),
		cmd("MSET", "a").differs(Arity), cmd("MSET", "a", "1", "b").differs(Arity), cmd("DEL").differs(Arity),
		cmd("MGET").differs(Arity), cmd("TTL").differs(Arity),
		cmd("NOTACOMMAND", "x").differs(Unknown), cmd("FOO").differs(Unknown),
		// MULTI and SUBSCRIBE change what the script's PING gets: tested
		// against redis-server in pkg/proxy (stateful_test.go).
		cmd("EXEC").differs(Stateful), cmd("DISCARD").differs(Stateful),
		cmd("WATCH", "k").differs(Stateful), cmd("UNWATCH").differs(Stateful),
		cmd("UNSUBSCRIBE", "ch").differs(Stateful), cmd("PUBLISH", "ch", "m").differs(Stateful),
		cmd("PUNSUBSCRIBE").differs(Stateful), cmd("PUBSUB", "CHANNELS").differs(Stateful),
		cmd("INFO", "persistence").differs(Local).clusterDiffers(Local),
		cmd("CONFIG", "GET", "maxmemory").differs(Refused).clusterDiffers(Refused),
		cmd("FLUSHALL").differs(Refused).notCluster(), cmd("TIME").differs(WholePool).clusterDiffers(WholePool),
		cmd("WAIT", "0", "0").differs(Refused).clusterDiffers(Refused),

		// Case-insensitive names, local and connection commands.
		cmd("get", "str:b"), cmd("gEt", "str:b"), cmd("PING"), cmd("ping"),
		cmd("PING", "hello").differs(Local), cmd("ECHO", "hi").differs(Local),
		cmd("SELECT", "0").differs(Local), cmd("HELLO").differs(Local).clusterDiffers(Local),
		cmd("HELLO", "2").differs(Local).clusterDiffers(Local),
		cmd("CLIENT", "SETNAME", "x").differs(Local), cmd("COMMAND", "COUNT").differs(Local),
		cmd("COMMAND").counted(), cmd("LOLWUT"),
		cmd("AUTH", "pw").differs(AuthText),

		// Inline commands.
		rawStep("PING\r\n").differs(Inline), rawStep("GET str:b\r\n").differs(Inline),
		rawStep("SET inl:a \"a b\"\r\n").differs(Inline),

		// QUIT last of a connection: the next step reconnects.
		cmd("QUIT").differs(Quit),
		cmd("GET", "str:b"),
		cmd("SET", "", "final"), // the empty key stays, to check where it lives
	}
	// Large counts through the split path.
	for _, n := range []int{171, 500} {
		args := []string{"MSET"}
		get := []string{"MGET"}
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("bulk%d:%d", n, i)
			args = append(args, k, strings.Repeat("v", i%50))
			get = append(get, k)
			if i%7 == 0 {
				get = append(get, "nokey:"+k)
			}
		}
		s = append(s, cmd(args...), cmd(get...))
		s = append(s, cmd(append([]string{"DEL"}, get[1:]...)...))
	}
	// A run of plain commands over many keys, so that both servers serve.
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("run:%d", i)
		s = append(s, cmd("SET", k, strconv.Itoa(i*i)), cmd("INCR", k), cmd("GET", k))
	}
	return slices.DeleteFunc(s, func(st Step) bool { return l.Cluster && st.skipCluster || !l.Cluster && st.onlyCluster })
}
