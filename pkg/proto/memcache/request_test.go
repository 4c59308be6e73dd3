package memcache

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// describe renders a parse outcome so that results of different feeding
// strategies can be compared.
func describe(req *Request, err error) string {
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return "non-*Error: " + err.Error()
		}
		return fmt.Sprintf("err %q skip=%d close=%v noreply=%v", e.Error(), e.Skip, e.Close, e.Noreply)
	}
	rk := make([]string, len(req.Keys))
	for i := range req.Keys {
		rk[i] = string(req.RoutingKey(i))
	}
	return fmt.Sprintf("%s name=%q keys=%q rk=%q noreply=%v line=%q data=%q vlen=%d exp=%q flags=%q opaque=%q b64=%v",
		req.Cmd, req.Name, req.Keys, rk, req.Noreply, req.Line, req.Data, req.ValueLen, req.Exptime, req.Flags, req.Opaque, req.Base64Key)
}

// runStream feeds stream to a parser in chunks chosen by next (which returns
// how many bytes to add) like an engine would, honouring Skip beyond the
// buffer, and records every outcome.
func runStream(t testing.TB, lim Limits, stream []byte, next func(remaining int) int) []string {
	t.Helper()
	p := NewRequestParser(lim)
	var out []string
	var buf []byte
	pos, pendingSkip := 0, 0
	for {
		n, req, need, err := p.Parse(buf)
		switch {
		case err != nil:
			out = append(out, describe(nil, err))
			var e *Error
			errors.As(err, &e)
			if e.Close {
				return out
			}
			if e.Skip <= 0 {
				t.Fatalf("error without skip: %v", e)
			}
			if e.Skip <= len(buf) {
				buf = buf[e.Skip:]
			} else {
				pendingSkip = e.Skip - len(buf)
				buf = buf[:0]
			}
			continue
		case n > 0:
			if need != 0 || req == nil || n > len(buf) {
				t.Fatalf("bad complete result n=%d need=%d req=%v", n, need, req)
			}
			out = append(out, describe(req, nil))
			buf = buf[n:]
			continue
		}
		if need <= len(buf) {
			t.Fatalf("incomplete with need %d <= buffered %d (%q)", need, len(buf), buf)
		}
		if pos == len(stream) {
			if len(buf) > 0 {
				out = append(out, fmt.Sprintf("incomplete %q", buf))
			}
			return out
		}
		k := min(max(next(len(stream)-pos), 1), len(stream)-pos)
		chunk := stream[pos : pos+k]
		pos += k
		if pendingSkip > 0 {
			d := min(pendingSkip, len(chunk))
			pendingSkip -= d
			chunk = chunk[d:]
		}
		// Copy so the parser never sees bytes beyond what was "read".
		nb := make([]byte, len(buf)+len(chunk))
		copy(nb, buf)
		copy(nb[len(buf):], chunk)
		buf = nb
	}
}

func parseOne(t *testing.T, in string) (int, *Request, int, error) {
	t.Helper()
	return NewRequestParser(Limits{}).Parse([]byte(in))
}

