package resp

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProtocolErrorsMatchRedis sends every malformed request to a real
// redis-server and compares its error line with ProtocolError's text.
func TestProtocolErrorsMatchRedis(t *testing.T) {
	addr := startRedis(t)
	for _, tc := range badRequests {
		if !tc.redis {
			continue
		}
		got := rawExchange(t, addr, []byte(tc.in), 300*time.Millisecond)
		want := "-ERR " + tc.err + "\r\n"
		if !bytes.HasPrefix(got, []byte(want)) {
			t.Errorf("redis answered %.40q with %q, the parser says %q", tc.in, got, want)
		}
		if ours := fresh([]byte(tc.in)); ours.err != tc.err {
			t.Errorf("%.40q: parser gives %v", tc.in, ours)
		}
	}
}

// TestInlineMatchesRedis compares splitArgs with redis's sdssplitargs on
// random lines: redis stores the arguments with RPUSH and returns them with
// LRANGE; unbalanced lines must get the protocol error.
func TestInlineMatchesRedis(t *testing.T) {
	addr := startRedis(t)
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("ab \t\v\f\r\"'\\x41Fg\xff")
	var batch []byte
	var want [][]string
	unbalanced := 0
	for i := 0; i < 3000; i++ {
		line := make([]byte, 1+rng.IntN(12))
		for j := range line {
			line[j] = alphabet[rng.IntN(len(alphabet))]
		}
		key := "k" + strconv.Itoa(i)
		req := append([]byte("RPUSH "+key+" "), line...)
		r := fresh(append(req, '\r', '\n'))
		switch {
		case r.err != "":
			if unbalanced++; unbalanced > 100 {
				continue
			}
			got := rawExchange(t, addr, append(req, "\r\n"...), 300*time.Millisecond)
			if string(got) != "-ERR "+r.err+"\r\n" {
				t.Errorf("line %q: redis %q, parser %q", line, got, r.err)
			}
		case len(r.args) > 2:
			batch = append(batch, req...)
			batch = append(batch, "\r\nLRANGE "+key+" 0 -1\r\n"...)
			want = append(want, r.args[2:])
		}
	}
	if len(want) < 1000 || unbalanced < 50 {
		t.Fatalf("weak sample: %d balanced, %d unbalanced lines", len(want), unbalanced)
	}
	replies := rawExchangeN(t, addr, batch, 2*len(want))
	for i, w := range want {
		got := decode(replies[2*i+1])
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", toAny(w)) {
			t.Errorf("case %d: redis split into %q, parser into %q", i, got, w)
		}
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i := range s {
		out[i] = s[i]
	}
	return out
}

// rawExchangeN sends in and returns the first n replies.
func rawExchangeN(t *testing.T, addr string, in []byte, n int) [][]byte {
	t.Helper()
	rc := dialRedis(t, addr)
	if _, err := rc.c.Write(in); err != nil {
		t.Fatal(err)
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var out [][]byte
	var buf []byte
	s := NewReplyScanner(Limits{})
	tmp := make([]byte, 64<<10)
	for len(out) < n {
		k, _, err := s.Scan(buf)
		if err != nil {
			t.Fatal(err)
		}
		if k > 0 {
			out = append(out, append([]byte(nil), buf[:k]...))
			buf = buf[k:]
			continue
		}
		m, err := rc.r.Read(tmp)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(out), err)
		}
		buf = append(buf, tmp[:m]...)
	}
	return out
}

// TestErrorTextsMatchRedis checks AppendUnknownCommand and AppendWrongArgs
// against the real server.
func TestErrorTextsMatchRedis(t *testing.T) {
	addr := startRedis(t)
	rc := dialRedis(t, addr)
	long := strings.Repeat("x", 200)
	unknown := [][]string{
		{"foo"},
		{"foo", "a", "b"},
		{"FOO", long},
		{long, "a"},
		{"foo", strings.Repeat("abcdefghi", 14), "more"},
		{"foo", "1234567890", "1234567890", "1234567890", "1234567890", "1234567890", "1234567890",
			"1234567890", "1234567890", "1234567890", "1234567890", "1234567890", "1234567890"},
		{"foo\r\nbar", "x\ny", "\r"},
		{"a\x00b", "c\x00d", ""},
		{"\xff\xfe", "\x01"},
	}
	for _, args := range unknown {
		got := rc.do(t, args...)
		want := AppendUnknownCommand(nil, bytesArgs(args))
		if !bytes.Equal(got, want) {
			t.Errorf("%q:\nredis  %q\nparser %q", args, got, want)
		}
		if _, ok := Lookup([]byte(args[0])); ok {
			t.Errorf("Lookup(%q) found a command", args[0])
		}
	}
	wrong := [][]string{{"GET"}, {"get", "a", "b"}, {"SeT", "k"}, {"MSET", "a", "b", "c"}, {"mset", "a"},
		{"EVAL"}, {"hset", "k", "f"}, {"ZUNIONSTORE", "d", "1"}}
	for _, args := range wrong {
		got := rc.do(t, args...)
		want := AppendWrongArgs(nil, []byte(args[0]))
		if !bytes.Equal(got, want) {
			t.Errorf("%q:\nredis  %q\nparser %q", args, got, want)
		}
		c, ok := Lookup([]byte(args[0]))
		if !ok || CheckArity(c, len(args)) {
			t.Errorf("%q: CheckArity does not refuse it", args)
		}
	}
}

