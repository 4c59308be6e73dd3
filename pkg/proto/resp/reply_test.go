package resp

import (
	"errors"
	"strings"
	"testing"
)

type replyResult struct {
	n, need int
	err     bool
}

func scanOnce(s *ReplyScanner, buf []byte) replyResult {
	n, need, err := s.Scan(buf)
	if err != nil && !errors.Is(err, ErrBadReply) {
		panic("error does not wrap ErrBadReply: " + err.Error())
	}
	return replyResult{n, need, err != nil}
}

func replyLen(buf []byte) replyResult {
	n, need, err := ReplyLen(buf, Limits{})
	return replyResult{n, need, err != nil}
}

// goodReplies includes twemproxy's test_redis_parse_rsp_success table.
var goodReplies = []string{
	"-CUSTOMERR\r\n",
	"-Error message\r\n",
	"+OK\r\n",
	"$6\r\nfoobar\r\n",
	"$0\r\n\r\n",
	"$-1\r\n",
	"*0\r\n",
	"*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n",
	"*3\r\n:1\r\n:2\r\n:3\r\n",
	"*-1\r\n",
	"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Foo\r\n-Bar\r\n",
	// more
	"+\r\n",
	"-\r\n",
	"+a\nb\r\n",
	":0\r\n",
	":-9223372036854775808\r\n",
	":9223372036854775807\r\n",
	"$2\r\n\r\n\r\n",
	"*3\r\n$-1\r\n*-1\r\n*0\r\n",
	"*1\r\n*1\r\n*1\r\n*0\r\n",
	"*2\r\n*1\r\n$1\r\na\r\n:5\r\n",
}

// badReplies includes twemproxy's test_redis_parse_rsp_failure table.
var badReplies = []string{
	"*\r\n",
	":x\r\n",
	"$6\r\nfoobarr\r\n",
	"$6\r\nfoobar\n\n",
	"$0\r\nx\r\n",
	"$0\n",
	"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n\r\n",
	// more
	"\r\n",
	"x\r\n",
	":\r\n",
	":1x\r\n",
	":01\r\n",
	":-0\r\n",
	":9223372036854775808\r\n",
	":-9223372036854775809\r\n",
	":123456789012345678901",
	"$-2\r\n",
	"$x\r\n",
	"$1\r\nab",
	"$1\r\na\ra",
	"$536870913\r\n",
	"*-2\r\n",
	"*2147483648\r\n",
	"+OK\ra",
	"*1\r\n$1\r\na\n\r\n", // LF in place of CR after data
}

func TestReplyLenValid(t *testing.T) {
	for _, in := range goodReplies {
		if got := replyLen([]byte(in)); got.n != len(in) || got.err {
			t.Errorf("ReplyLen(%q) = %+v, want %d", in, got, len(in))
		}
		// A following reply is not consumed.
		if got := replyLen([]byte(in + "+NEXT\r\n")); got.n != len(in) {
			t.Errorf("ReplyLen(%q + next) = %+v", in, got)
		}
	}
}

func TestReplyLenInvalid(t *testing.T) {
	for _, in := range badReplies {
		if got := replyLen([]byte(in)); !got.err || got.n != 0 {
			t.Errorf("ReplyLen(%q) = %+v, want an error", in, got)
		}
	}
}

func TestReplyLenNeed(t *testing.T) {
	tests := []struct {
		in   string
		need int
	}{
		{"$10\r\n", 17},
		{"$10\r\nabc", 17},
		{"*2\r\n$3\r\nfoo\r\n$5\r\nab", 24},
		{"*2\r\n$3\r\nfo", 13},
		{"*2\r\n", 0},
		{"+OK", 0},
		{":12", 0},
	}
	for _, tc := range tests {
		if got := replyLen([]byte(tc.in)); got != (replyResult{0, tc.need, false}) {
			t.Errorf("ReplyLen(%q) = %+v, want need %d", tc.in, got, tc.need)
		}
	}
}

func TestReplyByteAtATime(t *testing.T) {
	for _, in := range append(append([]string{}, goodReplies...), badReplies...) {
		checkReplyPrefixes(t, []byte(in))
	}
}

// checkReplyPrefixes asserts that prefixes of buf are incomplete until the
// reply is complete (or fails as the whole does), for a fresh and a resumed
// scanner alike.
func checkReplyPrefixes(t *testing.T, buf []byte) {
	t.Helper()
	whole := replyLen(buf)
	resumed := NewReplyScanner(Limits{})
	for k := 0; k <= len(buf); k = nextPrefix(k, len(buf)) {
		got := replyLen(buf[:k])
		if res := scanOnce(resumed, buf[:k]); res != got {
			t.Fatalf("%.60q prefix %d: fresh %+v, resumed %+v", buf, k, got, res)
		}
		switch {
		case got.err:
			if !whole.err {
				t.Fatalf("%.60q prefix %d fails, the whole reply gives %+v", buf, k, whole)
			}
			return
		case got.n > 0:
			if got != whole {
				t.Fatalf("%.60q prefix %d: %+v, whole %+v", buf, k, got, whole)
			}
			return
		case got.need > 0:
			if got.need <= k || (whole.n > 0 && got.need > whole.n) {
				t.Fatalf("%.60q prefix %d: bad need %d (whole %+v)", buf, k, got.need, whole)
			}
		}
	}
	if whole.n != 0 || whole.err {
		t.Fatalf("%.60q: whole %+v but no prefix agreed", buf, whole)
	}
}

