package resp

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// capturedCommandFile is redis-server 7.0.15's reply to COMMAND, RESP2,
// as it came off the wire (the same server commands_table.go was generated
// from), so that these tests run without redis.
const capturedCommandFile = "testdata/redis-7.0.15-command.resp.gz"

func capturedCommandReply(t testing.TB) []byte {
	t.Helper()
	f, err := os.Open(capturedCommandFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func captured(t testing.TB) *KeySpecTable {
	t.Helper()
	tab, err := ParseCommandReply(capturedCommandReply(t))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// The captured reply parses whole: one learned command per entry of the
// built-in table, with the same arity and legacy key range.
func TestParseCapturedCommand(t *testing.T) {
	tab := captured(t)
	if tab.Skipped != 0 {
		t.Fatalf("skipped %d entries: %v", tab.Skipped, tab.Errors)
	}
	if tab.Len() != len(redisCommands) {
		t.Errorf("learned %d commands, the built-in table has %d", tab.Len(), len(redisCommands))
	}
	for _, f := range redisCommands {
		lc, ok := tab.Learned(f.name)
		if !ok {
			t.Errorf("%s: not learned", f.name)
			continue
		}
		if lc.Arity != f.arity || lc.FirstKey != f.first || lc.LastKey != f.last || lc.Step != f.step {
			t.Errorf("%s: learned arity %d range %d,%d,%d; built-in %d %d,%d,%d", f.name,
				lc.Arity, lc.FirstKey, lc.LastKey, lc.Step, f.arity, f.first, f.last, f.step)
		}
		if (lc.Flags&CmdMovableKeys != 0) != (f.flags&flagMovable != 0) {
			t.Errorf("%s: movablekeys flag differs", f.name)
		}
	}
}

// sampleArgs are representative argument lists of a built-in command: the
// minimum count of arguments and a few more, each a distinct word, with a
// key count of 1 or 2 where the command takes one; plus hand-written ones
// for commands whose keys hang on keywords.
func sampleArgs(c *Command) [][]string {
	var out [][]string
	n := c.Arity
	if n < 0 {
		n = -n
	}
	for _, extra := range []int{0, 1, 2, 3, 4} {
		if c.Arity > 0 && extra > 0 {
			break
		}
		args := []string{c.Name}
		for i := 1; i < n+extra; i++ {
			args = append(args, "a"+strconv.Itoa(i))
		}
		if c.KeyNum > 0 {
			for _, k := range []string{"1", "2"} {
				a := slices.Clone(args)
				for len(a) < c.KeyNum+3 {
					a = append(a, "a"+strconv.Itoa(len(a)))
				}
				a[c.KeyNum] = k
				out = append(out, a)
			}
			continue
		}
		out = append(out, args)
	}
	return append(out, handSamples[c.Name]...)
}

var handSamples = map[string][][]string{
	"sort":              {{"sort", "k", "BY", "w*", "GET", "o*", "STORE", "dst"}, {"sort", "k", "STORE", "dst"}},
	"sort_ro":           {{"sort_ro", "k", "BY", "w*", "GET", "o*"}},
	"georadius":         {{"georadius", "k", "1", "2", "3", "km", "STORE", "dst"}, {"georadius", "k", "1", "2", "3", "km", "STOREDIST", "dst"}},
	"georadiusbymember": {{"georadiusbymember", "k", "m", "3", "km", "STORE", "dst"}},
	"zunionstore":       {{"zunionstore", "d", "2", "a", "b", "WEIGHTS", "1", "2"}},
	"zinterstore":       {{"zinterstore", "d", "2", "a", "b", "AGGREGATE", "MAX"}},
	"zdiffstore":        {{"zdiffstore", "d", "2", "a", "b"}},
	"lmpop":             {{"lmpop", "2", "a", "b", "LEFT", "COUNT", "3"}},
	"zmpop":             {{"zmpop", "1", "a", "MIN"}},
	"mset":              {{"mset", "a", "1", "b", "2", "c", "3"}},
	"mget":              {{"mget", "a", "b", "c"}},
	"eval":              {{"eval", "s", "0"}, {"eval", "s", "3", "a", "b", "c", "x"}},
	"fcall":             {{"fcall", "f", "0", "x"}},
	"xadd":              {{"xadd", "s", "*", "f", "v"}},
}

// knownKeyDisagreements are the commands twemproxy supports whose keys, as
// redis 7.0's key specs find them, differ from the built-in table's for
// some argument list. The built-in table wins for every one of them (it is
// consulted first); docs/redis.md lists them.
var knownKeyDisagreements = map[string]string{
	// The key specs also find the key after STORE/STOREDIST; twemproxy
	// and the built-in table route by the first key only. (SORT's STORE,
	// BY and GET are one incomplete spec of unknown type, which finds no
	// key: the positions agree, the policy does not, see below.)
	"georadius":         "STORE/STOREDIST key",
	"georadiusbymember": "STORE/STOREDIST key",
}

// For every command twemproxy supports (routed by the built-in table),
// the key positions found by the learned key specs equal resp.Keys's, for
// every sample argument list, but for knownKeyDisagreements.
func TestLearnedKeysAgreeWithBuiltin(t *testing.T) {
	tab := captured(t)
	got := map[string]string{}
	var names []string
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := commands[name]
		if c.Kind != KindSingleKey && c.Kind != KindMultiKey && c.Kind != KindEval {
			continue
		}
		lc, ok := tab.Learned(name)
		if !ok {
			t.Errorf("%s: not learned", name)
			continue
		}
		for _, sample := range sampleArgs(c) {
			args := make([][]byte, len(sample))
			for i, a := range sample {
				args[i] = []byte(a)
			}
			want, werr := Keys(c, args, nil)
			if c.Kind == KindSingleKey && !c.CrossKey && len(want) > 1 {
				want = want[:1] // routed by the first key only
			}
			have, herr := lc.Keys(args, nil)
			if fmt.Sprint(want) != fmt.Sprint(have) || (werr == nil) != (herr == nil) {
				got[name] = fmt.Sprintf("%q: built-in %v %v, learned %v %v", sample, want, werr, have, herr)
			}
		}
	}
	for name, d := range got {
		if _, ok := knownKeyDisagreements[name]; !ok {
			t.Errorf("%s: new disagreement: %s", name, d)
		} else {
			t.Logf("%s (known): %s", name, d)
		}
	}
	for name := range knownKeyDisagreements {
		if _, ok := got[name]; !ok {
			t.Errorf("%s: listed as a disagreement, but the keys agree", name)
		}
	}
}

// knownPolicyDisagreements are the redis 7.0 commands that Classify, the
// policy for learned commands, decides otherwise than the built-in table.
// The built-in table wins (learned commands are used only for names it
// does not know); each row says why the rules differ.
var knownPolicyDisagreements = map[string]string{
	// Split into one command per server by the built-in table; the key
	// specs only say "several keys", so as learned commands they would
	// need all their keys on one server.
	"del": "split", "exists": "split", "mget": "split", "mset": "split",
	"touch": "split", "unlink": "split",
	// Several keys on one server would be routed as learned commands
	// (like SUNIONSTORE); twemproxy refuses them and so does the built-in
	// table.
	"bitop": "span", "msetnx": "span", "rename": "span", "renamenx": "span",
	// Its second argument is a database, which no key spec describes.
	"move": "database",
	// STORE/STOREDIST names a second key: learned, both keys would have
	// to share a server; the built-in table routes by the first, as
	// twemproxy.
	"georadius": "cross-key", "georadiusbymember": "cross-key",
	// BY/GET/STORE are an incomplete key spec: learned, refused (keys not
	// known); the built-in table routes by the first key, as twemproxy.
	"sort": "incomplete", "sort_ro": "incomplete",
}

// Classify, applied to redis 7.0's own description of every command,
// makes the built-in table's routing decision (route or refuse, split,
// whether several keys must share a server), but for
// knownPolicyDisagreements. Refusals for a different reason are logged:
// either way the command is refused.
func TestClassifyAgreesWithBuiltin(t *testing.T) {
	tab := captured(t)
	got := map[string]string{}
	var reasons []string
	for name, c := range commands {
		lc, ok := tab.Learned(name)
		if !ok {
			t.Errorf("%s: not learned", name)
			continue
		}
		lcmd := Classify(lc)
		routed := c.Kind == KindSingleKey || c.Kind == KindMultiKey || c.Kind == KindEval
		lrouted := lcmd.Kind == KindSingleKey
		switch {
		case routed != lrouted:
			got[name] = fmt.Sprintf("built-in %v %q, learned %v %q", c.Kind, c.Reason, lcmd.Kind, lcmd.Reason)
		case routed && c.Kind == KindMultiKey:
			got[name] = fmt.Sprintf("split by the built-in table; learned cross-key %v", lcmd.CrossKey)
		case routed && c.CrossKey != lcmd.CrossKey:
			got[name] = fmt.Sprintf("cross-key: built-in %v, learned %v", c.CrossKey, lcmd.CrossKey)
		case !routed && c.Kind == KindUnsupported && c.Reason != lcmd.Reason:
			reasons = append(reasons, fmt.Sprintf("%s: built-in %q, learned %q", name, c.Reason, lcmd.Reason))
		}
	}
	for name, d := range got {
		if _, ok := knownPolicyDisagreements[name]; !ok {
			t.Errorf("%s: new disagreement: %s", name, d)
		}
	}
	for name := range knownPolicyDisagreements {
		if _, ok := got[name]; !ok {
			t.Errorf("%s: listed as a disagreement, but the policies agree", name)
		}
	}
	sort.Strings(reasons)
	t.Logf("refused for another reason:\n%s", strings.Join(reasons, "\n"))
}

func argv(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(s) {
		out = append(out, []byte(f))
	}
	return out
}

// Keys follows redis's getKeysUsingKeySpecs for each kind of spec.
func TestLearnedKeysSpecs(t *testing.T) {
	rng := func(idx, last, step, limit int) KeySpec {
		return KeySpec{Search: SearchIndex, Index: idx, Find: FindRange, LastKey: last, KeyStep: step, Limit: limit}
	}
	kw := func(word string, from, last int) KeySpec {
		return KeySpec{Search: SearchKeyword, Keyword: word, StartFrom: from, Find: FindRange, LastKey: last, KeyStep: 1}
	}
	num := func(idx, numidx, first, step int) KeySpec {
		return KeySpec{Search: SearchIndex, Index: idx, Find: FindKeynum, KeyNumIdx: numidx, FirstKeyOffset: first, KeyStep: step}
	}
	for _, tc := range []struct {
		name  string
		specs []KeySpec
		args  string
		want  string
		err   error
	}{
		{"single", []KeySpec{rng(1, 0, 1, 0)}, "hgetex k FIELDS 1 f", "[1]", nil},
		{"to the end", []KeySpec{rng(1, -1, 1, 0)}, "del a b c", "[1 2 3]", nil},
		{"pairs", []KeySpec{rng(1, -1, 2, 0)}, "mset a 1 b 2", "[1 3]", nil},
		{"all but last", []KeySpec{rng(1, -2, 1, 0)}, "blpop a b 0", "[1 2]", nil},
		{"keyword to the end", []KeySpec{kw("STREAMS", 1, -1)}, "xread COUNT 2 STREAMS a b 0 0", "[4 5 6 7]", nil},
		// XREAD STREAMS a b 0 0: half of what follows STREAMS.
		{"limit 2", []KeySpec{{Search: SearchKeyword, Keyword: "STREAMS", StartFrom: 1, Find: FindRange, LastKey: -1, KeyStep: 1, Limit: 2}},
			"xread COUNT 2 streams a b 0 0", "[4 5]", nil},
		{"keyword backwards", []KeySpec{rng(1, 0, 1, 0), kw("STORE", -2, 0)}, "georadius k 1 2 3 km STORE d", "[1 7]", nil},
		{"keyword missing", []KeySpec{rng(1, 0, 1, 0), kw("STORE", -2, 0)}, "georadius k 1 2 3 km", "[1]", nil},
		{"keyword last arg not searched", []KeySpec{kw("STORE", 1, 0)}, "x a STORE", "[]", ErrNoKeys},
		{"keynum", []KeySpec{num(2, 0, 1, 1)}, "eval s 2 a b x", "[3 4]", nil},
		{"keynum zero", []KeySpec{num(2, 0, 1, 1)}, "eval s 0 x", "[]", ErrNoKeys},
		{"keynum plus range", []KeySpec{rng(1, 0, 1, 0), num(2, 0, 1, 1)}, "zunionstore d 2 a b", "[1 3 4]", nil},
		{"keynum step", []KeySpec{num(1, 0, 1, 2)}, "x 2 a v b v", "[2 4]", nil},
		{"keynum bad", []KeySpec{num(2, 0, 1, 1)}, "eval s x a", "[]", ErrKeyCount},
		{"keynum negative", []KeySpec{num(2, 0, 1, 1)}, "eval s -1 a", "[]", ErrKeyCountNeg},
		{"keynum too big", []KeySpec{num(2, 0, 1, 1)}, "eval s 5 a", "[]", ErrKeyCountBig},
		{"keynum missing", []KeySpec{num(2, 0, 1, 1)}, "eval s", "[]", ErrKeyCount},
		{"not key", []KeySpec{{Flags: KeyNotKey, Search: SearchIndex, Index: 1, Find: FindRange, KeyStep: 1}, rng(2, 0, 1, 0)}, "x chan k", "[2]", nil},
		{"unknown skipped", []KeySpec{rng(1, 0, 1, 0), {}}, "sort k STORE d", "[1]", nil},
		{"index past the end", []KeySpec{rng(3, 0, 1, 0)}, "x a", "[]", ErrNoKeys},
	} {
		lc := &LearnedCommand{Name: "x", Arity: -1, Specs: tc.specs}
		got, err := lc.Keys(argv(tc.args), nil)
		if fmt.Sprint(got) != tc.want || err != tc.err {
			t.Errorf("%s: %q: %v %v, want %s %v", tc.name, tc.args, got, err, tc.want, tc.err)
		}
	}
}

// Classify's rules, for commands no redis 7.0 has.
func TestClassifyLearned(t *testing.T) {
	one := []KeySpec{{Search: SearchIndex, Index: 1, Find: FindRange, KeyStep: 1}}
	two := []KeySpec{one[0], {Search: SearchIndex, Index: 2, Find: FindRange, KeyStep: 1}}
	for _, tc := range []struct {
		name  string
		lc    LearnedCommand
		kind  Kind
		cross bool
		why   string
	}{
		{"hgetex", LearnedCommand{Flags: CmdWrite | CmdFast, Specs: one}, KindSingleKey, false, ""},
		{"two keys", LearnedCommand{Flags: CmdWrite, Specs: two}, KindSingleKey, true, ""},
		{"admin", LearnedCommand{Flags: CmdAdmin, Specs: one}, KindUnsupported, false, ReasonServer},
		{"blocking", LearnedCommand{Flags: CmdBlocking, Specs: one}, KindUnsupported, false, ReasonBlocking},
		{"pubsub", LearnedCommand{Flags: CmdPubSub}, KindUnsupported, false, ReasonPubSub},
		{"transaction", LearnedCommand{Flags: CatTransaction, Specs: one}, KindUnsupported, false, ReasonTransaction},
		{"no keys", LearnedCommand{}, KindUnsupported, false, ReasonServer},
		{"container", LearnedCommand{Subcommands: 3}, KindUnsupported, false, ReasonSubcommand},
		{"unknown spec", LearnedCommand{Flags: CmdMovableKeys, Specs: []KeySpec{{}}}, KindUnsupported, false, ReasonKeysUnknown},
		{"incomplete", LearnedCommand{Specs: []KeySpec{{Flags: KeyIncomplete, Search: SearchIndex, Index: 1, Find: FindRange, KeyStep: 1}}}, KindUnsupported, false, ReasonKeysUnknown},
	} {
		c := Classify(&tc.lc)
		if c.Kind != tc.kind || c.CrossKey != tc.cross || c.Reason != tc.why || c.Learned != &tc.lc {
			t.Errorf("%s: %v cross %v %q, want %v cross %v %q", tc.name, c.Kind, c.CrossKey, c.Reason, tc.kind, tc.cross, tc.why)
		}
	}
}

// Malformed replies fail or skip entries, never panic; COMMAND INFO of an
// unknown name (a null entry) is ignored.
func TestParseCommandReplyMalformed(t *testing.T) {
	for _, in := range []string{"", "+OK\r\n", "-ERR unknown command 'COMMAND'\r\n", "*1\r\n", "*2\r\n*0\r\n",
		"*99999999\r\n", "$5\r\nab\r\n", "*1\r\n:1\r\n\r\n", strings.Repeat("*1\r\n", 100) + "*0\r\n"} {
		if _, err := ParseCommandReply([]byte(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
	tab, err := ParseCommandReply([]byte("*3\r\n*-1\r\n*2\r\n:1\r\n:2\r\n*6\r\n$3\r\nget\r\n:2\r\n*0\r\n:1\r\n:1\r\n:1\r\n"))
	if err != nil || tab.Len() != 1 || tab.Skipped != 1 {
		t.Fatalf("%v %d skipped %d", err, tab.Len(), tab.Skipped)
	}
	if c, ok := tab.Lookup([]byte("GET")); !ok || c.Kind != KindUnsupported || c.Reason != ReasonServer {
		t.Errorf("entry without key specs: %+v", c)
	}
}

// The RESP3 form of COMMAND (maps, sets) parses to the same table.
func TestParseCommandReplyRESP3(t *testing.T) {
	r3 := "*1\r\n*10\r\n$6\r\nhgetex\r\n:-5\r\n~1\r\n+write\r\n:1\r\n:1\r\n:1\r\n~1\r\n+@hash\r\n*0\r\n" +
		"*1\r\n%3\r\n$5\r\nflags\r\n~1\r\n+RW\r\n$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n" +
		"$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n" +
		"~0\r\n"
	tab, err := ParseCommandReply([]byte(r3))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := tab.Lookup([]byte("HGETEX"))
	if !ok || c.Kind != KindSingleKey || c.CrossKey || c.Arity != -5 {
		t.Fatalf("%+v %v", c, ok)
	}
	if keys, err := Keys(c, argv("hgetex k FIELDS 1 f"), nil); err != nil || fmt.Sprint(keys) != "[1]" {
		t.Errorf("keys %v %v", keys, err)
	}
}

// FuzzKeySpecs: any reply parses or fails without panicking, and the
// keys found for any arguments are valid argument indexes.
func FuzzKeySpecs(f *testing.F) {
	full := capturedCommandReply(f)
	f.Add(full, []byte("a 2 b c STORE d"))
	// Single entries of the real reply, as COMMAND INFO would send them.
	_ = ArrayElems(full, func(e []byte) bool {
		if bytes.Contains(e, []byte("keynum")) || bytes.Contains(e, []byte("keyword")) || len(e) < 400 {
			f.Add(append([]byte("*1\r\n"), e...), []byte("k 1 x STREAMS a b"))
		}
		return true
	})
	f.Fuzz(func(t *testing.T, reply, words []byte) {
		tab, err := ParseCommandReply(reply)
		if err != nil {
			return
		}
		args := append([][]byte{[]byte("cmd")}, bytes.Fields(words)...)
		tab.Each(func(lc *LearnedCommand) {
			keys, err := lc.Keys(args, nil)
			for _, k := range keys {
				if k < 1 || k >= len(args) {
					t.Fatalf("%s: key index %d of %d args", lc.Name, k, len(args))
				}
			}
			if err == nil && len(keys) == 0 {
				t.Fatalf("%s: no keys without an error", lc.Name)
			}
			if c, ok := tab.Lookup([]byte(lc.Name)); !ok || c.Learned != lc {
				t.Fatalf("%s: not found by Lookup", lc.Name)
			}
		})
	})
}
