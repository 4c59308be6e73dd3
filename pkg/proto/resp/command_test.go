package resp

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestEveryCommandClassified(t *testing.T) {
	for i := range redisCommands {
		f := &redisCommands[i]
		if _, ok := classify(f); !ok {
			t.Errorf("%s: no routing decision; add it to commandPolicy", f.name)
		}
	}
	for name := range commandPolicy {
		if _, ok := commands[name]; !ok {
			t.Errorf("commandPolicy names %q, which redis %s does not have", name, redisCommandsVersion)
		}
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name   string
		kind   Kind
		cross  bool
		reason string
	}{
		{"GET", KindSingleKey, false, ""},
		{"gEt", KindSingleKey, false, ""},
		{"mget", KindMultiKey, false, ""},
		{"MSET", KindMultiKey, false, ""},
		{"exists", KindMultiKey, false, ""},
		{"EVAL", KindEval, true, ""},
		{"evalsha_ro", KindEval, true, ""},
		{"ping", KindLocal, false, ""},
		{"rpoplpush", KindSingleKey, true, ""},
		{"sunionstore", KindSingleKey, true, ""},
		{"zunion", KindSingleKey, true, ""},
		{"sort", KindSingleKey, false, ""},
		{"xadd", KindSingleKey, false, ""},
		{"blpop", KindUnsupported, false, ReasonBlocking},
		{"subscribe", KindUnsupported, false, ReasonPubSub},
		{"multi", KindUnsupported, false, ReasonTransaction},
		{"keys", KindUnsupported, false, ReasonSpan},
		{"msetnx", KindUnsupported, false, ReasonSpan},
		{"rename", KindUnsupported, false, ReasonSpan},
		{"move", KindUnsupported, false, ReasonDatabase},
		{"flushall", KindUnsupported, false, ReasonServer},
		{"config", KindUnsupported, false, ReasonServer},
		{"script", KindUnsupported, false, ReasonServer},
	}
	for _, tc := range tests {
		c, ok := Lookup([]byte(tc.name))
		if !ok {
			t.Errorf("Lookup(%q) failed", tc.name)
			continue
		}
		if c.Kind != tc.kind || c.CrossKey != tc.cross || c.Reason != tc.reason {
			t.Errorf("Lookup(%q) = %v cross=%v %q; want %v cross=%v %q",
				tc.name, c.Kind, c.CrossKey, c.Reason, tc.kind, tc.cross, tc.reason)
		}
	}
	// The GET/SET fast path matches exactly what the map does: every
	// 3-byte name with a byte off by 0x20 from get or set.
	for _, base := range []string{"get", "set"} {
		for mask := range 8 {
			for _, flip := range []byte{0x20, 0x40, 0x80, 0x01} {
				b := []byte(base)
				for i := range b {
					if mask&(1<<i) != 0 {
						b[i] ^= flip
					}
				}
				want, wok := commands[strings.ToLower(string(b))]
				if got, ok := Lookup(b); ok != wok || got != want {
					t.Errorf("Lookup(%q) = %v %v, want %v %v", b, got, ok, want, wok)
				}
			}
		}
	}
	for _, name := range []string{"", "foo", "get ", strings.Repeat("a", 40), "ge\x00t", "GE\x14", "\x07et"} {
		if c, ok := Lookup([]byte(name)); ok {
			t.Errorf("Lookup(%q) = %v", name, c.Name)
		}
	}
	if c, _ := Lookup([]byte("MSET")); c.Step != 2 || c.FirstKey != 1 || c.LastKey != -1 || c.Arity != -3 {
		t.Errorf("mset = %+v", c)
	}
	if a := testing.AllocsPerRun(100, func() { Lookup([]byte("ZRANGEBYSCORE")) }); a != 0 {
		t.Errorf("Lookup allocates %v times", a)
	}
}

// TestUnsupportedHaveReasons guards the contract that every refusal says why.
func TestUnsupportedHaveReasons(t *testing.T) {
	n := 0
	Commands(func(c *Command) {
		n++
		if (c.Kind == KindUnsupported) != (c.Reason != "") {
			t.Errorf("%s: kind %v with reason %q", c.Name, c.Kind, c.Reason)
		}
		if c.Kind == KindMultiKey && (c.FirstKey != 1 || c.LastKey != -1 || c.Step < 1) {
			t.Errorf("%s: multi-key with key range %d,%d,%d", c.Name, c.FirstKey, c.LastKey, c.Step)
		}
	})
	if n != len(redisCommands) {
		t.Errorf("Commands visited %d of %d", n, len(redisCommands))
	}
}