// TestArityMatchesRedis sends every command with one argument too few (and
// too many when the arity is exact): redis must refuse each with the arity
// error before running it, and CheckArity must agree.
func TestArityMatchesRedis(t *testing.T) {
	addr := startRedis(t)
	checked := 0
	Commands(func(c *Command) {
		rc := dialRedis(t, addr) // a refused command may leave state behind
		var counts []int
		if c.Arity > 0 {
			counts = append(counts, c.Arity+1)
			if c.Arity > 1 {
				counts = append(counts, c.Arity-1)
			}
		} else if -c.Arity > 1 {
			counts = append(counts, -c.Arity-1)
		}
		for _, n := range counts {
			args := []string{strings.ToUpper(c.Name)}
			for len(args) < n {
				args = append(args, "0")
			}
			got := rc.do(t, args...)
			want := AppendWrongArgs(nil, []byte(c.Name))
			if c.Name == "exec" { // redis answers EXECABORT for any refused EXEC
				want = append([]byte("-EXECABORT Transaction discarded because of: "), want[5:]...)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%q: redis %q, want %q", args, got, want)
			}
			if CheckArity(c, n) {
				t.Errorf("CheckArity(%s, %d) = true", c.Name, n)
			}
			checked++
		}
		if !CheckArity(c, max(c.Arity, -c.Arity)) && c.Step < 2 {
			t.Errorf("CheckArity(%s, %d) = false", c.Name, max(c.Arity, -c.Arity))
		}
	})
	if checked < 200 {
		t.Errorf("checked only %d commands", checked)
	}
}

// TestKeysMatchRedis compares Keys with COMMAND GETKEYS.
func TestKeysMatchRedis(t *testing.T) {
	addr := startRedis(t)
	rc := dialRedis(t, addr)
	cmds := []string{
		"get k", "set k v EX 10", "mset a 1 b 2", "mget a b c", "del a b", "exists a b a",
		"touch a", "unlink a b", "eval x 2 a b c", "eval x 0", "evalsha s 1 a", "fcall f 2 a b x",
		"eval_ro x 1 a b", "zunionstore d 2 a b WEIGHTS 1 2", "zinterstore d 1 a", "zdiffstore d 2 a b",
		"zdiff 2 a b", "zinter 3 a b c", "zunion 1 a", "sintercard 2 a b LIMIT 1", "zintercard 1 a",
		"lmpop 2 a b LEFT", "zmpop 1 a MIN", "rpoplpush a b", "smove a b m", "sunionstore d a b c",
		"sdiff a b", "sinter a", "pfcount a b", "pfmerge d a b", "copy a b", "lcs a b",
		"geosearchstore d s FROMMEMBER m BYRADIUS 1 km", "zrangestore d s 0 1", "lmove a b LEFT RIGHT",
		"sort k", "hset h f v", "xadd s * f v", "substr k 0 1", "bitfield_ro k GET u8 0",
	}
	for _, line := range cmds {
		args := strings.Fields(line)
		c, ok := Lookup([]byte(args[0]))
		if !ok {
			t.Errorf("%s: unknown", args[0])
			continue
		}
		reply := decode(rc.do(t, append([]string{"COMMAND", "GETKEYS"}, args...)...))
		var want []string
		if l, ok := reply.([]any); ok {
			for _, k := range l {
				want = append(want, k.(string))
			}
		}
		idx, err := Keys(c, bytesArgs(args), nil)
		var got []string
		for _, i := range idx {
			got = append(got, args[i])
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q: Keys %v (%v), redis %v (%v)", line, got, err, want, reply)
		}
	}
}

// TestReplyLenOnRealReplies frames replies produced by redis, whole and
// byte by byte.
func TestReplyLenOnRealReplies(t *testing.T) {
	addr := startRedis(t)
	rc := dialRedis(t, addr)
	for _, cmd := range []string{
		"SET k v", "GET k", "GET missing", "INCR n", "RPUSH l a b c", "LRANGE l 0 -1",
		"LRANGE missing 0 -1", "BLPOP missing 0.01", "HSET h a 1 b 2", "HGETALL h", "MGET k missing n",
		"EVAL \"return {1,{2,{3,'x'}},redis.status_reply('OK'),redis.error_reply('E')}\" 0",
		"COMMAND INFO get eval", "XADD s 1-1 f v", "XRANGE s - +", "CLIENT LIST", "DEBUG PROTOCOL attrib",
		"GET k k",
	} {
		args := splitCmd(cmd)
		reply := rc.do(t, args...)
		n, _, err := ReplyLen(reply, Limits{})
		if err != nil || n != len(reply) {
			t.Errorf("%s: ReplyLen(%q) = %d, %v", cmd, reply, n, err)
		}
		checkReplyPrefixes(t, reply)
	}
}

func splitCmd(line string) []string {
	r := fresh([]byte(line + "\r\n"))
	return r.args
}
