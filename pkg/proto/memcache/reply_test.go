package memcache

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// twemproxy src/test_all.c test_memcache_parse_rsp_success; twemproxy's
// parser is context-free, ours is told the command.
func TestTwemproxyReplySuccess(t *testing.T) {
	cases := []struct {
		cmd Command
		in  string
		err bool
	}{
		{CmdIncr, "0\r\n", false},
		{CmdIncr, "0  \r\n", false},
		{CmdDecr, "9223372036854775807\r\n", false},
		{CmdDelete, "DELETED\r\n", false},
		{CmdGet, "END\r\n", false},
		{CmdGet, "ERROR\r\n", true},
		{CmdCas, "EXISTS\r\n", false},
		{CmdDelete, "NOT_FOUND\r\n", false},
		{CmdSet, "STORED\r\n", false},
		{CmdTouch, "TOUCHED\r\n", false},
		{CmdGet, "VALUE key 0 2\r\nab\r\nEND\r\n", false},
		{CmdGet, "VALUE key 0 2\r\nab\r\nVALUE key2 0 2\r\ncd\r\nEND\r\n", false},
		{CmdVersion, "VERSION 1.5.22\r\n", false},
	}
	for _, tc := range cases {
		n, need, isErr, err := ReplyLen(tc.cmd, []byte(tc.in))
		if err != nil || n != len(tc.in) || need != 0 || isErr != tc.err {
			t.Errorf("%v %q: n=%d need=%d isErr=%v err=%v", tc.cmd, tc.in, n, need, isErr, err)
		}
	}
}

// twemproxy src/test_all.c test_memcache_parse_rsp_failure.
func TestTwemproxyReplyFailure(t *testing.T) {
	cases := []struct {
		cmd Command
		in  string
	}{
		{CmdGet, "\r\n"},
		{CmdIncr, "\r\n"},
		{CmdSet, "\r\n"},
		{CmdGet, "ENDD\r\n"},
		{CmdGet, "\r"},
		{CmdSet, "\r"},
		{CmdIncr, "-1\r\n"},
	}
	for _, tc := range cases {
		n, _, _, err := ReplyLen(tc.cmd, []byte(tc.in))
		if !errors.Is(err, ErrBadReply) || n != 0 {
			t.Errorf("%v %q: n=%d err=%v, want ErrBadReply", tc.cmd, tc.in, n, err)
		}
	}
}

