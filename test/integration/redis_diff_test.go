package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// The differential test sends one script of raw requests to nutcracker
// (Debian's 0.5.0) and to nuthatch, each in front of its own two fresh
// redis-servers with the same names, hash and distribution, so that every
// key lands on the same position. Replies must be byte-identical, except
// for the steps tagged with one of the expected differences below; every
// one of them is a row of the table in docs/redis.md. A step that differs
// without a tag fails the test, and so does a tagged step that no longer
// differs, so the list stays exact.

// Expected differences from nutcracker 0.5.0 (docs/redis.md, "Differences
// from twemproxy").
const (
	// nutcracker closes the connection without a reply on a command it
	// refuses (KEYS, MULTI, ...); nuthatch answers -ERR and keeps it.
	diffRefused = "refused-command"
	// nutcracker closes on a wrong argument count (or a numkeys that is
	// not a number); nuthatch replies with redis's own error.
	diffArity = "wrong-arity"
	// nutcracker closes on an unknown command; nuthatch replies with
	// redis's unknown-command error.
	diffUnknown = "unknown-command"
	// nutcracker 0.5.0 does not know the command (redis 6.2/7 commands,
	// streams) or the newer syntax of one it knows; nuthatch forwards it.
	diffNewer = "newer-command"
	// nutcracker closes on inline commands; nuthatch parses them.
	diffInline = "inline"
	// nutcracker closes on ECHO, SELECT, HELLO, CLIENT, PING <msg>,
	// COMMAND <sub>; nuthatch answers them locally (or forwards COMMAND).
	diffLocal = "local-command"
	// QUIT: nutcracker closes silently, nuthatch replies +OK first as
	// redis does.
	diffQuit = "quit-ok"
	// AUTH errors: nuthatch uses redis 7's texts, nutcracker redis 2.x's.
	diffAuthText = "auth-text"
	// EXISTS with keys on several servers: nutcracker sends it whole to the
	// first key's server and counts only its keys; nuthatch splits it.
	diffExists = "exists-split"
	// A command naming several keys that live on different servers:
	// nutcracker runs it on the first key's server, where the other keys
	// are missing; nuthatch refuses it.
	diffCrossKey = "cross-server-keys"
	// EVAL with numkeys 0: nutcracker closes, nuthatch replies -ERR.
	diffEvalNoKey = "eval-no-key"
	// ZDIFF/ZINTER/ZUNION (and their STORE forms with an explicit
	// destination first): nutcracker hashes the numkeys argument as if it
	// were the key; nuthatch routes by the first real key.
	diffNumkeys = "numkeys-routing"
	// Stateful commands (transactions, blocking calls, pub/sub) and
	// DBSIZE and SCRIPT over every server: nutcracker closes, nuthatch
	// answers as redis does (pinned links, docs/redis.md "Stateful
	// commands").
	diffStateful = "stateful-command"
	// SCAN and RANDOMKEY: nutcracker closes; nuthatch answers from one
	// server (SCAN's cursor names it, RANDOMKEY picks one at random), so
	// the reply is not a single redis's.
	diffWholePool = "whole-pool"
)

// diffStep is one request of the script.
type diffStep struct {
	req  []byte
	norm func(t *testing.T, reply []byte) []byte // makes unordered replies comparable
	diff string                                  // expected difference, "" for none
	what string
}

func (s diffStep) differs(id string) diffStep { s.diff = id; return s }
func (s diffStep) sorted() diffStep           { s.norm = sortElems; return s }
func (s diffStep) sortedScan() diffStep       { s.norm = sortScan; return s }
func (s diffStep) counted() diffStep          { s.norm = countElems; return s }

func cmd(args ...string) diffStep {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return diffStep{req: resp.AppendCommand(nil, bs), what: strings.Join(args, " ")}
}

func rawStep(req string) diffStep {
	return diffStep{req: []byte(req), what: fmt.Sprintf("raw %q", req)}
}

