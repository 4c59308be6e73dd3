package resp

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// goodReplies3 are RESP3 replies with the type ReplyType must report.
var goodReplies3 = []struct {
	in  string
	typ byte
}{
	{"_\r\n", TypeNull},
	{"#t\r\n", TypeBool},
	{"#f\r\n", TypeBool},
	{",1.5\r\n", TypeDouble},
	{",-0.5\r\n", TypeDouble},
	{",2\r\n", TypeDouble},
	{",inf\r\n", TypeDouble},
	{",-inf\r\n", TypeDouble},
	{",nan\r\n", TypeDouble},
	{",-nan\r\n", TypeDouble},
	{",1e+300\r\n", TypeDouble},
	{",1.0000000000000001e-05\r\n", TypeDouble},
	{",1E10\r\n", TypeDouble},
	{"(1234567999999999999999999999999999999\r\n", TypeBigNumber},
	{"(-3\r\n", TypeBigNumber},
	{"(0\r\n", TypeBigNumber},
	{"=4\r\ntxt:\r\n", TypeVerbatim},
	{"=29\r\ntxt:This is a verbatim\nstring\r\n", TypeVerbatim},
	{"=8\r\nmkd:a\r\nb\r\n", TypeVerbatim},
	{"!21\r\nSYNTAX invalid syntax\r\n", TypeBlobError},
	{"!0\r\n\r\n", TypeBlobError},
	{"%0\r\n", TypeMap},
	{"%1\r\n+key\r\n:1\r\n", TypeMap},
	{"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n", TypeMap},
	{"~0\r\n", TypeSet},
	{"~3\r\n:0\r\n:1\r\n:2\r\n", TypeSet},
	{">0\r\n", TypePush},
	{">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", TypePush},
	{">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n", TypePush},
	// Null aggregates of RESP2 still frame.
	{"*-1\r\n", TypeArray},
	{"$-1\r\n", TypeBulk},
	// Nested, mixed.
	{"*3\r\n%1\r\n~1\r\n_\r\n>1\r\n#t\r\n,1.5\r\n(7\r\n", TypeArray},
	{"%2\r\n$1\r\na\r\n%1\r\n$1\r\nb\r\n~2\r\n,inf\r\n=5\r\ntxt:x\r\n!1\r\nE\r\n*0\r\n", TypeMap},
	{"~2\r\n*0\r\n%0\r\n", TypeSet},
	{"*2\r\n*1\r\n_\r\n~1\r\n~1\r\n~0\r\n", TypeArray},
	// Attributes: before a top-level reply, inside arrays, nested, empty.
	{"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$39\r\nSome real reply following the attribute\r\n", TypeBulk},
	{"|1\r\n+a\r\n:1\r\n+OK\r\n", TypeStatus},
	{"|0\r\n:1\r\n", TypeInt},
	{"|1\r\n+a\r\n:1\r\n|1\r\n+b\r\n:2\r\n-ERR x\r\n", TypeError},
	{"|1\r\n+a\r\n:1\r\n!1\r\nE\r\n", TypeBlobError},
	{"|1\r\n+a\r\n:1\r\n>1\r\n+p\r\n", TypePush},
	{"|1\r\n+a\r\n|1\r\n+in\r\n:1\r\n:2\r\n%0\r\n", TypeMap},
	{"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n", TypeArray},
	{"*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n", TypeArray},
	{"*1\r\n|1\r\n+a\r\n*1\r\n:1\r\n*1\r\n|0\r\n_\r\n", TypeArray},
	{"%1\r\n|1\r\n+k\r\n:1\r\n+key\r\n|1\r\n+v\r\n:1\r\n+val\r\n", TypeMap},
	{"|1\r\n*1\r\n|1\r\n+x\r\n+y\r\n*0\r\n~1\r\n:1\r\n#t\r\n", TypeBool},
}

