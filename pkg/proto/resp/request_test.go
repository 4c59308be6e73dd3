package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
)

// parseResult is one Parse outcome, comparable across parsers.
type parseResult struct {
	n      int
	args   []string
	inline bool
	need   int
	err    string
}

func (r parseResult) String() string {
	return fmt.Sprintf("n=%d args=%q inline=%v need=%d err=%q", r.n, r.args, r.inline, r.need, r.err)
}

func (r parseResult) equal(o parseResult) bool { return r.String() == o.String() }

func parseOnce(p *RequestParser, buf []byte) parseResult {
	n, args, need, err := p.Parse(buf)
	r := parseResult{n: n, need: need}
	if err != nil {
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			r.err = "not a *ProtocolError: " + err.Error()
		} else {
			r.err = pe.Msg
		}
	}
	if n > 0 {
		r.inline = p.Inline()
		r.args = []string{}
		for _, a := range args {
			r.args = append(r.args, string(a))
		}
	}
	return r
}

func fresh(buf []byte) parseResult { return parseOnce(NewRequestParser(Limits{}), buf) }

func TestParseValid(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		n      int // 0 means len(in)
		args   []string
		inline bool
	}{
		{"get", "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", 0, []string{"GET", "key"}, false},
		{"empty arg", "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n", 0, []string{"SET", "", ""}, false},
		{"binary arg", "*2\r\n$4\r\nECHO\r\n$6\r\na\r\nb\x00c\r\n", 0, []string{"ECHO", "a\r\nb\x00c"}, false},
		{"pipeline first", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", 14, []string{"PING"}, false},
		{"trailing junk not read", "*1\r\n$4\r\nPING\r\n\x00\xff", 14, []string{"PING"}, false},
		{"zero count", "*0\r\n*1\r\n", 4, []string{}, false},
		{"negative count", "*-10\r\n", 0, []string{}, false},
		{"minus one count", "*-1\r\nPING\r\n", 5, []string{}, false},
		{"inline", "PING\r\n", 0, []string{"PING"}, true},
		{"inline LF only", "set a b\nget a\n", 8, []string{"set", "a", "b"}, true},
		{"inline empty CRLF", "\r\n", 0, []string{}, true},
		{"inline empty LF", "\n*1\r\n", 1, []string{}, true},
		{"inline blanks", " \t \r\n", 0, []string{}, true},
		{"inline many blanks", "  set   a \t  b  \r\n", 0, []string{"set", "a", "b"}, true},
		{"inline CR inside separates", "a\rb\r\n", 0, []string{"a", "b"}, true},
		{"inline dollar first", "$3\r\n", 0, []string{"$3"}, true},
		{"inline double quotes", `set "a b" "c\"d"` + "\r\n", 0, []string{"set", "a b", `c"d`}, true},
		{"inline hex escapes", `echo "\x41\x62\x00\xff\xZZ"` + "\r\n", 0, []string{"echo", "Ab\x00\xffxZZ"}, true},
		{"inline escapes", `echo "\n\r\t\b\a\q\\"` + "\r\n", 0, []string{"echo", "\n\r\t\b\a" + `q\`}, true},
		{"inline single quotes", `echo 'a\'b' 'c\d' ''` + "\r\n", 0, []string{"echo", "a'b", `c\d`, ""}, true},
		{"inline quote mid token", `a"b c"` + "\r\n", 0, []string{"a", "ab c"}[1:], true},
		{"inline empty quotes", `"" ''` + "\r\n", 0, []string{"", ""}, true},
		{"inline vtab in token", "a\vb\fc d\r\n", 0, []string{"a\vb\fc", "d"}, true},
		{"inline vtab separates after quote", "\"a\"\vb\r\n", 0, []string{"a", "b"}, true},
		{"inline nul ordinary", "a\x00b c\r\n", 0, []string{"a\x00b", "c"}, true},
		{"inline stray CR before CRLF", "a\r\r\n", 0, []string{"a"}, true},
		{"inline high bytes", "\xff\xfe \x80\r\n", 0, []string{"\xff\xfe", "\x80"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := parseResult{n: tc.n, args: tc.args, inline: tc.inline}
			if want.n == 0 {
				want.n = len(tc.in)
			}
			if got := fresh([]byte(tc.in)); !got.equal(want) {
				t.Errorf("Parse(%q)\n got %v\nwant %v", tc.in, got, want)
			}
		})
	}
}

func TestParseIncomplete(t *testing.T) {
	tests := []struct {
		in   string
		need int
	}{
		{"*", 0},
		{"*2", 0},
		{"*2\r", 0},
		{"*2\r\n", 0},
		{"*2\r\n$3", 0},
		{"*2\r\n$3\r", 0},
		{"*2\r\n$3\r\n", 13},
		{"*2\r\n$3\r\nGE", 13},
		{"*2\r\n$3\r\nGET\r", 13},
		{"*2\r\n$3\r\nGET\r\n", 0},
		{"*2\r\n$3\r\nGET\r\n$10\r\n", 30},
		{"*1\r\n$536870912\r\n", 16 + 536870912 + 2},
		{"*1\r\nfoo", 0}, // redis waits for the line before checking '$'
		{"*1\r\nfoo\r", 0},
		{"PING", 0},
		{"PING\r", 0},
		{"set \"unterminated", 0},
	}
	for _, tc := range tests {
		want := parseResult{need: tc.need}
		if got := fresh([]byte(tc.in)); !got.equal(want) {
			t.Errorf("Parse(%q)\n got %v\nwant %v", tc.in, got, want)
		}
	}
}

// badRequests are malformed requests with redis-server 7's error text.
// redis is false where the proxy is stricter than redis (redis accepts).
var badRequests = []struct {
	in    string
	err   string
	redis bool
}{
	{"*3000000000\r\n", "Protocol error: invalid multibulk length", true},
	{"*2000000000\r\n", "Protocol error: invalid multibulk length", false}, // > MaxArgs, redis allows up to INT_MAX
	{"*\r\n", "Protocol error: invalid multibulk length", true},
	{"*x\r\n", "Protocol error: invalid multibulk length", true},
	{"*01\r\n", "Protocol error: invalid multibulk length", true},
	{"*-0\r\n", "Protocol error: invalid multibulk length", true},
	{"*+1\r\n", "Protocol error: invalid multibulk length", true},
	{"* 1\r\n", "Protocol error: invalid multibulk length", true},
	{"*1 \r\n", "Protocol error: invalid multibulk length", true},
	{"*99999999999999999999\r\n", "Protocol error: invalid multibulk length", true},
	{"*1\rX$4\r\nPING\r\n", "Protocol error: invalid multibulk length", false},
	{"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", "Protocol error: expected '$', got 'f'", true},
	{"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'", true},
	{"*3\r\n*abcde\r\n", "Protocol error: expected '$', got '*'", true},
	{"*1\r\n\r\n", "Protocol error: expected '$', got ' '", true},
	{"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'", true},
	{"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", "Protocol error: invalid bulk length", true},
	{"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n", "Protocol error: invalid bulk length", true},
	{"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", "Protocol error: invalid bulk length", true},
	{"*1\r\n$-1\r\n", "Protocol error: invalid bulk length", true},
	{"*1\r\n$\r\n", "Protocol error: invalid bulk length", true},
	{"*1\r\n$01\r\n", "Protocol error: invalid bulk length", true},
	{"*1\r\n$536870913\r\n", "Protocol error: invalid bulk length", true},
	{"*1\r\n$4\rXPING\r\n", "Protocol error: invalid bulk length", false},
	{"*1\r\n$4\r\nPINGxx", "Protocol error: bulk data not terminated by CRLF", false},
	{"*1\r\n$4\r\nPING\rx", "Protocol error: bulk data not terminated by CRLF", false},
	{"*1\r\n$4\r\nPINGx", "Protocol error: bulk data not terminated by CRLF", false},
	{"set \"\"\"test-key\"\"\" test-value\r\nping\r\n", "Protocol error: unbalanced quotes in request", true},
	{"set \"a\r\n", "Protocol error: unbalanced quotes in request", true},
	{"set 'a\r\n", "Protocol error: unbalanced quotes in request", true},
	{"set \"a\"b\r\n", "Protocol error: unbalanced quotes in request", true},
	{"set 'a'b\r\n", "Protocol error: unbalanced quotes in request", true},
	{"set \"a\\\"\r\n", "Protocol error: unbalanced quotes in request", true},
	{"set \"\\\r\n", "Protocol error: unbalanced quotes in request", true},
	{"set 'a\\'\r\n", "Protocol error: unbalanced quotes in request", true},
	{strings.Repeat("A", 64<<10+1), "Protocol error: too big inline request", true},
	{"*" + strings.Repeat("1", 64<<10), "Protocol error: too big mbulk count string", true},
	{"*1\r\n$" + strings.Repeat("1", 64<<10), "Protocol error: too big bulk count string", true},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range badRequests {
		got := fresh([]byte(tc.in))
		if got.err != tc.err || got.n != 0 {
			t.Errorf("Parse(%.40q) = %v, want error %q", tc.in, got, tc.err)
		}
	}
}

func TestParseInlineLimitBoundary(t *testing.T) {
	p := NewRequestParser(Limits{MaxInlineLen: 10})
	// 10 bytes before the '\n' is the most accepted.
	if r := parseOnce(p, []byte("0123456789\n")); r.n != 11 {
		t.Errorf("10-byte line: %v", r)
	}
	if r := parseOnce(p, []byte("0123456789")); r.n != 0 || r.err != "" {
		t.Errorf("10 bytes, no newline yet: %v", r)
	}
	for _, in := range []string{"0123456789a", "0123456789a\n"} {
		if r := parseOnce(p, []byte(in)); r.err != ErrTooBigInline.Msg {
			t.Errorf("%q: %v", in, r)
		}
	}
	if r := parseOnce(p, []byte("*123456789\r\n")); r.err != ErrInvalidMultibulkLen.Msg {
		t.Errorf("count line within limit: %v", r)
	}
	if r := parseOnce(p, []byte("*1234567890")); r.err != ErrTooBigMbulkCount.Msg {
		t.Errorf("count line over limit: %v", r)
	}
}

func TestParseLimits(t *testing.T) {
	p := NewRequestParser(Limits{MaxArgs: 3, MaxBulkLen: 5})
	if r := parseOnce(p, []byte("*3\r\n$5\r\nhello\r\n$0\r\n\r\n$1\r\nx\r\n")); r.n == 0 {
		t.Errorf("at limits: %v", r)
	}
	if r := parseOnce(p, []byte("*4\r\n")); r.err != ErrInvalidMultibulkLen.Msg {
		t.Errorf("MaxArgs+1: %v", r)
	}
	if r := parseOnce(p, []byte("*1\r\n$6\r\n")); r.err != ErrInvalidBulkLen.Msg {
		t.Errorf("MaxBulkLen+1: %v", r)
	}
	if got := NewRequestParser(Limits{}).Limits(); got != DefaultLimits() {
		t.Errorf("zero Limits = %+v, want defaults", got)
	}
}

// A huge declared count must be refused or bounded before any allocation.
func TestParseHugeCountNoAllocation(t *testing.T) {
	p := NewRequestParser(Limits{})
	bad := []byte("*2000000000\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, _, err := p.Parse(bad); err == nil {
			t.Fatal("accepted")
		}
	})
	if allocs != 0 {
		t.Errorf("rejecting *2000000000 allocated %v times", allocs)
	}
	// The largest accepted count reserves at most 1024 slots up front.
	p.Reset()
	if r := parseOnce(p, []byte("*1048576\r\n$3\r\nfoo\r\n")); r.n != 0 || r.err != "" {
		t.Fatalf("got %v", r)
	}
	if c := cap(p.spans); c > argsPrealloc {
		t.Errorf("reserved %d argument slots for a declared count", c)
	}
}

func TestParseDropsHugeArgs(t *testing.T) {
	p := NewRequestParser(Limits{})
	args := make([][]byte, keepArgs+1)
	for i := range args {
		args[i] = []byte("k")
	}
	if r := parseOnce(p, AppendCommand(nil, args)); r.n == 0 {
		t.Fatal(r)
	}
	parseOnce(p, []byte("*1\r\n$4\r\nPING\r\n"))
	if cap(p.args) > keepArgs {
		t.Errorf("parser kept %d argument slots after a huge request", cap(p.args))
	}
}

// TestParseTwemproxyRequests runs twemproxy's request success table: each
// request parses whole and names a command the proxy forwards.
func TestParseTwemproxyRequests(t *testing.T) {
	f, err := os.Open("testdata/twemproxy_requests.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	count := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, quoted, _ := strings.Cut(line, " ")
		in, err := strconv.Unquote(quoted)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		count++
		r := fresh([]byte(in))
		if r.n != len(in) || r.err != "" || r.inline {
			t.Errorf("%q: %v", in, r)
			continue
		}
		c, ok := Lookup([]byte(r.args[0]))
		if !ok || c.Name != name {
			t.Errorf("%q: Lookup = %v, %v; want %s", in, c, ok, name)
			continue
		}
		if c.Kind == KindUnsupported {
			t.Errorf("%s is supported by twemproxy, the proxy refuses it: %s", name, c.Reason)
		}
		if !CheckArity(c, len(r.args)) {
			t.Errorf("%q: arity check failed", in)
		}
		if c.Kind != KindLocal {
			if _, err := Keys(c, bytesArgs(r.args), nil); err != nil {
				t.Errorf("%q: Keys: %v", in, err)
			}
		}
	}
	if count < 100 {
		t.Fatalf("read only %d vectors", count)
	}
}

func bytesArgs(s []string) [][]byte {
	b := make([][]byte, len(s))
	for i := range s {
		b[i] = []byte(s[i])
	}
	return b
}

// allInputs are the valid and invalid inputs used by the split tests.
func allInputs() []string {
	in := []string{
		"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
		"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$10\r\n0123456789\r\n",
		"*-10\r\n", "*0\r\n", "\r\n", "\n", "  \r\n",
		"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n",
		"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n\r\n*0\r\n",
	}
	for _, b := range badRequests {
		in = append(in, b.in)
	}
	return in
}

// TestParseByteAtATime feeds growing prefixes: every prefix shorter than a
// request is incomplete (or fails with the same error as the whole input),
// and the complete result is the same for a resumed parser and a fresh one.
func TestParseByteAtATime(t *testing.T) {
	for _, in := range allInputs() {
		checkPrefixes(t, []byte(in))
	}
}

func checkPrefixes(t *testing.T, buf []byte) {
	t.Helper()
	whole := fresh(buf)
	resumed := NewRequestParser(Limits{})
	for k := 0; k <= len(buf); k = nextPrefix(k, len(buf)) {
		got := fresh(buf[:k])
		res := parseOnce(resumed, buf[:k])
		if !got.equal(res) {
			t.Fatalf("%.60q prefix %d: fresh %v, resumed %v", buf, k, got, res)
		}
		switch {
		case got.err != "":
			if got.err != whole.err {
				t.Fatalf("%.60q prefix %d: error %q, whole input gives %v", buf, k, got.err, whole)
			}
			return
		case got.n > 0:
			if !got.equal(whole) {
				t.Fatalf("%.60q prefix %d: %v, whole input gives %v", buf, k, got, whole)
			}
			return
		case got.need > 0:
			if got.need <= k {
				t.Fatalf("%.60q prefix %d: need %d already buffered", buf, k, got.need)
			}
			if whole.n > 0 && got.need > whole.n {
				t.Fatalf("%.60q prefix %d: need %d beyond the request (%d bytes)", buf, k, got.need, whole.n)
			}
		}
	}
	if whole.n != 0 || whole.err != "" {
		t.Fatalf("%.60q: whole %v but no prefix agreed", buf, whole)
	}
}

// TestParseRandomCommands follows redcon's TestRandomCommands: thousands of
// random commands, as RESP and as quoted inline commands, fed through an
// engine-like read loop in random chunks.
func TestParseRandomCommands(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var want [][]string
	var stream []byte
	for i := 0; i < 5000; i++ {
		args := make([]string, 1+rng.IntN(6))
		for j := range args {
			b := make([]byte, rng.IntN(20))
			for k := range b {
				b[k] = byte(rng.IntN(256))
			}
			args[j] = string(b)
		}
		args[0] = "x" + args[0] // an inline command cannot start with '*'
		want = append(want, args)
		if rng.IntN(2) == 0 {
			stream = AppendCommand(stream, bytesArgs(args))
		} else {
			stream = appendInline(stream, args)
		}
	}
	for _, maxChunk := range []int{1, 7, 100, 4096} {
		t.Run(strconv.Itoa(maxChunk), func(t *testing.T) {
			got := feed(t, stream, rng, maxChunk)
			if len(got) != len(want) {
				t.Fatalf("got %d commands, want %d", len(got), len(want))
			}
			for i := range want {
				if fmt.Sprintf("%q", got[i]) != fmt.Sprintf("%q", want[i]) {
					t.Fatalf("command %d: got %q, want %q", i, got[i], want[i])
				}
			}
		})
	}
}

// appendInline writes args as an inline command with "\xHH" escapes.
func appendInline(dst []byte, args []string) []byte {
	for i, a := range args {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, '"')
		for j := 0; j < len(a); j++ {
			c := a[j]
			if c < ' ' || c > '~' || c == '"' || c == '\\' {
				dst = append(dst, fmt.Sprintf(`\x%02x`, c)...)
			} else {
				dst = append(dst, c)
			}
		}
		dst = append(dst, '"')
	}
	return append(dst, '\r', '\n')
}

// feed emulates the engine: a read buffer that receives random chunks, is
// parsed until incomplete, then compacted.
func feed(t *testing.T, stream []byte, rng *rand.Rand, maxChunk int) [][]string {
	t.Helper()
	p := NewRequestParser(Limits{})
	var out [][]string
	var buf []byte
	for len(stream) > 0 || len(buf) > 0 {
		k := min(len(stream), 1+rng.IntN(maxChunk))
		buf = append(buf, stream[:k]...)
		stream = stream[k:]
		for {
			n, args, _, err := p.Parse(buf)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if len(args) > 0 {
				s := make([]string, len(args))
				for i, a := range args {
					s[i] = string(a)
				}
				out = append(out, s)
			}
			buf = append(buf[:0], buf[n:]...) // compaction moves the bytes
		}
		if len(stream) == 0 && len(buf) > 0 {
			t.Fatalf("%d bytes left unparsed: %q", len(buf), buf)
		}
	}
	return out
}

func TestParseResetOnMisuse(t *testing.T) {
	p := NewRequestParser(Limits{})
	parseOnce(p, []byte("*2\r\n$3\r\nGET\r\n"))
	// A different request without Reset: the parser starts over.
	if r := parseOnce(p, []byte("PING\r\n")); r.n != 6 || r.args[0] != "PING" {
		t.Errorf("got %v", r)
	}
	parseOnce(p, []byte("*2\r\n$3\r\nGET\r\n"))
	if r := parseOnce(p, []byte("*1\r\n")); r.n != 0 || r.err != "" {
		t.Errorf("shorter buffer: %v", r)
	}
	p.Reset()
	if r := parseOnce(p, []byte("*1\r\n$1\r\na\r\n")); r.n != 11 {
		t.Errorf("after Reset: %v", r)
	}
}

func TestAppendCommandRoundTrip(t *testing.T) {
	args := [][]byte{[]byte("SET"), {}, []byte("a\r\nb")}
	enc := AppendCommand(nil, args)
	if want := "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"; string(enc) != want {
		t.Fatalf("AppendCommand = %q, want %q", enc, want)
	}
	n, got, _, err := NewRequestParser(Limits{}).Parse(enc)
	if err != nil || n != len(enc) || !bytes.Equal(bytes.Join(got, []byte{0}), bytes.Join(args, []byte{0})) {
		t.Fatalf("round trip: %d %q %v", n, got, err)
	}
}

func TestParseZeroAlloc(t *testing.T) {
	p := NewRequestParser(Limits{})
	inputs := [][]byte{
		[]byte("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"),
		[]byte("set \"a b\" c\r\n"),
		[]byte("*2\r\n$3\r\nGET\r\n$3\r\nk"),
	}
	for _, in := range inputs {
		p.Parse(in) // warm up the reused slices
		p.Reset()
		if a := testing.AllocsPerRun(100, func() { p.Parse(in); p.Reset() }); a != 0 {
			t.Errorf("Parse(%q) allocates %v times", in, a)
		}
	}
}

// nextPrefix walks every prefix of short inputs, and of long ones their
// first and last 512 bytes plus a sample in between, to keep the quadratic
// checks fast.
func nextPrefix(k, n int) int {
	if k < 512 || k >= n-512 {
		return k + 1
	}
	return min(k+61, n-512)
}

// TestTwemproxyBadRequests covers twemproxy's test_protocol.py test_badreq
// and test_wrong_argc: each request is refused either by the parser or by
// the arity check (twemproxy closes the connection; the engine decides).
func TestTwemproxyBadRequests(t *testing.T) {
	tests := []struct {
		in       string
		protocol bool // refused by the parser, else by CheckArity
	}{
		{"*3\r\n*abcde\r\n", true},
		{"*4\r\n$4\r\nMSET\r\n$1\r\nA\r\n$1\r\nA\r\n$1\r\nA\r\n", false},
		{"*2\r\n$4\r\nMSET\r\n$1\r\nA\r\n", false},
		{"*1\r\n$3\r\nGET\r\n", false},
	}
	for _, tc := range tests {
		r := fresh([]byte(tc.in))
		if tc.protocol {
			if r.err == "" {
				t.Errorf("%q: parser accepted it: %v", tc.in, r)
			}
			continue
		}
		if r.n != len(tc.in) {
			t.Fatalf("%q: %v", tc.in, r)
		}
		c, ok := Lookup([]byte(r.args[0]))
		if !ok || CheckArity(c, len(r.args)) {
			t.Errorf("%q: arity accepted", tc.in)
		}
	}
	// An empty line is ignored, as redis does (twemproxy closes).
	if r := fresh([]byte("\r\n")); r.n != 2 || len(r.args) != 0 {
		t.Errorf("empty line: %v", r)
	}
}

func TestUnauthenticatedLimits(t *testing.T) {
	p := NewRequestParser(Limits{})
	p.SetUnauthenticated(true)
	for _, c := range []struct {
		in   string
		want error
	}{
		{"*10\r\n", nil},
		{"*11\r\n", ErrUnauthMultibulkLen},
		{"*2\r\n$3\r\nGET\r\n$16384\r\n", nil},
		{"*2\r\n$3\r\nGET\r\n$16385\r\n", ErrUnauthBulkLen},
	} {
		p.Reset()
		_, _, _, err := p.Parse([]byte(c.in))
		if err != c.want {
			t.Errorf("%q: %v, want %v", c.in, err, c.want)
		}
	}
	p.Reset()
	p.SetUnauthenticated(false)
	if _, _, _, err := p.Parse([]byte("*11\r\n")); err != nil {
		t.Errorf("authenticated: %v", err)
	}
}