// diffScript is the sequence sent to both proxies. Keys in {} share a hash
// tag, so cross-key commands stay on one server.
func diffScript() []diffStep {
	// Keys of known placement: on1[i] lives on s1, on2[i] on s2, and
	// away2 on the server that does not own the key "2".
	on1, on2 := placedKeys("p1:", 0, 3), placedKeys("p2:", 1, 3)
	away2 := taggedKeys(1-diffPlacer.Server([]byte("2")), 2)
	big := strings.Repeat("0123456789abcdef", 100<<10/16) // 100 KiB
	edge := strings.Repeat("e", 16<<10-40)                // a request near the 16 KiB read buffer
	bin := "\x00\r\n\xff\x01binary\r\n$3\r\n"
	s := []diffStep{
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
		cmd("SUBSTR", "str:b", "0", "1").differs(diffNewer),
		cmd("LCS", "str:b", "str:c").differs(diffNewer),

		// Bitmaps.
		cmd("SETBIT", "bit:a", "7", "1"), cmd("SETBIT", "bit:a", "100", "1"), cmd("GETBIT", "bit:a", "7"),
		cmd("GETBIT", "bit:a", "8"), cmd("BITCOUNT", "bit:a"), cmd("BITCOUNT", "bit:a", "0", "0"),
		cmd("BITPOS", "bit:a", "1"), cmd("BITPOS", "bit:a", "0"), cmd("SETBIT", "bit:a", "7", "2"),
		cmd("BITFIELD", "bit:b", "SET", "u8", "0", "255", "GET", "u4", "0", "INCRBY", "u8", "0", "10"),
		cmd("BITFIELD_RO", "bit:b", "GET", "u8", "0").differs(diffNewer),
		cmd("BITOP", "AND", "bit:c", "bit:a", "bit:b").differs(diffRefused),

		// TTL family.
		cmd("SET", "ttl:a", "v"), cmd("EXPIRE", "ttl:a", "100"), cmd("TTL", "ttl:a"), cmd("PERSIST", "ttl:a"),
		cmd("TTL", "ttl:a"), cmd("PTTL", "ttl:a"), cmd("TTL", "missing"), cmd("PTTL", "missing"),
		cmd("EXPIREAT", "ttl:a", "4102444800"), cmd("TTL", "ttl:a"), cmd("PEXPIREAT", "ttl:a", "4102444800000"),
		cmd("EXPIRETIME", "ttl:a").differs(diffNewer), cmd("PEXPIRETIME", "ttl:a").differs(diffNewer),
		cmd("PEXPIRE", "ttl:a", "100000"), cmd("EXPIRE", "ttl:a", "100", "NX").differs(diffNewer),
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
		cmd("LMPOP", "1", "{l}src", "LEFT").differs(diffNewer),
		cmd("BLPOP", "l:blk", "0.01").differs(diffStateful),
		cmd("BRPOPLPUSH", "{lb}src", "{lb}dst", "0.01").differs(diffStateful),

		// Sets (string sets have no stable order in redis 7.0: sort them).
		cmd("SADD", "s:a", "x", "y", "z"), cmd("SADD", "s:a", "x"), cmd("SMEMBERS", "s:a").sorted(),
		cmd("SCARD", "s:a"), cmd("SISMEMBER", "s:a", "y"), cmd("SMISMEMBER", "s:a", "y", "q"), cmd("SREM", "s:a", "z"),
		cmd("SADD", "{s}1", "a", "b", "c"), cmd("SADD", "{s}2", "b", "c", "d"),
		cmd("SINTER", "{s}1", "{s}2").sorted(), cmd("SUNION", "{s}1", "{s}2").sorted(), cmd("SDIFF", "{s}1", "{s}2"),
		cmd("SINTERSTORE", "{s}3", "{s}1", "{s}2"), cmd("SUNIONSTORE", "{s}4", "{s}1", "{s}2"),
		cmd("SDIFFSTORE", "{s}5", "{s}1", "{s}2"), cmd("SMOVE", "{s}1", "{s}2", "a"),
		cmd("SINTERCARD", "2", "{s}1", "{s}2").differs(diffNewer),
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
		cmd("ZUNION", "2", away2[0], away2[1]).differs(diffNumkeys),
		cmd("ZINTER", "2", away2[0], away2[1]).differs(diffNumkeys),
		cmd("ZINTERCARD", "2", "{z}1", "{z}2").differs(diffNewer),
		cmd("ZSCAN", "z:a", "0"), cmd("ZADD", "z:a", "notafloat", "x"), cmd("ZADD", "z:a", "1"),
		cmd("BZPOPMIN", "z:blk", "0.01").differs(diffStateful),

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
		cmd("GEORADIUS_RO", "geo:a", "15", "37", "200", "km").differs(diffNewer),
		cmd("GEOADD", "geo:a", "200", "100", "bad"),

		// Generic key commands.
		cmd("EXISTS", "str:a"), cmd("EXISTS", "missing"), cmd("EXISTS", "{s}1", "{s}2", "{s}1"),
		cmd("COPY", "{c}src", "{c}dst"), cmd("SET", "{c}src", "v"), cmd("COPY", "{c}src", "{c}dst"), cmd("GET", "{c}dst"),
		cmd("DUMP", "{c}src"), cmd("DEL", "{c}restored"),
		cmd("SORT", "l:a"), cmd("RPUSH", "l:num", "3", "1", "2"), cmd("SORT", "l:num"), cmd("SORT", "l:num", "DESC", "LIMIT", "0", "2"),
		cmd("SORT_RO", "l:num").differs(diffNewer), cmd("MOVE", "str:a", "1").differs(diffRefused),
		cmd("OBJECT", "ENCODING", "str:a").differs(diffStateful),
		cmd("RENAME", "str:a", "str:z").differs(diffRefused), cmd("RENAMENX", "str:a", "str:z").differs(diffRefused),
		cmd("KEYS", "*").differs(diffRefused), cmd("SCAN", "0").differs(diffWholePool),
		cmd("RANDOMKEY").differs(diffWholePool), cmd("DBSIZE").differs(diffStateful),

		// Streams: not in nutcracker 0.5.0.
		cmd("XADD", "x:a", "1-1", "f", "v").differs(diffNewer), cmd("XLEN", "x:a").differs(diffNewer),
		cmd("XRANGE", "x:a", "-", "+").differs(diffNewer),

		// Scripting.
		cmd("EVAL", "return redis.call('set', KEYS[1], ARGV[1])", "1", "ev:a", "v"),
		cmd("EVAL", "return redis.call('get', KEYS[1])", "1", "ev:a"),
		cmd("EVAL", "return {1, 2, {3, 'x', {4, redis.call('set', KEYS[1], 'y')}}}", "1", "ev:a"),
		cmd("EVAL", "return redis.error_reply('boom')", "1", "ev:a"),
		cmd("EVAL", "return redis.status_reply('FINE')", "1", "ev:a"),
		cmd("EVAL", "return {KEYS[1], KEYS[2], ARGV[1]}", "2", "{ev}1", "{ev}2", "arg"),
		cmd("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", "ev:a"),
		cmd("EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "1", "ev:a"),
		cmd("EVAL", "return 1", "0").differs(diffEvalNoKey),
		cmd("EVAL", "return 1", "5", "k"),
		cmd("EVAL", "return 1", "x", "k").differs(diffArity),
		cmd("SCRIPT", "FLUSH").differs(diffStateful),

		// Multi-key: split and merged.
		cmd("MSET", "mk:1", "a", "mk:2", "b", "mk:3", "c", "mk:4", "d", "mk:5", "e", "mk:6", "f"),
		cmd("MGET", "mk:1", "mk:2", "missing", "mk:3", "mk:4", "mk:5", "mk:6", "mk:1"),
		cmd("MGET", "mk:1"), cmd("MGET", "h:a", "mk:2"),
		cmd("DEL", "mk:1", "mk:2", "missing"), cmd("UNLINK", "mk:3", "mk:4"), cmd("TOUCH", "mk:5", "mk:6", "mk:1"),
		cmd("SET", on1[0], "1"), cmd("SET", on2[0], "2"),
		cmd("EXISTS", on1[0], on2[0], "missing").differs(diffExists),
		cmd("MSET", "", "empty", "mk:bin", bin, "mk:big", big), cmd("MGET", "", "mk:bin", "mk:big"),
		cmd("MSET", "mk:edge1", edge, "mk:edge2", edge+"xy"), cmd("MGET", "mk:edge1", "mk:edge2"),
		cmd("DEL", "", "mk:bin", "mk:big", "mk:edge1", "mk:edge2"),
		cmd("MSETNX", "mk:7", "a", "mk:8", "b").differs(diffRefused),
		cmd("SADD", on1[1], "a"), cmd("SADD", on2[1], "b"),
		cmd("SUNION", on1[1], on2[1]).differs(diffCrossKey),
		cmd("RPUSH", on1[2], "x"), cmd("RPOPLPUSH", on1[2], on2[2]).differs(diffCrossKey),

		// Errors.
		cmd("LPUSH", "str:a", "x"), cmd("HGET", "str:a", "f"), cmd("GET", "l:a"), cmd("SADD", "h:a", "x"),
		cmd("ZADD", "l:a", "1", "x"), cmd("INCR", "h:a"),
		cmd("GET").differs(diffArity), cmd("GET", "a", "b").differs(diffArity), cmd("SET", "k"),
		cmd("HSET", "h:a"), cmd("LINSERT", "l:a", "BEFORE").differs(diffArity),
		cmd("MSET", "a").differs(diffArity), cmd("MSET", "a", "1", "b").differs(diffArity), cmd("DEL").differs(diffArity),
		cmd("MGET").differs(diffArity), cmd("TTL").differs(diffArity),
		cmd("NOTACOMMAND", "x").differs(diffUnknown), cmd("FOO").differs(diffUnknown),
		// MULTI and SUBSCRIBE change what the script's PING gets: tested
		// against redis-server in pkg/proxy (stateful_test.go).
		cmd("EXEC").differs(diffStateful), cmd("DISCARD").differs(diffStateful),
		cmd("WATCH", "k").differs(diffStateful), cmd("UNWATCH").differs(diffStateful),
		cmd("UNSUBSCRIBE", "ch").differs(diffStateful), cmd("PUBLISH", "ch", "m").differs(diffStateful),
		cmd("PUNSUBSCRIBE").differs(diffStateful), cmd("PUBSUB", "CHANNELS").differs(diffStateful),
		cmd("INFO", "persistence").differs(diffLocal), cmd("CONFIG", "GET", "maxmemory").differs(diffRefused),
		cmd("FLUSHALL").differs(diffRefused), cmd("TIME").differs(diffWholePool), cmd("WAIT", "0", "0").differs(diffRefused),

		// Case-insensitive names, local and connection commands.
		cmd("get", "str:b"), cmd("gEt", "str:b"), cmd("PING"), cmd("ping"),
		cmd("PING", "hello").differs(diffLocal), cmd("ECHO", "hi").differs(diffLocal),
		cmd("SELECT", "0").differs(diffLocal), cmd("HELLO").differs(diffLocal), cmd("HELLO", "2").differs(diffLocal),
		cmd("CLIENT", "SETNAME", "x").differs(diffLocal), cmd("COMMAND", "COUNT").differs(diffLocal),
		cmd("COMMAND").counted(), cmd("LOLWUT"),
		cmd("AUTH", "pw").differs(diffAuthText),

		// Inline commands.
		rawStep("PING\r\n").differs(diffInline), rawStep("GET str:b\r\n").differs(diffInline),
		rawStep("SET inl:a \"a b\"\r\n").differs(diffInline),

		// QUIT last of a connection: the next step reconnects.
		cmd("QUIT").differs(diffQuit),
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
	return s
}

// diffPlacer places keys as both proxies of the differential test do.
var diffPlacer = func() *hashkit.Placer {
	h, err := hashkit.Hash("fnv1a_64")
	if err != nil {
		panic(err)
	}
	r, err := hashkit.Build(hashkit.Ketama, []hashkit.Node{{Name: "s1", Weight: 1}, {Name: "s2", Weight: 1}}, nil)
	if err != nil {
		panic(err)
	}
	return &hashkit.Placer{Hash: h, HashTag: "{}", Ring: r}
}()

// placedKeys returns n keys starting with prefix that live on server idx.
func placedKeys(prefix string, idx, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if k := prefix + strconv.Itoa(i); diffPlacer.Server([]byte(k)) == idx {
			out = append(out, k)
		}
	}
	return out
}

// taggedKeys returns n keys sharing a hash tag that lives on server idx.
func taggedKeys(idx, n int) []string {
	for i := 0; ; i++ {
		tag := fmt.Sprintf("{t%d}", i)
		if diffPlacer.Server([]byte(tag)) != idx {
			continue
		}
		out := make([]string, n)
		for j := range out {
			out[j] = tag + strconv.Itoa(j)
		}
		return out
	}
}

// countElems keeps only an array reply's element count (COMMAND's
// subcommand lists have no stable order).
func countElems(t *testing.T, reply []byte) []byte {
	return resp.AppendArrayHeader(nil, len(splitElems(t, reply)))
}

// sortElems sorts the elements of an array reply.
func sortElems(t *testing.T, reply []byte) []byte {
	elems := splitElems(t, reply)
	slices.SortFunc(elems, bytes.Compare)
	out := joinArray(len(elems), elems)
	out[0] = reply[0] // a RESP3 set stays a set
	return out
}

// sortScan sorts the element array of a *SCAN reply.
func sortScan(t *testing.T, reply []byte) []byte {
	parts := splitElems(t, reply)
	if len(parts) != 2 {
		return reply
	}
	return joinArray(2, [][]byte{parts[0], sortElems(t, parts[1])})
}

func splitElems(t *testing.T, reply []byte) [][]byte {
	var elems [][]byte
	if err := resp.ArrayElems(reply, func(e []byte) bool { elems = append(elems, e); return true }); err != nil {
		return [][]byte{reply}
	}
	return elems
}

func joinArray(n int, elems [][]byte) []byte {
	out := resp.AppendArrayHeader(nil, n)
	for _, e := range elems {
		out = append(out, e...)
	}
	return out
}

// respSession sends requests on one connection and frames the replies,
// reconnecting after the peer closed.
type respSession struct {
	t    *testing.T
	addr string
	conn net.Conn
	r    *bufio.Reader
	buf  []byte
	// hello, when set, is sent on every new connection and its reply
	// dropped (HELLO 3 for a RESP3 session).
	hello []byte
	// split, when set, cuts each request into the writes it returns.
	split func([]byte) [][]byte
}

func newRespSession(t *testing.T, addr string) *respSession {
	s := &respSession{t: t, addr: addr}
	t.Cleanup(func() {
		if s.conn != nil {
			s.conn.Close()
		}
	})
	return s
}

const closedMark = "<closed>"

var errNoReply = errors.New("no reply")

// readReply reads one complete reply.
func (s *respSession) readReply(timeout time.Duration) ([]byte, error) {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	chunk := make([]byte, 64<<10)
	for {
		if len(s.buf) > 0 {
			n, _, err := resp.ReplyLen(s.buf, resp.Limits{})
			if err != nil {
				return nil, fmt.Errorf("bad reply %q: %w", s.buf, err)
			}
			if n > 0 {
				out := slices.Clone(s.buf[:n])
				s.buf = s.buf[n:]
				return out, nil
			}
		}
		n, err := s.r.Read(chunk)
		s.buf = append(s.buf, chunk[:n]...)
		if err != nil {
			if len(s.buf) == 0 && !isTimeoutErr(err) {
				return nil, io.EOF
			}
			if isTimeoutErr(err) {
				return nil, errNoReply
			}
			return nil, fmt.Errorf("partial reply %q: %w", s.buf, err)
		}
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// do sends req followed by a PING and returns the reply to req, with
// closedMark appended when the peer closed instead of answering the PING.
// The PING tells a missing reply from a slow one without waiting.
func (s *respSession) do(req []byte) string {
	s.t.Helper()
	if s.conn == nil {
		c, err := net.DialTimeout("tcp", s.addr, 2*time.Second)
		if err != nil {
			s.t.Fatalf("dial %s: %v", s.addr, err)
		}
		s.conn, s.r, s.buf = c, bufio.NewReaderSize(c, 64<<10), nil
		if s.hello != nil {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(s.hello); err != nil {
				s.t.Fatalf("%s: hello: %v", s.addr, err)
			}
			if r, err := s.readReply(5 * time.Second); err != nil || r[0] == '-' {
				s.t.Fatalf("%s: hello: %q %v", s.addr, r, err)
			}
		}
	}
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	msg := append(slices.Clone(req), "*1\r\n$4\r\nPING\r\n"...)
	var werr error
	if s.split == nil {
		_, werr = s.conn.Write(msg)
	} else {
		for _, part := range s.split(msg) {
			if _, werr = s.conn.Write(part); werr != nil {
				break
			}
		}
	}
	var out []byte
	closed := false
	for i := 0; i < 2; i++ {
		timeout := 5 * time.Second
		if i == 1 && isSentinelReply(out) {
			// The request may have had no reply (an empty line, "*0"):
			// then this PONG was the sentinel's.
			timeout = 300 * time.Millisecond
		}
		r, err := s.readReply(timeout)
		if err == io.EOF || err != nil && werr != nil {
			closed = true
			break
		}
		if err == errNoReply && i == 1 && isSentinelReply(out) {
			out = nil
			break
		}
		if err != nil {
			s.t.Fatalf("%s: %v", s.addr, err)
		}
		if i == 1 {
			if !isSentinelReply(r) {
				s.t.Fatalf("%s: sentinel PING answered %q after %q", s.addr, r, out)
			}
			break
		}
		out = r
	}
	if closed {
		s.conn.Close()
		s.conn = nil
		return string(out) + closedMark
	}
	return string(out)
}

// isSentinelReply reports whether r answers the sentinel PING: PONG, or
// the refusal of an unauthenticated connection.
func isSentinelReply(r []byte) bool {
	switch string(r) {
	case "+PONG\r\n", "-NOAUTH Authentication required.\r\n", "-NOAUTH Authentication required\r\n":
		return true
	}
	return false
}

// close closes the connection now.
func (s *respSession) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// diffSetup is a pair of proxies, each over its own redis-servers.
type diffSetup struct {
	nc, nh           string
	ncRedis, nhRedis []*harness.Proc
}

// startDiffSetup starts nutcracker and nuthatch, each over n fresh
// redis-servers named s1..sn, with the same hash, hash tag and
// distribution.
func startDiffSetup(t *testing.T, n int, distribution string) *diffSetup {
	t.Helper()
	harness.Need(t, "nutcracker", "redis-server")
	d := &diffSetup{}
	var yamlServers strings.Builder
	for i := 0; i < n; i++ {
		d.ncRedis = append(d.ncRedis, harness.Redis(t))
		d.nhRedis = append(d.nhRedis, harness.Redis(t))
		fmt.Fprintf(&yamlServers, "   - %s:1 s%d\n", d.ncRedis[i].Addr, i+1)
	}
	d.nc = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	yaml := fmt.Sprintf(`diff:
  listen: %s
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: %s
  redis: true
  timeout: 2000
  server_connections: 1
  servers:
%s`, d.nc, distribution, yamlServers.String())
	harness.Nutcracker(t, yaml, d.nc)
	d.nh = startNuthatchDiff(t, d.nhRedis, distribution)
	return d
}

// startNuthatchDiff starts nuthatch as the differential test configures
// it over the given redis-servers, named s1..sn, and returns its address.
func startNuthatchDiff(t *testing.T, backends []*harness.Proc, distribution string) string {
	t.Helper()
	var hclServers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&hclServers, "  server \"s%d\" { address = %q }\n", i+1, b.Addr)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes = 1
stats {
  listen = ""
}
pool "diff" {
  listen       = %q
  protocol     = "redis"
  hash         = "fnv1a_64"
  hash_tag     = "{}"
  distribution = %q
  timeout      = "2s"
%s}
`, addr, distribution, hclServers.String())
	harness.Nuthatch(t, hcl, addr)
	return addr
}

// TestRedisPlacementNutcracker checks that keys, including the empty key
// (which twemproxy hashes to 0 instead of hashing it) and hash-tagged
// keys, land on the same server behind both proxies.
func TestRedisPlacementNutcracker(t *testing.T) {
	for _, dist := range []string{"ketama", "modula"} {
		t.Run(dist, func(t *testing.T) {
			d := startDiffSetup(t, 3, dist)
			nc, nh := newRespSession(t, d.nc), newRespSession(t, d.nh)
			keys := []string{"", "{}", "{}x", "{", "}", "{a}", "{a}b", "a{b}c", "a{}b{c}", "\x00", "k"}
			for i := 0; i < 100; i++ {
				keys = append(keys, fmt.Sprintf("key:%d", i))
			}
			for _, k := range keys {
				req := resp.AppendCommand(nil, [][]byte{[]byte("SET"), []byte(k), []byte("v")})
				if a, b := nc.do(req), nh.do(req); a != "+OK\r\n" || b != a {
					t.Fatalf("SET %q: nutcracker %q, nuthatch %q", k, a, b)
				}
			}
			for i := range d.ncRedis {
				a, b := backendKeys(t, d.ncRedis[i].Addr), backendKeys(t, d.nhRedis[i].Addr)
				if !slices.Equal(a, b) {
					t.Errorf("server s%d: nutcracker placed %q\n nuthatch placed %q", i+1, a, b)
				}
			}
		})
	}
}

func TestRedisDifferentialNutcracker(t *testing.T) {
	d := startDiffSetup(t, 2, "ketama")
	script := diffScript()
	nc, nh := newRespSession(t, d.nc), newRespSession(t, d.nh)
	identical, expected := 0, map[string]int{}
	failures := 0
	for i, st := range script {
		a, b := nc.do(st.req), nh.do(st.req)
		if st.norm != nil {
			a, b = normalize(t, st.norm, a), normalize(t, st.norm, b)
		}
		same := a == b
		switch {
		case same && st.diff == "":
			identical++
		case same:
			t.Errorf("step %d %s: tagged %q but identical now: %q; drop the tag and the docs row", i, short(st.what), st.diff, short(a))
			failures++
		case st.diff == "":
			t.Errorf("step %d %s: unexpected difference\n nutcracker: %q\n nuthatch:   %q", i, short(st.what), short(a), short(b))
			failures++
		default:
			expected[st.diff]++
			if testing.Verbose() {
				t.Logf("step %d %s [%s]\n nutcracker: %q\n nuthatch:   %q", i, short(st.what), st.diff, short(a), short(b))
			}
		}
	}
	ndiff := 0
	for _, n := range expected {
		ndiff += n
	}
	t.Logf("%d steps: %d identical, %d expected differences %v, %d failures", len(script), identical, ndiff, expected, failures)

	// Keys landed on the same server on both sides.
	for i := range d.ncRedis {
		a := backendKeys(t, d.ncRedis[i].Addr)
		b := backendKeys(t, d.nhRedis[i].Addr)
		if !slices.Equal(a, b) {
			t.Errorf("server s%d holds different keys:\n nutcracker side: %q\n nuthatch side:   %q", i+1, a, b)
		}
		if len(a) == 0 {
			t.Errorf("server s%d holds no key: the script does not exercise both servers", i+1)
		}
	}
}

func normalize(t *testing.T, f func(*testing.T, []byte) []byte, s string) string {
	if strings.HasSuffix(s, closedMark) || len(s) == 0 || (s[0] != '*' && s[0] != '~') {
		return s
	}
	return string(f(t, []byte(s)))
}

func short(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s...(%d bytes)", s[:200], len(s))
	}
	return s
}

// backendKeys lists a redis-server's keys, sorted, leaving out those that
// only steps with an expected difference touch.
func backendKeys(t *testing.T, addr string) []string {
	t.Helper()
	s := newRespSession(t, addr)
	r := s.do(resp.AppendCommand(nil, [][]byte{[]byte("KEYS"), []byte("*")}))
	var keys []string
	for _, e := range splitElems(t, []byte(r)) {
		if len(e) == 0 || e[0] != '$' {
			t.Fatalf("KEYS element %q", e)
		}
		k := string(e[bytes.IndexByte(e, '\n')+1 : len(e)-2])
		if !divergentKeys[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// divergentKeys are written by commands that only nuthatch runs (streams,
// inline, LMPOP) or that nutcracker runs on the wrong server (the
// RPOPLPUSH of the script).
var divergentKeys = map[string]bool{
	"x:a": true, "inl:a": true, "{l}src": true,
	placedKeys("p1:", 0, 3)[2]: true, placedKeys("p2:", 1, 3)[2]: true,
}
