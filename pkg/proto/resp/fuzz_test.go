package resp

import (
	"bytes"
	"testing"
)

func addRequestSeeds(f *testing.F) {
	for _, in := range allInputs() {
		if len(in) < 4096 {
			f.Add([]byte(in))
		}
	}
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"))
	f.Add([]byte("echo \"\\x41\\n\" 'a\\'b'\r\n"))
	f.Add([]byte("\x00\r\n*\x00\r\n$\x00\r\n"))
}

// FuzzRequestParser checks that the parser never panics, never consumes
// more than it was given, that a prefix never yields a different complete
// request, that a resumed parser agrees with a fresh one, and that a
// complete request survives re-encoding with AppendCommand.
func FuzzRequestParser(f *testing.F) {
	addRequestSeeds(f)
	f.Fuzz(func(t *testing.T, buf []byte) {
		lim := Limits{MaxInlineLen: 64, MaxBulkLen: 1 << 10, MaxArgs: 64}
		whole := parseOnce(NewRequestParser(lim), buf)
		if whole.n > len(buf) || whole.n < 0 {
			t.Fatalf("consumed %d of %d bytes", whole.n, len(buf))
		}
		resumed := NewRequestParser(lim)
		for k := 0; k <= len(buf); k++ {
			got := parseOnce(NewRequestParser(lim), buf[:k])
			if res := parseOnce(resumed, buf[:k]); !res.equal(got) {
				t.Fatalf("prefix %d: fresh %v, resumed %v", k, got, res)
			}
			if got.err != "" {
				if got.err != whole.err {
					t.Fatalf("prefix %d fails with %q, whole input gives %v", k, got.err, whole)
				}
				break
			}
			if got.n > 0 {
				if !got.equal(whole) {
					t.Fatalf("prefix %d: %v, whole input gives %v", k, got, whole)
				}
				break
			}
			if got.need > 0 && (got.need <= k || whole.n > 0 && got.need > whole.n) {
				t.Fatalf("prefix %d: need %d, whole %v", k, got.need, whole)
			}
		}
		if whole.n > 0 && len(whole.args) > 0 {
			enc := AppendCommand(nil, bytesArgs(whole.args))
			again := parseOnce(NewRequestParser(Limits{}), enc)
			if again.n != len(enc) || again.inline || len(again.args) != len(whole.args) {
				t.Fatalf("re-encoded %q parses as %v", enc, again)
			}
			for i := range again.args {
				if again.args[i] != whole.args[i] {
					t.Fatalf("re-encoded arg %d: %q != %q", i, again.args[i], whole.args[i])
				}
			}
			if !whole.inline && !bytes.Equal(enc, buf[:whole.n]) {
				t.Fatalf("accepted non-canonical RESP %q (canonical %q)", buf[:whole.n], enc)
			}
		}
	})
}