func TestReplyLen(t *testing.T) {
	ok := []struct {
		cmd   Command
		in    string
		isErr bool
	}{
		{CmdGets, "VALUE k 5 3 99\r\na\r\n\r\nEND\r\n", false},
		{CmdGat, "VALUE k 0 0\r\n\r\nEND\r\n", false},
		{CmdGats, "VALUE k 4294967295 1 18446744073709551615\r\nx\r\nEND\r\n", false},
		{CmdGet, "VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory writing get response\r\n", true},
		{CmdGet, "CLIENT_ERROR bad command line format\r\n", true},
		{CmdSet, "NOT_STORED\r\n", false},
		{CmdAppend, "SERVER_ERROR object too large for cache\r\n", true},
		{CmdIncr, "NOT_FOUND\r\n", false},
		{CmdIncr, "18446744073709551615\r\n", false},
		{CmdTouch, "NOT_FOUND\r\n", false},
		{CmdMetaGet, "EN\r\n", false},
		{CmdMetaGet, "HD c5 f0 Oab\r\n", false},
		{CmdMetaGet, "VA 2 f0 t-1\r\nab\r\n", false},
		{CmdMetaGet, "VA 0\r\n\r\n", false},
		{CmdMetaGet, "VA 4 W\r\n\r\n\r\n\r\n", false},
		{CmdMetaGet, "CLIENT_ERROR bad command line format\r\n", true},
		{CmdMetaSet, "HD\r\n", false},
		{CmdMetaSet, "NS Oa\r\n", false},
		{CmdMetaSet, "EX\r\n", false},
		{CmdMetaSet, "NF\r\n", false},
		{CmdMetaDelete, "HD\r\n", false},
		{CmdMetaDelete, "NF k\r\n", false},
		{CmdMetaArithmetic, "VA 2 c3\r\n10\r\n", false},
		{CmdMetaArithmetic, "NS\r\n", false},
		{CmdMetaDebug, "ME k exp=-1 la=2 cas=3 fetch=no cls=1 size=63\r\n", false},
		{CmdMetaDebug, "EN\r\n", false},
		{CmdMetaNoop, "MN\r\n", false},
		{CmdVersion, "VERSION 1.6.18\r\n", false},
		{CmdUnsupported, "OK\r\n", false},
	}
	for _, tc := range ok {
		in := tc.in + "trailing"
		n, need, isErr, err := ReplyLen(tc.cmd, []byte(in))
		if err != nil || n != len(tc.in) || need != 0 || isErr != tc.isErr {
			t.Errorf("%v %q: n=%d need=%d isErr=%v err=%v", tc.cmd, tc.in, n, need, isErr, err)
		}
		// Every strict prefix is incomplete, with a need beyond it.
		for i := 0; i < len(tc.in); i++ {
			n, need, _, err := ReplyLen(tc.cmd, []byte(tc.in[:i]))
			if n != 0 || err != nil || need <= i || need > len(tc.in)+len(endLine) {
				t.Fatalf("%v prefix %q: n=%d need=%d err=%v", tc.cmd, tc.in[:i], n, need, err)
			}
		}
	}

	bad := []struct {
		cmd Command
		in  string
		err error
	}{
		{CmdGet, "STORED\r\n", ErrBadReply},
		{CmdGet, "VALUE k 0 2\r\nabc\r\nEND\r\n", ErrBadReply},
		{CmdGet, "VALUE k 0\r\n", ErrBadReply},
		{CmdGet, "VALUE k x 1\r\n", ErrBadReply},
		{CmdGet, "VALUE k 0 1 x\r\n", ErrBadReply},
		{CmdGet, "VALUE k 0 1 2 3\r\n", ErrBadReply},
		{CmdGet, "VALUE k 0 -1\r\n", ErrBadReply},
		{CmdGet, "VALUE k 0 1073741825\r\n", ErrReplyTooLarge},
		{CmdGet, "VALUE k 0 99999999999999999999999\r\n", ErrBadReply},
		{CmdGet, "END x\r\n", ErrBadReply},
		{CmdGet, "END\n", ErrBadReply},
		{CmdGet, "VALUE k 0 1\r\nx\r\nSTORED\r\n", ErrBadReply},
		{CmdSet, "STORED x\r\n", ErrBadReply},
		{CmdSet, "DELETED\r\n", ErrBadReply},
		{CmdSet, "STOR\rED\r\n", ErrBadReply},
		{CmdIncr, "1a\r\n", ErrBadReply},
		{CmdIncr, "+1\r\n", ErrBadReply},
		{CmdIncr, "5 5\r\n", ErrBadReply},
		{CmdDelete, "STORED\r\n", ErrBadReply},
		{CmdVersion, "VERSIONS\r\n", ErrBadReply},
		{CmdMetaGet, "NS\r\n", ErrBadReply},
		{CmdMetaGet, "VA x\r\n", ErrBadReply},
		{CmdMetaGet, "VA 2000000000\r\n", ErrReplyTooLarge},
		{CmdMetaGet, "VA 1\r\nxy\r\n", ErrBadReply},
		{CmdMetaSet, "VA 1\r\nx\r\n", ErrBadReply},
		{CmdMetaDebug, "HD\r\n", ErrBadReply},
		{CmdMetaNoop, "EN\r\n", ErrBadReply},
		{CmdUnsupported, "\r\n", ErrBadReply},
		{CmdQuit, "", ErrNoReply},
		{CmdGet, strings.Repeat("x", MaxReplyLineLen+2), ErrReplyTooLarge},
		{CmdGet, "x " + strings.Repeat("x", MaxReplyLineLen+2), ErrBadReply},
		{CmdUnsupported, strings.Repeat("x", MaxReplyLineLen+2), ErrReplyTooLarge},
		// Garbage is reported before its line ends.
		{CmdGet, "GARBAGE ", ErrBadReply},
		{CmdSet, "\r", ErrBadReply},
		{CmdSet, "STORED\rx", ErrBadReply},
	}
	for _, tc := range bad {
		if _, _, _, err := ReplyLen(tc.cmd, []byte(tc.in)); !errors.Is(err, tc.err) {
			t.Errorf("%v %.40q: err=%v, want %v", tc.cmd, tc.in, err, tc.err)
		}
	}
}

func TestReplyNeed(t *testing.T) {
	cases := []struct {
		cmd  Command
		in   string
		need int
	}{
		{CmdGet, "", 1},
		{CmdGet, "VALUE k 0 10\r\n", 14 + 12 + 5},
		{CmdGet, "VALUE k 0 10\r\nabc", 14 + 12 + 5},
		{CmdGet, "VALUE k 0 1\r\nx\r\nEN", 19},
		{CmdMetaGet, "VA 100 f0\r\n", 11 + 102},
		{CmdSet, "STO", 4},
	}
	for _, tc := range cases {
		n, need, _, err := ReplyLen(tc.cmd, []byte(tc.in))
		if n != 0 || err != nil || need != tc.need {
			t.Errorf("%v %q: n=%d need=%d err=%v, want need %d", tc.cmd, tc.in, n, need, err, tc.need)
		}
	}
}

