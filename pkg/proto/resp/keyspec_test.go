package resp

import (
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