// badReplies3 are malformed or unsupported RESP3 replies, each with a part
// of its error text.
var badReplies3 = []struct {
	in, err string
}{
	{"_x\r\n", "invalid null"},
	{"_\r\r", "invalid null"},
	{"_\n", "invalid null"},
	{"#x\r\n", "invalid boolean"},
	{"#T\r\n", "invalid boolean"},
	{"#tt\r\n", "invalid boolean"},
	{"#\r\n", "invalid boolean"},
	{",\r\n", "invalid double"},
	{",x\r\n", "invalid double"},
	{",1.5x\r\n", "invalid double"},
	{",infinity\r\n", "invalid double"},
	{",ni\r\n", "invalid double"},
	{",.\r\n", "invalid double"},
	{",1 \r\n", "invalid double"},
	{",1\r\r", "expected LF after CR"},
	{"," + strings.Repeat("1", maxDoubleLen+1) + "\r\n", "double too long"},
	{"(\r\n", "invalid big number"},
	{"(-\r\n", "invalid big number"},
	{"(+1\r\n", "invalid big number"},
	{"(1-\r\n", "invalid big number"},
	{"(1.5\r\n", "invalid big number"},
	{"=3\r\ntxt\r\n", "verbatim string shorter than its format"},
	{"=-1\r\n", "invalid verbatim string length"},
	{"=5\r\ntxt;x\r\n", "format not followed by ':'"},
	{"=5\r\ntxt:xy\r\n", "verbatim string data not terminated by CRLF"},
	{"!-1\r\n", "invalid blob error length"},
	{"!1\r\nab\r\n", "blob error data not terminated by CRLF"},
	{"%-1\r\n", "invalid map length"},
	{"~-1\r\n", "invalid set length"},
	{">-1\r\n", "invalid push length"},
	{"|-1\r\n", "invalid attribute length"},
	{"%1073741824\r\n", "invalid map length"}, // 2n > MaxArrayLen
	{"|1073741824\r\n", "invalid attribute length"},
	{"~2147483648\r\n", "invalid set length"}, // beyond MaxArrayLen and int32
	{"%x\r\n", "invalid number"},
	{"*1\r\n%1\r\n:1\r\n\r\n", "invalid type byte"},
	{"*1\r\n|1\r\n:1\r\n:2\r\n\r\n", "invalid type byte"},
	// Streamed RESP3: redis never sends them.
	{"$?\r\n;4\r\nHell\r\n;0\r\n", "streamed RESP3 bulk"},
	{"*?\r\n:1\r\n.\r\n", "streamed RESP3 array"},
	{"%?\r\n", "streamed RESP3 map"},
	{"~?\r\n", "streamed RESP3 set"},
	{"=?\r\n", "streamed RESP3 verbatim"},
	{";4\r\nHell\r\n", "streamed RESP3 reply part ';'"},
	{".\r\n", "streamed RESP3 reply part '.'"},
	{"*1\r\n.\r\n", "streamed RESP3 reply part '.'"},
	{":?\r\n", "invalid number"},
	{"x\r\n", `invalid type byte 'x'`},
}

func TestReplyLen3(t *testing.T) {
	for _, tc := range goodReplies3 {
		in := []byte(tc.in)
		if got := replyLen(in); got.n != len(in) || got.err {
			t.Errorf("ReplyLen(%q) = %+v, want %d", in, got, len(in))
		}
		if got := replyLen([]byte(tc.in + "+NEXT\r\n")); got.n != len(in) {
			t.Errorf("ReplyLen(%q + next) = %+v", in, got)
		}
		if got := ReplyType(in); got != tc.typ {
			t.Errorf("ReplyType(%q) = %q, want %q", in, got, tc.typ)
		}
		checkReplyPrefixes(t, in)
		checkReplySplits(t, in, Limits{}, 20)
		checkAggregateElems(t, in)
	}
}

func TestReplyLen3Invalid(t *testing.T) {
	for _, tc := range badReplies3 {
		n, _, err := ReplyLen([]byte(tc.in), Limits{})
		if n != 0 || !errors.Is(err, ErrBadReply) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ReplyLen(%.40q) = %d, %v; want an error with %q", tc.in, n, err, tc.err)
		}
		checkReplyPrefixes(t, []byte(tc.in))
	}
}

// checkReplySplits feeds a resumed scanner buf in random pieces, like reads
// from a socket: every prefix but the whole is incomplete, the whole frames
// exactly. Byte-at-a-time splits are checkReplyPrefixes.
func checkReplySplits(t *testing.T, buf []byte, lim Limits, rounds int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(buf)), 17))
	s := NewReplyScanner(lim)
	for range rounds {
		k := 0
		for k < len(buf) {
			k = min(len(buf), k+1+rng.IntN(max(1, len(buf)/3)))
			n, need, err := s.Scan(buf[:k])
			switch {
			case err != nil:
				t.Fatalf("%.60q split at %d: %v", buf, k, err)
			case k < len(buf) && n != 0:
				t.Fatalf("%.60q split at %d: complete with %d", buf, k, n)
			case k < len(buf) && need != 0 && (need <= k || need > len(buf)):
				t.Fatalf("%.60q split at %d: need %d", buf, k, need)
			case k == len(buf) && n != len(buf):
				t.Fatalf("%.60q whole after splits: %d, %d", buf, n, need)
			}
		}
	}
}