func nested(depth int) []byte {
	return []byte(strings.Repeat("*1\r\n", depth) + ":1\r\n")
}

func TestReplyDepthLimit(t *testing.T) {
	if got := replyLen(nested(DefaultMaxDepth)); got.err || got.n == 0 {
		t.Errorf("depth %d: %+v", DefaultMaxDepth, got)
	}
	if got := replyLen(nested(DefaultMaxDepth + 1)); !got.err {
		t.Errorf("depth %d accepted", DefaultMaxDepth+1)
	}
	// Deeper limits switch to a heap stack.
	deep := nested(1000)
	if n, _, err := ReplyLen(deep, Limits{MaxDepth: 1000}); err != nil || n != len(deep) {
		t.Errorf("depth 1000 with MaxDepth 1000: %d %v", n, err)
	}
	s := NewReplyScanner(Limits{MaxDepth: 1000})
	for k := 0; k < len(deep); k++ {
		if n, _, err := s.Scan(deep[:k]); n != 0 || err != nil {
			t.Fatalf("prefix %d: %d %v", k, n, err)
		}
	}
	if n, _, err := s.Scan(deep); n != len(deep) || err != nil {
		t.Fatalf("resumed deep: %d %v", n, err)
	}
	// Twenty levels (twemproxy test_issue_323) with siblings.
	twenty := []byte(strings.Repeat("*2\r\n:1\r\n", 20) + "+OK\r\n")
	if got := replyLen(twenty); got.n != len(twenty) {
		t.Errorf("20 levels: %+v", got)
	}
}

func TestReplyLimits(t *testing.T) {
	lim := Limits{MaxBulkLen: 3, MaxArrayLen: 2}
	for in, ok := range map[string]bool{
		"$3\r\nabc\r\n": true, "$4\r\nabcd\r\n": false,
		"*2\r\n:1\r\n:2\r\n": true, "*3\r\n:1\r\n:2\r\n:3\r\n": false,
		"+abc\r\n": true, "+abcd\r\n": false,
	} {
		_, _, err := ReplyLen([]byte(in), lim)
		if (err == nil) != ok {
			t.Errorf("ReplyLen(%q) with %+v: %v", in, lim, err)
		}
	}
}

func TestArrayElems(t *testing.T) {
	reply := []byte("*4\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n:1\r\n+x\r\n:7\r\n")
	var got []string
	if err := ArrayElems(reply, func(e []byte) bool { got = append(got, string(e)); return true }); err != nil {
		t.Fatal(err)
	}
	want := []string{"$3\r\nfoo\r\n", "$-1\r\n", "*2\r\n:1\r\n+x\r\n", ":7\r\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	calls := 0
	_ = ArrayElems(reply, func([]byte) bool { calls++; return false })
	if calls != 1 {
		t.Errorf("stopping early made %d calls", calls)
	}
	for _, in := range []string{"*-1\r\n", "*0\r\n"} {
		if err := ArrayElems([]byte(in), func([]byte) bool { t.Error("called"); return true }); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
	for _, in := range []string{"", "+OK\r\n", "*2\r\n:1\r\n", "*1\r\n$3\r\nfo", "*x\r\n", "*-2\r\n", "*1"} {
		if err := ArrayElems([]byte(in), func([]byte) bool { return true }); !errors.Is(err, ErrBadReply) {
			t.Errorf("ArrayElems(%q) = %v", in, err)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = ArrayElems(reply, func([]byte) bool { return true }) }); a != 0 {
		t.Errorf("ArrayElems allocates %v times", a)
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]int64{":0\r\n": 0, ":-5\r\n": -5, ":9223372036854775807\r\n": 1<<63 - 1} {
		if v, ok := ParseInt([]byte(in)); !ok || v != want {
			t.Errorf("ParseInt(%q) = %d, %v", in, v, ok)
		}
	}
	for _, in := range []string{"", ":\r\n", ":1\n", "+1\r\n", ":1x\r\n", ":1\r\n:2\r\n"} {
		if _, ok := ParseInt([]byte(in)); ok {
			t.Errorf("ParseInt(%q) accepted", in)
		}
	}
}

func TestReplyZeroAlloc(t *testing.T) {
	reply := []byte("*3\r\n$3\r\nfoo\r\n*1\r\n:1\r\n-ERR x\r\n")
	if a := testing.AllocsPerRun(100, func() { _, _, _ = ReplyLen(reply, Limits{}) }); a != 0 {
		t.Errorf("ReplyLen allocates %v times", a)
	}
	s := NewReplyScanner(Limits{})
	if a := testing.AllocsPerRun(100, func() { _, _, _ = s.Scan(reply) }); a != 0 {
		t.Errorf("Scan allocates %v times", a)
	}
}

func TestReplyScannerZeroValueAndMisuse(t *testing.T) {
	var s ReplyScanner
	if n, _, err := s.Scan([]byte("$3\r\nfo")); n != 0 || err != nil {
		t.Fatal(n, err)
	}
	// Another reply without Reset: the scanner starts over.
	if n, _, err := s.Scan([]byte("+OK\r\n")); n != 5 || err != nil {
		t.Errorf("got %d %v", n, err)
	}
}