// twemproxy src/test_all.c test_memcache_parse_req_success.
func TestTwemproxyRequestSuccess(t *testing.T) {
	long := "get a b " + strings.Repeat("x", 250) + "\r\n"
	cases := []struct {
		in  string
		cmd Command
	}{
		{"add key 0 600 5\r\nvalue\r\n", CmdAdd},
		{"add key 0 0 1 noreply\r\n\n\r\n", CmdAdd},
		{"append key 0 600 5\r\nvalue\r\n", CmdAppend},
		{"append key 0 1 0 noreply\r\n\r\n", CmdAppend},
		{"cas key 0 600 5 123456\r\nvalue\r\n", CmdCas},
		{"cas key 0 1 1 1 noreply\r\nx\r\n", CmdCas},
		{"decr key 0\r\n", CmdDecr},
		{"decr key 0 noreply\r\n", CmdDecr},
		{"delete a noreply\r\n", CmdDelete},
		{"delete key\r\n", CmdDelete},
		{long, CmdGet},
		{"get key\r\n", CmdGet},
		{"gets u\r\n", CmdGets},
		{"incr key 1\r\n", CmdIncr},
		{"incr key 9223372036854775807 noreply\r\n", CmdIncr},
		{"prepend key 0 600 5\r\nvalue\r\n", CmdPrepend},
		{"prepend key 0 600 0 noreply\r\n\r\n", CmdPrepend},
		{"quit\r\n", CmdQuit},
		{"replace key 0 600 5\r\nvalue\r\n", CmdReplace},
		{"replace key 0 9 0 noreply\r\n\r\n", CmdReplace},
		{"set key 0 5 10 noreply\r\nvalue12345\r\n", CmdSet},
		{"set key 0 600 5\r\nvalue\r\n", CmdSet},
		{"touch key 12345\r\n", CmdTouch},
		{"touch key 12345 noreply\r\n", CmdTouch},
		{"version\r\n", CmdVersion},
		// Planned in twemproxy (issue 631), supported here.
		{"gat 3600 key\r\n", CmdGat},
	}
	for _, tc := range cases {
		n, req, need, err := parseOne(t, tc.in)
		if err != nil || n != len(tc.in) || need != 0 {
			t.Errorf("%q: n=%d need=%d err=%v", tc.in, n, need, err)
			continue
		}
		if req.Cmd != tc.cmd {
			t.Errorf("%q: cmd %v, want %v", tc.in, req.Cmd, tc.cmd)
		}
		if want := strings.Contains(tc.in, " noreply"); req.Noreply != want {
			t.Errorf("%q: noreply %v, want %v", tc.in, req.Noreply, want)
		}
	}
	_, req, _, _ := parseOne(t, long)
	if len(req.Keys) != 3 || len(req.Keys[2]) != 250 {
		t.Errorf("long get keys: %q", req.Keys)
	}
}

// twemproxy src/test_all.c test_memcache_parse_req_failure: every case must
// be refused (or, for the CR cases, close the connection).
func TestTwemproxyRequestFailure(t *testing.T) {
	cases := []string{
		"add " + strings.Repeat("x", 251) + " 0 600 5\r\nvalue\r\n",
		"add\r\n",
		"get\r\n",
		"get \r\n",
		"get key\r\r",
		"append key 0 600\r\n",
		"cas key 0 600 5 \r\n",
		"decr key 0 extra\r\n",
		"decr key\r\n",
		"delete \r\n",
		"DELETE key\r\n",
		"gets\r\n",
		"incr\r\n",
		"incr key 0notanint\r\n",
		"prepend key 0 600 5\r\nvalueextra\r\n",
		"prepend key 0 600 0 noreply\r\r",
		"replace key 0 9 ?\r\n\r\n",
		"set key 0 5 10 noreply\r\nvalue12345\r\r",
		"set key 0 600 5\r\nvaluee\r\n",
		"touch missingarg\r\n",
		"version extra\r\n",
	}
	for _, in := range cases {
		n, req, _, err := parseOne(t, in)
		var e *Error
		if !errors.As(err, &e) || n != 0 || req != nil {
			t.Errorf("%q: n=%d req=%v err=%v, want *Error", in, n, req, err)
		}
	}
}