// FuzzInline checks splitArgs against a quoting round trip: quoting each
// parsed argument and splitting again yields the same arguments.
func FuzzInline(f *testing.F) {
	for _, s := range []string{"", "a b", `"a\x41" 'b\'c'`, `"\`, `'a'b`, "a\vb\f c", `"\xZZ\q"`, "\"\" ''"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		out, spans, ok := splitArgs(line, make([]byte, 0, len(line)), nil)
		if !ok {
			return
		}
		if len(out) > len(line) {
			t.Fatalf("unescaped %d bytes from a %d-byte line", len(out), len(line))
		}
		args := make([]string, len(spans))
		for i, s := range spans {
			args[i] = string(out[s.off : s.off+s.n])
		}
		quoted := appendInline(nil, args)
		quoted = quoted[:len(quoted)-2]
		out2, spans2, ok := splitArgs(quoted, make([]byte, 0, len(quoted)), nil)
		if !ok || len(spans2) != len(spans) {
			t.Fatalf("%q -> %q -> %q: %v", line, args, quoted, ok)
		}
		for i, s := range spans2 {
			if string(out2[s.off:s.off+s.n]) != args[i] {
				t.Fatalf("arg %d: %q != %q", i, out2[s.off:s.off+s.n], args[i])
			}
		}
	})
}

// FuzzReplyLen checks the reply framer, RESP2 and RESP3: no panic, no
// over-read, prefixes and resumed scans (byte by byte and in splits the
// input picks) agree with fresh ones, aggregates iterate into elements that
// tile the reply, and ArrayElems and ReplyType never panic on any input.
func FuzzReplyLen(f *testing.F) {
	for _, in := range append(append([]string{}, goodReplies...), badReplies...) {
		f.Add([]byte(in))
	}
	for _, tc := range goodReplies3 {
		f.Add([]byte(tc.in))
	}
	for _, tc := range badReplies3 {
		if len(tc.in) < 256 {
			f.Add([]byte(tc.in))
		}
	}
	if _, golden := readGolden(f); len(golden) > 0 {
		for _, r := range golden {
			f.Add(r.reply)
		}
	}
	f.Fuzz(checkReplyFuzz)
}

func checkReplyFuzz(t *testing.T, buf []byte) {
	lim := Limits{MaxDepth: 8, MaxBulkLen: 1 << 10, MaxArrayLen: 1 << 10}
	wn, wneed, werr := ReplyLen(buf, lim)
	if wn < 0 || wn > len(buf) || (wn > 0 && werr != nil) {
		t.Fatalf("ReplyLen = %d, %d, %v of %d bytes", wn, wneed, werr, len(buf))
	}
	type result struct {
		n, need int
		err     bool
	}
	var fresh []result // of each prefix, up to the first complete or failing one
	s := NewReplyScanner(lim)
	for k := 0; k <= len(buf); k++ {
		n, need, err := ReplyLen(buf[:k], lim)
		fresh = append(fresh, result{n, need, err != nil})
		rn, rneed, rerr := s.Scan(buf[:k])
		if n != rn || need != rneed || (err == nil) != (rerr == nil) {
			t.Fatalf("prefix %d: fresh %d,%d,%v resumed %d,%d,%v", k, n, need, err, rn, rneed, rerr)
		}
		if err != nil {
			if werr == nil {
				t.Fatalf("prefix %d fails (%v), whole gives %d", k, err, wn)
			}
			break
		}
		if n > 0 {
			if n != wn {
				t.Fatalf("prefix %d: %d, whole %d", k, n, wn)
			}
			break
		}
		if need > 0 && (need <= k || wn > 0 && need > wn) {
			t.Fatalf("prefix %d: need %d, whole %d", k, need, wn)
		}
	}
	// Reads of other sizes: the input's bytes pick the split points. A
	// prefix longer than the first complete or failing one gives the same.
	s2 := NewReplyScanner(lim)
	for k := 0; ; {
		if k < len(buf) {
			k = min(len(buf), k+1+int(buf[k]%13))
		}
		n, need, err := s2.Scan(buf[:k])
		if got, want := (result{n, need, err != nil}), fresh[min(k, len(fresh)-1)]; got != want {
			t.Fatalf("split at %d: resumed %d,%d,%v, fresh %+v", k, n, need, err, want)
		}
		if err != nil || n > 0 || k == len(buf) {
			break
		}
	}
	typ := ReplyType(buf)
	_, _ = IsPush(buf), IsErrorReply(buf)
	_ = ArrayElems(buf, func([]byte) bool { return true })
	if wn > 0 {
		reply := buf[:wn]
		rt := ReplyType(reply)
		if rt == 0 || rt == TypeAttribute || (buf[0] != TypeAttribute && rt != buf[0]) || rt != typ {
			t.Fatalf("ReplyType(%q) = %q (of the whole input %q)", reply, rt, typ)
		}
		switch rt {
		case TypeArray, TypeSet, TypePush, TypeMap:
			var as ReplyScanner
			total, err := as.skipAttributes(reply)
			if err != nil {
				t.Fatalf("skipAttributes(%q): %v", reply, err)
			}
			total += bytes.IndexByte(reply[total:], '\n') + 1
			if err := ArrayElems(reply, func(e []byte) bool { total += len(e); return true }); err != nil {
				t.Fatalf("ArrayElems: %v", err)
			}
			if total != wn {
				t.Fatalf("elements cover %d of %d bytes", total, wn)
			}
		default:
			if ArrayElems(reply, func([]byte) bool { return true }) == nil {
				t.Fatalf("ArrayElems accepted %q of type %q", reply, rt)
			}
		}
	}
	if v, ok := ParseInt(buf); ok && wn != len(buf) {
		t.Fatalf("ParseInt accepted %q (%d) that does not frame whole", buf, v)
	}
}