func TestStripEnd(t *testing.T) {
	if got := string(StripEnd([]byte("VALUE k 0 1\r\nx\r\nEND\r\n"))); got != "VALUE k 0 1\r\nx\r\n" {
		t.Errorf("got %q", got)
	}
	if got := string(StripEnd([]byte("END\r\n"))); got != "" {
		t.Errorf("got %q", got)
	}
	if got := string(StripEnd([]byte("SERVER_ERROR x\r\n"))); got != "SERVER_ERROR x\r\n" {
		t.Errorf("got %q", got)
	}
}

func TestAppendRetrieval(t *testing.T) {
	p := NewRequestParser(Limits{})
	cases := []struct{ in, want string }{
		{"get a b c\r\n", "get a c\r\n"},
		{"gets   a b c\r\n", "gets a c\r\n"},
		{"gat 100 a b c\r\n", "gat 100 a c\r\n"},
		{"gats -1 a b c\n", "gats -1 a c\r\n"},
	}
	for _, tc := range cases {
		_, req, _, err := p.Parse([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		got := AppendRetrieval([]byte("x"), req, [][]byte{req.Keys[0], req.Keys[2]})
		if string(got) != "x"+tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppendWithoutNoreply(t *testing.T) {
	p := NewRequestParser(Limits{})
	cases := []struct{ in, want string }{
		{"set k 0 0 1 noreply\r\nx\r\n", "set k 0 0 1\r\nx\r\n"},
		{"set  k 0 0 1\r\nx\r\n", "set  k 0 0 1\r\nx\r\n"},
		{"cas k 0 0 1 5 noreply\r\nx\r\n", "cas k 0 0 1 5\r\nx\r\n"},
		{"delete k noreply\r\n", "delete k\r\n"},
		{"delete k 0 noreply\r\n", "delete k 0\r\n"},
		{"incr k 1 noreply\n", "incr k 1\r\n"},
		{"touch k 1 noreply\r\n", "touch k 1\r\n"},
		{"get a b\n", "get a b\r\n"},
		{"mg k q v Oa\r\n", "mg k v Oa\r\n"},
		{"mg k v q\r\n", "mg k v\r\n"},
		{"ms k 2 q T0\r\nab\r\n", "ms k 2 T0\r\nab\r\n"},
		{"md k q\r\n", "md k\r\n"},
		{"ma k q D2\r\n", "ma k D2\r\n"},
		{"me k q\r\n", "me k q\r\n"},
		{"flush_all noreply\r\n", "flush_all\r\n"},
	}
	for _, tc := range cases {
		_, req, _, err := p.Parse([]byte(tc.in))
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		got := string(AppendWithoutNoreply(nil, req))
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
		// The rebuilt request parses to the same command without noreply.
		n, req2, _, err := p.Parse([]byte(got))
		if err != nil || n != len(got) || req2.Noreply && req2.Cmd != CmdMetaDebug {
			t.Errorf("%q: reparse n=%d err=%v", got, n, err)
		}
	}
}

func TestSuppressed(t *testing.T) {
	p := NewRequestParser(Limits{})
	cases := []struct {
		in    string
		reply string
		want  bool
	}{
		{"set k 0 0 1\r\nx\r\n", "STORED\r\n", false},
		{"set k 0 0 1 noreply\r\nx\r\n", "STORED\r\n", true},
		{"set k 0 0 1 noreply\r\nx\r\n", "SERVER_ERROR out of memory storing object\r\n", true},
		{"delete k noreply\r\n", "NOT_FOUND\r\n", true},
		{"incr k 1 noreply\r\n", "5\r\n", true},
		{"mg k q\r\n", "EN\r\n", true},
		{"mg k q\r\n", "HD\r\n", false},
		{"mg k q v\r\n", "VA 1\r\nx\r\n", false},
		{"mg k q\r\n", "CLIENT_ERROR bad command line format\r\n", false},
		{"mg k\r\n", "EN\r\n", false},
		{"ms k 1 q\r\nx\r\n", "HD\r\n", true},
		{"ms k 1 q\r\nx\r\n", "NS\r\n", false},
		{"ms k 1 q\r\nx\r\n", "EX\r\n", false},
		{"md k q\r\n", "HD\r\n", true},
		{"md k q\r\n", "NF\r\n", false},
		{"ma k q\r\n", "HD\r\n", true},
		{"ma k q v\r\n", "VA 1\r\n1\r\n", true},
		{"ma k q\r\n", "NF\r\n", false},
		{"ma k q\r\n", "HDX\r\n", false},
	}
	for _, tc := range cases {
		_, req, _, err := p.Parse([]byte(tc.in))
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := Suppressed(req, []byte(tc.reply)); got != tc.want {
			t.Errorf("%q / %q: got %v, want %v", tc.in, tc.reply, got, tc.want)
		}
	}
}

// multiGetReply is a retrieval reply of n values and the offset where each
// VALUE block (and the END line) starts.
func multiGetReply(n, size int) ([]byte, []int) {
	var b []byte
	var starts []int
	for i := range n {
		starts = append(starts, len(b))
		b = append(b, "VALUE key:"...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, " 0 "...)
		b = strconv.AppendInt(b, int64(size), 10)
		b = append(b, "\r\n"...)
		b = append(b, strings.Repeat("v", size)...)
		b = append(b, "\r\n"...)
	}
	starts = append(starts, len(b))
	return append(b, "END\r\n"...), starts
}

func TestReplyScannerResumes(t *testing.T) {
	reply, starts := multiGetReply(300, 20)
	for _, chunk := range []int{1, 7, 100, 4096} {
		var s ReplyScanner
		for i := chunk; ; i += chunk {
			i = min(i, len(reply))
			n, need, isErr, err := s.Scan(CmdGet, reply[:i])
			wn, wneed, wisErr, werr := ReplyLen(CmdGet, reply[:i])
			if n != wn || need != wneed || isErr != wisErr || (err == nil) != (werr == nil) {
				t.Fatalf("chunk %d, %d bytes: scanner %d %d %v %v, ReplyLen %d %d %v %v", chunk, i, n, need, isErr, err, wn, wneed, wisErr, werr)
			}
			if i == len(reply) {
				if n != len(reply) || s.pos != 0 {
					t.Fatalf("chunk %d: complete reply gave n=%d pos=%d", chunk, n, s.pos)
				}
				break
			}
			// Whole blocks are not scanned again: the scanner resumes at the
			// start of the first block not yet complete.
			want := 0
			for _, st := range starts {
				if st <= i {
					want = st
				}
			}
			if s.pos != want {
				t.Fatalf("chunk %d, %d bytes: resumes at %d, want %d", chunk, i, s.pos, want)
			}
		}
	}
}

func TestReplyScannerTrustsWhatItValidated(t *testing.T) {
	reply, starts := multiGetReply(3, 10)
	var s ReplyScanner
	if n, _, _, err := s.Scan(CmdGet, reply[:starts[2]+3]); n != 0 || err != nil || s.pos != starts[2] {
		t.Fatalf("n=%d err=%v pos=%d", n, err, s.pos)
	}
	// The validated blocks are not read again: garbage there (which
	// ReplyLen rejects) goes unnoticed, so the scan did resume.
	tampered := append([]byte(nil), reply...)
	copy(tampered[6:starts[2]], strings.Repeat("#", starts[2]-6))
	if _, _, _, err := ReplyLen(CmdGet, tampered); err == nil {
		t.Fatal("ReplyLen accepted the tampered reply")
	}
	if n, _, _, err := s.Scan(CmdGet, tampered); n != len(reply) || err != nil {
		t.Fatalf("resumed scan: n=%d err=%v, want %d", n, err, len(reply))
	}
	// A buffer that cannot be the reply in progress is scanned afresh.
	for _, tc := range []struct {
		name string
		c    Command
		buf  []byte
	}{
		{"another command", CmdGets, tampered},
		{"shorter than validated", CmdGet, []byte("VALUE a 0 1\r\n")},
		{"not a VALUE block", CmdGet, []byte("SERVER_ERROR out of memory\r\n" + strings.Repeat("x", 64))},
	} {
		s = ReplyScanner{}
		if _, _, _, err := s.Scan(CmdGet, reply[:starts[2]+3]); err != nil || s.pos != starts[2] {
			t.Fatalf("%s: setup: err=%v pos=%d", tc.name, err, s.pos)
		}
		n, need, isErr, err := s.Scan(tc.c, tc.buf)
		wn, wneed, wisErr, werr := ReplyLen(tc.c, tc.buf)
		if n != wn || need != wneed || isErr != wisErr || (err == nil) != (werr == nil) {
			t.Fatalf("%s: scanner %d %d %v %v, ReplyLen %d %d %v %v", tc.name, n, need, isErr, err, wn, wneed, wisErr, werr)
		}
	}
}

func TestReplyScannerOtherCommands(t *testing.T) {
	var s ReplyScanner
	for _, tc := range []struct {
		c   Command
		buf string
	}{
		{CmdSet, "STORED\r\n"},
		{CmdMetaGet, "VA 2 f0\r\nhi\r\n"},
		{CmdGet, "END\r\n"},
		{CmdDelete, "NOT_FOUND\r\n"},
	} {
		n, _, _, err := s.Scan(tc.c, []byte(tc.buf))
		if n != len(tc.buf) || err != nil || s.pos != 0 {
			t.Fatalf("%s %q: n=%d err=%v pos=%d", tc.c, tc.buf, n, err, s.pos)
		}
	}
}