// checkAggregateElems checks that the elements ArrayElems gives of a reply
// tile it after its header (attributes before the reply included).
func checkAggregateElems(t *testing.T, reply []byte) {
	t.Helper()
	switch ReplyType(reply) {
	case TypeArray, TypeSet, TypePush, TypeMap:
	default:
		if err := ArrayElems(reply, func([]byte) bool { return true }); !errors.Is(err, ErrBadReply) {
			t.Errorf("ArrayElems(%.60q) = %v on a non-aggregate", reply, err)
		}
		return
	}
	var s ReplyScanner
	off, err := s.skipAttributes(reply)
	if err != nil {
		t.Fatal(err)
	}
	off += strings.IndexByte(string(reply[off:]), '\n') + 1
	err = ArrayElems(reply, func(e []byte) bool {
		if string(reply[off:off+len(e)]) != string(e) {
			t.Errorf("%.60q: element %q at %d", reply, e, off)
		}
		if n, _, err := ReplyLen(e, Limits{}); n != len(e) || err != nil {
			t.Errorf("%.60q: element %q frames as %d, %v", reply, e, n, err)
		}
		off += len(e)
		return true
	})
	if err != nil || off != len(reply) {
		t.Errorf("ArrayElems(%.60q): %v, elements end at %d of %d", reply, err, off, len(reply))
	}
}