func TestRequestErrors(t *testing.T) {
	k251 := strings.Repeat("k", 251)
	cases := []struct {
		in      string
		reply   string // AppendReply output
		skip    int    // -1: len(in)
		close   bool
		noreply bool
	}{
		{"\r\n", "ERROR\r\n", -1, false, false},
		{"\n", "ERROR\r\n", -1, false, false},
		{"   \r\n", "ERROR\r\n", -1, false, false},
		{"x\r\n", "ERROR\r\n", -1, false, false},
		{"DELETE key\r\n", "ERROR\r\n", -1, false, false},
		{"foo bar\r\n", "ERROR\r\n", -1, false, false},
		{"get\r\n", "ERROR\r\n", -1, false, false},
		{"get \r\n", "ERROR\r\n", -1, false, false},
		{"get " + k251 + "\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"get a " + k251 + "\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"gat\r\n", "ERROR\r\n", -1, false, false},
		{"gat abc k\r\n", "CLIENT_ERROR invalid exptime argument\r\n", -1, false, false},
		{"gat 10\r\n", "ERROR\r\n", -1, false, false},
		{"set k 0 0\r\n", "ERROR\r\n", -1, false, false},
		{"set k 0 0 1 noreply x\r\n", "ERROR\r\n", -1, false, false},
		{"set k 0 0 1 junk\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"set k x 0 1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"set k 0 x 1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"set k 0 0 -1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"set k 4294967296 0 1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"set k 0 0 x noreply\r\n", "", -1, false, true},
		{"set k 0 0 noreply\r\n", "", -1, false, true},
		{"set " + k251 + " 0 0 1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"set " + k251 + " 0 0 1 noreply\r\n", "", -1, false, true},
		{"cas k 0 0 1\r\n", "ERROR\r\n", -1, false, false},
		{"cas k 0 0 1 x\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"set k 0 0 1\r\nab\r\n", "CLIENT_ERROR bad data chunk\r\n", len("set k 0 0 1\r\nab\r"), false, false},
		{"set k 0 0 1 noreply\r\nab\r\n", "", len("set k 0 0 1 noreply\r\nab\r"), false, true},
		{"set k 0 0 2000000\r\n", "SERVER_ERROR object too large for cache\r\n", len("set k 0 0 2000000\r\n") + 2000002, false, false},
		{"set k 0 0 2000000 noreply\r\n", "", len("set k 0 0 2000000 noreply\r\n") + 2000002, false, true},
		{"set k 0 0 2147483645\r\n", "SERVER_ERROR object too large for cache\r\n", len("set k 0 0 2147483645\r\n") + 2147483647, false, false},
		{"set k 0 0 2147483646\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"incr k\r\n", "ERROR\r\n", -1, false, false},
		{"incr k x\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n", -1, false, false},
		{"incr k -1\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n", -1, false, false},
		{"incr k 18446744073709551616\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n", -1, false, false},
		{"incr k x noreply\r\n", "", -1, false, true},
		{"decr " + k251 + " 1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"touch k\r\n", "ERROR\r\n", -1, false, false},
		{"touch k x\r\n", "CLIENT_ERROR invalid exptime argument\r\n", -1, false, false},
		{"touch k 1 x\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"delete\r\n", "ERROR\r\n", -1, false, false},
		{"delete k 1\r\n", "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n", -1, false, false},
		{"delete k 1 noreply\r\n", "", -1, false, true},
		{"delete k 0 x\r\n", "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n", -1, false, false},
		{"delete k 0 noreply x\r\n", "ERROR\r\n", -1, false, false},
		{"delete " + k251 + "\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"version 1\r\n", "ERROR\r\n", -1, false, false},
		{"mx k\r\n", "ERROR\r\n", -1, false, false},
		{"mg\r\n", "ERROR\r\n", -1, false, false},
		{"mg " + k251 + " v\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"mg k v v\r\n", "CLIENT_ERROR duplicate flag\r\n", -1, false, false},
		{"mg k \xff\r\n", "CLIENT_ERROR duplicate flag\r\n", -1, false, false},
		{"mg k !\r\n", "CLIENT_ERROR invalid flag\r\n", -1, false, false},
		{"mg k Tx\r\n", "CLIENT_ERROR bad token in command line format\r\n", -1, false, false},
		{"mg k T\r\n", "CLIENT_ERROR bad token in command line format\r\n", -1, false, false},
		{"mg k Fx\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"mg k Tx Jx\r\n", "CLIENT_ERROR invalid numeric initial value\r\n", -1, false, false},
		{"mg k Dx\r\n", "CLIENT_ERROR invalid numeric delta value\r\n", -1, false, false},
		{"mg k MEE\r\n", "CLIENT_ERROR incorrect length for M token\r\n", -1, false, false},
		{"mg k b\r\n", "CLIENT_ERROR error decoding key\r\n", -1, false, false},
		{"mg k q Tx\r\n", "CLIENT_ERROR bad token in command line format\r\n", -1, false, false},
		{"mg k O" + strings.Repeat("o", 32) + "\r\n", "CLIENT_ERROR opaque token too long\r\n", -1, false, false},
		{"mg k" + strings.Repeat(" O", 18) + "\r\n", "CLIENT_ERROR options flags are too long\r\n", -1, false, false},
		{"md k" + strings.Repeat(" O", 18) + "\r\n", "CLIENT_ERROR options flags too long\r\n", -1, false, false},
		{"md k !\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n", -1, false, false},
		{"md k q q\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n", -1, false, false},
		{"md k O" + strings.Repeat("o", 32) + "\r\n", "CLIENT_ERROR opaque token too long\r\n", -1, false, false},
		{"ma k Dx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n", -1, false, false},
		{"ma k MX\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n", -1, false, false},
		{"ma k MX O" + strings.Repeat("o", 32) + "\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n", -1, false, false},
		{"me\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"me " + k251 + "\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"me ! b\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"ms\r\n", "ERROR\r\n", -1, false, false},
		{"ms k\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"ms k x\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"ms k -1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"ms " + k251 + " 1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		{"ms k 1" + strings.Repeat(" O", 17) + "\r\n", "CLIENT_ERROR options flags too long\r\n", -1, false, false},
		{"ms k 1 !\r\nx\r\n", "CLIENT_ERROR invalid flag\r\n", -1, false, false},
		{"ms k 1 q q\r\nx\r\n", "CLIENT_ERROR duplicate flag\r\n", -1, false, false},
		{"ms k 1 MX\r\nx\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n", -1, false, false},
		{"ms k 1 MX O" + strings.Repeat("o", 32) + "\r\nx\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n", -1, false, false},
		{"ms k 1 O" + strings.Repeat("o", 32) + "\r\nx\r\n", "CLIENT_ERROR opaque token too long\r\n", -1, false, false},
		{"ms k 1 q\r\nxy\r\n", "CLIENT_ERROR bad data chunk\r\n", len("ms k 1 q\r\nxy\r"), false, false},
		{"ms k 2000000 q\r\n", "SERVER_ERROR object too large for cache\r\n", len("ms k 2000000 q\r\n") + 2000002, false, false},
		{"ms k 2000000\r\n", "SERVER_ERROR object too large for cache\r\n", len("ms k 2000000\r\n") + 2000002, false, false},
		{"get a\x00b\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false, false},
		// Connection-closing cases.
		{"get key\r\r", "CLIENT_ERROR bad command line format\r\n", 0, true, false},
		{"get k\rx\r\n", "CLIENT_ERROR bad command line format\r\n", 0, true, false},
		{"GET / HTTP/1.0\r\n", "", 0, true, false},
		{"POST /x HTTP/1.1\r\n", "", 0, true, false},
		{"\x80\x00\x00\x00", "", 0, true, false},
		{strings.Repeat("x", 2049), "", 0, true, false},
		{"set " + strings.Repeat(" ", 2100), "", 0, true, false},
		{strings.Repeat(" ", 101) + "get " + strings.Repeat("k ", 1100), "", 0, true, false},
		{"get " + strings.Repeat("k ", 40000), "", 0, true, false},
	}
	for _, tc := range cases {
		n, req, _, err := parseOne(t, tc.in)
		var e *Error
		if !errors.As(err, &e) || n != 0 || req != nil {
			t.Errorf("%.60q: n=%d req=%v err=%v, want *Error", tc.in, n, req, err)
			continue
		}
		if got := string(e.AppendReply(nil)); got != tc.reply {
			t.Errorf("%.60q: reply %q, want %q", tc.in, got, tc.reply)
		}
		skip := tc.skip
		if skip < 0 {
			skip = len(tc.in)
		}
		if !tc.close && e.Skip != skip {
			t.Errorf("%.60q: skip %d, want %d", tc.in, e.Skip, skip)
		}
		if e.Close != tc.close || e.Noreply != tc.noreply {
			t.Errorf("%.60q: close=%v noreply=%v, want %v %v", tc.in, e.Close, e.Noreply, tc.close, tc.noreply)
		}
	}
}

func TestRequestOK(t *testing.T) {
	b64 := "AAEC/w==" // 00 01 02 ff
	cases := []struct {
		in   string
		want string // substring checks of describe()
	}{
		{"get a b c\r\n", `get name="get" keys=["a" "b" "c"]`},
		{"  get   a  b \r\n", `keys=["a" "b"]`},
		{"get a\n", `keys=["a"] rk=["a"] noreply=false line="get a"`},
		{"gets a b\r\n", `gets name="gets" keys=["a" "b"]`},
		{"gat -1 a b\r\n", `gat name="gat" keys=["a" "b"]`},
		{"gats 100 a\r\n", `exp="100"`},
		{"get / HTTP/1.0\r\n", `keys=["/" "HTTP/1.0"]`},
		{"set k 1 2 3\r\na\r\n\r\n", `data="a\r\n\r\n" vlen=3`},
		{"set k 4294967295 -5 0\r\n\r\n", `data="\r\n" vlen=0`},
		{"cas k 0 0 1 18446744073709551615 noreply\r\nx\r\n", `noreply=true`},
		{"delete k 0\r\n", `delete name="delete" keys=["k"] rk=["k"] noreply=false`},
		{"delete k 0 noreply\r\n", `noreply=true`},
		{"incr k 18446744073709551615\r\n", `incr`},
		{"touch k -1 noreply\r\n", `noreply=true`},
		{"quit extra\r\n", `quit`},
		{"mn\r\n", `mn`},
		{"mn junk\r\n", `mn`},
		{"version\n", `version`},
		{"stats\r\n", `unsupported name="stats"`},
		{"flush_all 0 noreply\r\n", `unsupported name="flush_all" keys=[] rk=[] noreply=true`},
		{"verbosity 1\r\n", `unsupported name="verbosity"`},
		{"mg k\r\n", `mg name="mg" keys=["k"] rk=["k"] noreply=false`},
		{"mg k s v f t c h l k O123 q u T10 N30 R5\r\n", `noreply=true`},
		{"mg k v Oabc\r\n", `flags=["v" "Oabc"] opaque="abc"`},
		{"mg " + b64 + " b v\r\n", `keys=["AAEC/w=="] rk=["\x00\x01\x02\xff"]`},
		{"mg A*A*E$C/w== b v\r\n", `rk=["\x00\x01\x02\xff"]`},
		{"ms k 3 T0 F5 C99 I q k O1 MA\r\nabc\r\n", `ms name="ms" keys=["k"] rk=["k"] noreply=true`},
		{"ms k 3\r\na\nb\r\n", `data="a\nb\r\n" vlen=3`},
		{"ms " + b64 + " 0 b\r\n\r\n", `b64=true`},
		{"md k q C5 I T30\r\n", `noreply=true`},
		{"ma k N0 J10 D5 MD q v t c\r\n", `noreply=true`},
		{"ma k M+\r\n", `ma`},
		{"me k\r\n", `me name="me" keys=["k"]`},
		{"me " + b64 + " b\r\n", `rk=["\x00\x01\x02\xff"]`},
		{"me k q\r\n", `noreply=false`},
		{"mg " + strings.Repeat("k", 250) + "\r\n", `mg`},
		{"mg k s v f t c h l k O1 q u T1 N1 R1 P L I\r\n", `mg`},
	}
	for _, tc := range cases {
		n, req, _, err := parseOne(t, tc.in)
		if err != nil || n != len(tc.in) {
			t.Errorf("%q: n=%d err=%v", tc.in, n, err)
			continue
		}
		if d := describe(req, nil); !strings.Contains(d, tc.want) {
			t.Errorf("%q:\n got %s\nwant substring %s", tc.in, d, tc.want)
		}
	}
}

func TestIncomplete(t *testing.T) {
	cases := []struct {
		in   string
		need int
	}{
		{"", 1},
		{"get", 4},
		{"get k\r", 7},
		{"set k 0 0 5\r\n", 20},
		{"set k 0 0 5\r\nab", 20},
		{"set k 0 0 5\r\nabcde\r", 20},
		{"ms k 10 T0\r\n", len("ms k 10 T0\r\n") + 12},
		{"get " + strings.Repeat("k ", 5000), 10005},
	}
	for _, tc := range cases {
		n, req, need, err := parseOne(t, tc.in)
		if n != 0 || req != nil || err != nil || need != tc.need {
			t.Errorf("%.40q: n=%d err=%v need=%d, want need %d", tc.in, n, err, need, tc.need)
		}
	}
}

func TestLineLimits(t *testing.T) {
	p := NewRequestParser(Limits{MaxLineLen: 100, MaxRetrievalLineLen: 1000, MaxKeys: 5})
	// A line of exactly MaxLineLen bytes plus LF is fine.
	line := "mn " + strings.Repeat("x", 97) + "\n"
	if n, _, _, err := p.Parse([]byte(line)); err != nil || n != len(line) {
		t.Fatalf("100-byte line: n=%d err=%v", n, err)
	}
	line = "mn " + strings.Repeat("x", 98) + "\n"
	if _, _, _, err := p.Parse([]byte(line)); !isClose(err) {
		t.Fatalf("101-byte line: %v, want close", err)
	}
	get := "get " + strings.Repeat("abcdefghi ", 5) + "\r\n"
	if n, req, _, err := p.Parse([]byte(get + "rest")); err != nil || n != len(get) || len(req.Keys) != 5 {
		t.Fatalf("long get: n=%d err=%v", n, err)
	}
	get6 := "gets " + strings.Repeat("abcdefghijklmnopq ", 6) + "\r\n"
	_, _, _, err := p.Parse([]byte(get6))
	var e *Error
	if !errors.As(err, &e) || e.Error() != "SERVER_ERROR out of memory writing get response" || e.Skip != len(get6) {
		t.Fatalf("too many keys: %v", err)
	}
	if _, _, _, err := p.Parse([]byte("get " + strings.Repeat("k", 1000))); !isClose(err) {
		t.Fatalf("get line over retrieval limit: %v, want close", err)
	}
	if n, _, need, err := p.Parse([]byte("get " + strings.Repeat("k", 900))); n != 0 || err != nil || need != 905 {
		t.Fatalf("partial long get: n=%d need=%d err=%v", n, need, err)
	}
}

func isClose(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Close
}

// testStream mixes every command, values containing CRLF, errors that skip
// lines, swallowed values and pipelining.
func testStream() []byte {
	var b bytes.Buffer
	b.WriteString("get a b c\r\ngets x\r\ngat 10 a b\r\ngats -1 z\r\n")
	b.WriteString("set k 1 2 6\r\na\r\nb\r\n\r\nadd k 0 0 0 noreply\r\n\r\n")
	b.WriteString("replace k 0 0 1\r\nx\r\nappend k 0 0 2\r\n\r\n\r\nprepend k 0 0 1 noreply\r\n\n\r\n")
	b.WriteString("cas k 0 0 1 77\r\n\r\r\ndelete k\r\ndelete k 0 noreply\r\nincr k 5\r\ndecr k 5 noreply\r\n")
	b.WriteString("touch k 10\r\nversion\r\nstats\r\nverbosity 1 noreply\r\n\r\nbogus\r\nDELETE x\r\n")
	b.WriteString("set k 0 0 abc\r\nxyz\r\nset k 0 0 1\r\nxyz\r\n")
	b.WriteString("set big 0 0 3000\r\n" + strings.Repeat("v", 3000) + "\r\nget after\r\n")
	b.WriteString("mg k v f t c q Oop\r\nms k 5 T10 F3 q\r\nab\r\nc\r\nmd k q\r\nma k v MD D3\r\nmn\r\nme k\r\n")
	b.WriteString("mg AAEC/w== b k\r\nms k 4 MX\r\nabcd\r\nmg k vv v\r\nmg k Oop\n")
	b.WriteString("set k 0 0 1\r\nx\r\nget k\r\r")
	return b.Bytes()
}

func TestSplitEquivalence(t *testing.T) {
	lim := Limits{MaxItemSize: 1000}
	stream := testStream()
	whole := runStream(t, lim, stream, func(r int) int { return r })
	if len(whole) < 35 {
		t.Fatalf("only %d results: %q", len(whole), whole)
	}
	if last := whole[len(whole)-1]; !strings.Contains(last, "close=true") {
		t.Fatalf("stream should end with a close, got %s", last)
	}
	oneByte := runStream(t, lim, stream, func(int) int { return 1 })
	compareRuns(t, "byte-at-a-time", whole, oneByte)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		got := runStream(t, lim, stream, func(int) int { return 1 + rng.Intn(64) })
		compareRuns(t, fmt.Sprintf("random split %d", i), whole, got)
	}
}

func compareRuns(t *testing.T, name string, want, got []string) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d results, want %d\n got %q\nwant %q", name, len(got), len(want), got, want)
	}
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("%s: result %d\n got %s\nwant %s", name, i, got[i], want[i])
		}
	}
}

// The value is swallowed whole, so the request after it parses normally.
func TestOversizedValueSkip(t *testing.T) {
	val := strings.Repeat("\r\nget x\r\n", 200)
	stream := []byte(fmt.Sprintf("set k 0 0 %d\r\n%s\r\nget after\r\n", len(val), val))
	got := runStream(t, Limits{MaxItemSize: 100}, stream, func(int) int { return 7 })
	if len(got) != 2 || !strings.Contains(got[0], "object too large") || !strings.Contains(got[1], `keys=["after"]`) {
		t.Fatalf("got %q", got)
	}
}

func TestParserReuseDropsHugeArgs(t *testing.T) {
	p := NewRequestParser(Limits{})
	big := "get " + strings.Repeat("k ", 3000) + "\r\n"
	if _, req, _, err := p.Parse([]byte(big)); err != nil || len(req.Keys) != 3000 {
		t.Fatal(err)
	}
	if _, req, _, err := p.Parse([]byte("get a\r\n")); err != nil || cap(req.Args) > argsKeepCap {
		t.Fatalf("args cap %d kept after huge multi-get (err %v)", cap(req.Args), err)
	}
}

func TestBase64KeyDecode(t *testing.T) {
	buf := make([]byte, 250)
	cases := []struct {
		in   string
		want string
		ok   bool
	}{
		{"Zm9v", "foo", true},
		{"Zm8=", "fo", true},
		{"Zg==", "f", true},
		{"Z!m-9v", "foo", true}, // memcached skips non-alphabet bytes
		{"Zm9vYmFy", "foobar", true},
		{"Zg==Zm9v", "f", true}, // decoding stops at the padded block
		{"Zm9", "", false},
		{"====", "", false},
		{"Z===", "", false},
		{"!!!!", "", false},
		{"", "", false},
	}
	for _, tc := range cases {
		n, ok := decodeBase64Key(buf, []byte(tc.in))
		if ok != tc.ok || (ok && string(buf[:n]) != tc.want) {
			t.Errorf("%q: got %q %v, want %q %v", tc.in, buf[:n], ok, tc.want, tc.ok)
		}
	}
}

func TestNumbers(t *testing.T) {
	i32 := []struct {
		in string
		v  int32
		ok bool
	}{
		{"0", 0, true}, {"-1", -1, true}, {"2147483647", 2147483647, true},
		{"2147483648", 0, false}, {"-2147483648", -2147483648, true}, {"-2147483649", 0, false},
		{"", 0, false}, {"-", 0, false}, {"+1", 0, false}, {"1a", 0, false}, {" 1", 0, false},
	}
	for _, tc := range i32 {
		v, ok := parseInt32([]byte(tc.in))
		if v != tc.v || ok != tc.ok {
			t.Errorf("parseInt32(%q) = %d %v", tc.in, v, ok)
		}
	}
	if _, ok := parseUint64([]byte("18446744073709551615")); !ok {
		t.Error("max uint64 refused")
	}
	if _, ok := parseUint64([]byte("18446744073709551616")); ok {
		t.Error("max uint64 + 1 accepted")
	}
	if _, ok := parseUint32([]byte("4294967296")); ok {
		t.Error("max uint32 + 1 accepted")
	}
}