func TestCheckArity(t *testing.T) {
	tests := []struct {
		name  string
		nargs int
		ok    bool
	}{
		{"get", 2, true}, {"get", 1, false}, {"get", 3, false},
		{"set", 3, true}, {"set", 6, true}, {"set", 2, false},
		{"mset", 3, true}, {"mset", 5, true}, {"mset", 4, false}, {"mset", 2, false},
		{"mget", 2, true}, {"mget", 1, false}, {"del", 100, true},
		{"ping", 1, true}, {"ping", 2, true},
		{"eval", 3, true}, {"eval", 2, false},
	}
	for _, tc := range tests {
		c, _ := Lookup([]byte(tc.name))
		if got := CheckArity(c, tc.nargs); got != tc.ok {
			t.Errorf("CheckArity(%s, %d) = %v", tc.name, tc.nargs, got)
		}
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		line string
		want []int
		err  error
	}{
		{"get k", []int{1}, nil},
		{"set k v ex 1", []int{1}, nil},
		{"mset a 1 b 2", []int{1, 3}, nil},
		{"mget a b c", []int{1, 2, 3}, nil},
		{"rpoplpush a b", []int{1, 2}, nil},
		{"sunionstore d a b", []int{1, 2, 3}, nil},
		{"zunionstore d 2 a b weights 1 2", []int{1, 3, 4}, nil},
		{"zdiff 2 a b withscores", []int{2, 3}, nil},
		{"eval s 2 a b x", []int{3, 4}, nil},
		{"eval s 0 x", nil, ErrNoKeys},
		{"eval s 3 a b", nil, ErrKeyCountBig},
		{"eval s -1 a", nil, ErrKeyCountNeg},
		{"eval s x a", nil, ErrKeyCount},
		{"eval s 01 a", nil, ErrKeyCount},
		{"ping", nil, ErrNoKeys},
	}
	for _, tc := range tests {
		args := bytesArgs(strings.Fields(tc.line))
		c, _ := Lookup(args[0])
		got, err := Keys(c, args, nil)
		if !errors.Is(err, tc.err) || fmt.Sprint(got) != fmt.Sprint(tc.want) && len(got)+len(tc.want) > 0 {
			t.Errorf("Keys(%q) = %v, %v; want %v, %v", tc.line, got, err, tc.want, tc.err)
		}
	}
	c, _ := Lookup([]byte("mget"))
	args := bytesArgs([]string{"mget", "a", "b"})
	dst := make([]int, 0, 8)
	if a := testing.AllocsPerRun(100, func() { dst, _ = Keys(c, args, dst[:0]) }); a != 0 {
		t.Errorf("Keys allocates %v times", a)
	}
}

func TestErrorTexts(t *testing.T) {
	if got := string(AppendWrongArgs(nil, []byte("GeT"))); got != "-ERR wrong number of arguments for 'get' command\r\n" {
		t.Errorf("AppendWrongArgs = %q", got)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"foo"}, "-ERR unknown command 'foo', with args beginning with: \r\n"},
		{[]string{"foo", "a", "b"}, "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"},
		{[]string{"f\r\no", "a\x00b"}, "-ERR unknown command 'f  o', with args beginning with: 'a' \r\n"},
		{[]string{"f", strings.Repeat("x", 130), "y"},
			"-ERR unknown command 'f', with args beginning with: '" + strings.Repeat("x", 128) + "' \r\n"},
		{[]string{strings.Repeat("n", 130)},
			"-ERR unknown command '" + strings.Repeat("n", 128) + "', with args beginning with: \r\n"},
		{[]string{"f", strings.Repeat("x", 120), "abcdefgh"},
			"-ERR unknown command 'f', with args beginning with: '" + strings.Repeat("x", 120) + "' 'abcde' \r\n"},
	}
	for _, tc := range tests {
		if got := string(AppendUnknownCommand(nil, bytesArgs(tc.args))); got != tc.want {
			t.Errorf("AppendUnknownCommand(%q)\n got %q\nwant %q", tc.args, got, tc.want)
		}
	}
}