func TestArrayElems3(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"~3\r\n:0\r\n:1\r\n_\r\n", []string{":0\r\n", ":1\r\n", "_\r\n"}},
		{">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n", []string{"$10\r\ninvalidate\r\n", "*1\r\n$1\r\nk\r\n"}},
		{"%2\r\n+a\r\n,1.5\r\n+b\r\n%0\r\n", []string{"+a\r\n", ",1.5\r\n", "+b\r\n", "%0\r\n"}},
		{"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n#f\r\n", []string{"|1\r\n+ttl\r\n:3600\r\n:1\r\n", "#f\r\n"}},
		{"|1\r\n+a\r\n:1\r\n*1\r\n(12\r\n", []string{"(12\r\n"}},
		{"~0\r\n", nil},
		{"|0\r\n*-1\r\n", nil},
	} {
		var got []string
		if err := ArrayElems([]byte(tc.in), func(e []byte) bool { got = append(got, string(e)); return true }); err != nil {
			t.Errorf("ArrayElems(%q): %v", tc.in, err)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("ArrayElems(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, in := range []string{"_\r\n", "%1\r\n:1\r\n", "~-1\r\n", "%-1\r\n", "|1\r\n:1\r\n", "|1\r\n:1\r\n:2\r\n", "|x\r\n*0\r\n", ">1\r\n$3\r\nfo"} {
		if err := ArrayElems([]byte(in), func([]byte) bool { return true }); !errors.Is(err, ErrBadReply) {
			t.Errorf("ArrayElems(%q) = %v", in, err)
		}
	}
	reply := []byte("|1\r\n+a\r\n:1\r\n%2\r\n+a\r\n,1.5\r\n+b\r\n~1\r\n_\r\n")
	if a := testing.AllocsPerRun(100, func() { _ = ArrayElems(reply, func([]byte) bool { return true }) }); a != 0 {
		t.Errorf("ArrayElems allocates %v times", a)
	}
}

func TestReplyTypeHelpers(t *testing.T) {
	for _, tc := range []struct {
		in          string
		typ         byte
		isErr, push bool
	}{
		{"", 0, false, false},
		{"+OK\r\n", TypeStatus, false, false},
		{"-ERR x\r\n", TypeError, true, false},
		{"!1\r\nE\r\n", TypeBlobError, true, false},
		{"|1\r\n+a\r\n:1\r\n-ERR x\r\n", TypeError, true, false},
		{"|1\r\n+a\r\n:1\r\n!1\r\nE\r\n", TypeBlobError, true, false},
		{">1\r\n+x\r\n", TypePush, false, true},
		{"|1\r\n+a\r\n:1\r\n>1\r\n+x\r\n", TypePush, false, true},
		{"*1\r\n>1\r\n+x\r\n", TypeArray, false, false},
		{"*1\r\n-ERR x\r\n", TypeArray, false, false},
		{"|1\r\n+a\r\n", 0, false, false}, // attribute without its reply
		{"|1\r\n+a\r\n:1\r\n", 0, false, false},
		{"|x\r\n", 0, false, false},
	} {
		in := []byte(tc.in)
		if got := ReplyType(in); got != tc.typ {
			t.Errorf("ReplyType(%q) = %q, want %q", in, got, tc.typ)
		}
		if got := IsErrorReply(in); got != tc.isErr {
			t.Errorf("IsErrorReply(%q) = %v", in, got)
		}
		if got := IsPush(in); got != tc.push {
			t.Errorf("IsPush(%q) = %v", in, got)
		}
	}
	attr := []byte("|1\r\n+a\r\n:1\r\n>1\r\n+x\r\n")
	if a := testing.AllocsPerRun(100, func() { _ = IsPush(attr) }); a != 0 {
		t.Errorf("IsPush allocates %v times", a)
	}
}

func TestReplyLimits3(t *testing.T) {
	lim := Limits{MaxBulkLen: 4, MaxArrayLen: 4, MaxDepth: 2}
	for in, ok := range map[string]bool{
		"=4\r\ntxt:\r\n": true, "=5\r\ntxt:x\r\n": false,
		"!4\r\nabcd\r\n": true, "!5\r\nabcde\r\n": false,
		"%2\r\n:1\r\n:2\r\n:3\r\n:4\r\n": true, "%3\r\n": false, // 6 elements > 4
		"|2\r\n:1\r\n:2\r\n:3\r\n:4\r\n+OK\r\n": true, "|3\r\n": false,
		"~4\r\n:1\r\n:2\r\n:3\r\n:4\r\n": true, "~5\r\n": false,
		">4\r\n:1\r\n:2\r\n:3\r\n:4\r\n": true, ">5\r\n": false,
		"(1234\r\n": true, "(12345\r\n": false, // a big number is a line like '+'
		",1.255\r\n": false, ",1.25\r\n": true,
		// Depth counts maps, sets, pushes and attributes.
		"*1\r\n%1\r\n:1\r\n:2\r\n": true, "*1\r\n%1\r\n:1\r\n~1\r\n:2\r\n": false,
		"~1\r\n>1\r\n:1\r\n": true, "~1\r\n>1\r\n>1\r\n:1\r\n": false,
		"*1\r\n|1\r\n:1\r\n:2\r\n:3\r\n": true, "*1\r\n|1\r\n:1\r\n*1\r\n:2\r\n:3\r\n": false,
		"|1\r\n:1\r\n:2\r\n*1\r\n*1\r\n:3\r\n": true, // the attribute closed before the reply
	} {
		_, _, err := ReplyLen([]byte(in), lim)
		if (err == nil) != ok {
			t.Errorf("ReplyLen(%q) with %+v: %v", in, lim, err)
		}
	}
	// A huge map count is refused before anything is sized from it.
	if _, _, err := ReplyLen([]byte("%9223372036854775807\r\n"), Limits{}); !errors.Is(err, ErrBadReply) {
		t.Errorf("huge map: %v", err)
	}
	if _, _, err := ReplyLen([]byte("%1073741823\r\n"), Limits{}); err != nil {
		t.Errorf("map of MaxInt32/2 pairs: %v", err)
	}
	// Deep RESP3 nesting moves to the heap stack like arrays do.
	deep := []byte(strings.Repeat("%1\r\n_\r\n", 200) + "#t\r\n")
	if n, _, err := ReplyLen(deep, Limits{MaxDepth: 200}); n != len(deep) || err != nil {
		t.Errorf("deep maps: %d %v", n, err)
	}
	checkReplySplits(t, deep, Limits{MaxDepth: 200}, 3)
}

func TestReply3ZeroAlloc(t *testing.T) {
	reply := []byte("|1\r\n+a\r\n:1\r\n*4\r\n%1\r\n=5\r\ntxt:x\r\n,1.5\r\n~1\r\n(12\r\n>1\r\n#t\r\n_\r\n")
	if a := testing.AllocsPerRun(100, func() { _, _, _ = ReplyLen(reply, Limits{}) }); a != 0 {
		t.Errorf("ReplyLen allocates %v times", a)
	}
	s := NewReplyScanner(Limits{})
	if a := testing.AllocsPerRun(100, func() {
		for k := 1; k <= len(reply); k++ {
			_, _, _ = s.Scan(reply[:k])
		}
	}); a != 0 {
		t.Errorf("resumed Scan allocates %v times", a)
	}
}
