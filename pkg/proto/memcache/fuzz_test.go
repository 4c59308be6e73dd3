package memcache

import (
	"bytes"
	"errors"
	"testing"
)

// Seed inputs live in testdata/fuzz/FuzzRequestParser and
// testdata/fuzz/FuzzReplyLen (twemproxy's tables, every command and flag,
// and the regression cases of the table tests).

func FuzzRequestParser(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p := NewRequestParser(Limits{})
		n, req, need, err := p.Parse(data)
		switch {
		case err != nil:
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if n != 0 || req != nil || e.Error() == "" {
				t.Fatalf("bad error result n=%d req=%v err=%v", n, req, e)
			}
			if !e.Close && e.Skip <= 0 {
				t.Fatalf("error without skip or close: %+v", e)
			}
		case n == 0:
			if req != nil || need <= len(data) {
				t.Fatalf("incomplete with need %d for %d bytes", need, len(data))
			}
		default:
			checkRequest(t, p, data[:n], req)
		}

		// Feeding the same bytes in pieces must give the same outcomes.
		if len(data) <= 4096 {
			whole := runStream(t, Limits{}, data, func(r int) int { return r })
			bytewise := runStream(t, Limits{}, data, func(int) int { return 1 })
			compareRuns(t, "byte-at-a-time", whole, bytewise)
		}
	})
}

func checkRequest(t *testing.T, p *RequestParser, raw []byte, req *Request) {
	t.Helper()
	if req.Cmd == CmdInvalid || len(req.Name) == 0 {
		t.Fatalf("complete request without a command: %+v", req)
	}
	for _, k := range req.Keys {
		if len(k) == 0 || len(k) > DefaultMaxKeyLen || !bytes.Contains(raw, k) {
			t.Fatalf("bad key %q", k)
		}
	}
	switch {
	case req.Cmd.IsRetrieval():
		if len(req.Keys) == 0 {
			t.Fatal("retrieval without keys")
		}
	case req.Cmd.IsStorage():
		if len(req.Keys) != 1 || len(req.Data) != req.ValueLen+2 || !bytes.HasSuffix(req.Data, []byte("\r\n")) {
			t.Fatalf("bad storage request keys=%q data=%q vlen=%d", req.Keys, req.Data, req.ValueLen)
		}
	}
	if req.Base64Key && len(req.RoutingKey(0)) == 0 {
		t.Fatal("empty decoded key")
	}
	if len(req.Line) >= DefaultMaxLineLen-1 {
		return
	}
	cmd, keys, data := req.Cmd, copyKeys(req.Keys), append([]byte(nil), req.Data...)
	fwd := AppendWithoutNoreply(nil, req)
	n, req2, _, err := p.Parse(fwd)
	if err != nil || n != len(fwd) {
		t.Fatalf("forwarded form %q does not parse: n=%d err=%v", fwd, n, err)
	}
	if req2.Cmd != cmd || !equalKeys(req2.Keys, keys) || !bytes.Equal(req2.Data, data) {
		t.Fatalf("forwarded form %q changed the request", fwd)
	}
	if req2.Noreply && cmd != CmdMetaDebug {
		t.Fatalf("forwarded form %q still has noreply", fwd)
	}
}

func copyKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = append([]byte(nil), k...)
	}
	return out
}

func equalKeys(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func FuzzReplyLen(f *testing.F) {
	f.Fuzz(func(t *testing.T, cmd byte, data []byte) {
		c := Command(cmd % byte(CmdUnsupported+1))
		n, need, isErr, err := ReplyLen(c, data)
		switch {
		case err != nil:
			if n != 0 || !(errors.Is(err, ErrBadReply) || errors.Is(err, ErrReplyTooLarge) || errors.Is(err, ErrNoReply)) {
				t.Fatalf("n=%d err=%v", n, err)
			}
			return
		case n == 0:
			if need <= len(data) {
				t.Fatalf("incomplete with need %d for %d bytes", need, len(data))
			}
			return
		}
		if n > len(data) || need != 0 {
			t.Fatalf("n=%d need=%d for %d bytes", n, need, len(data))
		}
		// The reply alone frames the same way, and every prefix of it is
		// incomplete with a need that does not overshoot.
		if n2, _, isErr2, err := ReplyLen(c, data[:n]); n2 != n || isErr2 != isErr || err != nil {
			t.Fatalf("reply alone: n=%d err=%v, want %d", n2, err, n)
		}
		step := max(1, n/64)
		for i := 0; i < n; i += step {
			pn, pneed, _, err := ReplyLen(c, data[:i])
			if pn != 0 || err != nil || pneed <= i || pneed > n {
				t.Fatalf("prefix %d of %d: n=%d need=%d err=%v", i, n, pn, pneed, err)
			}
		}
		if c.IsRetrieval() && !isErr {
			// StripEnd removes exactly the final END line, whatever its
			// spacing or line ending.
			stripped := StripEnd(data[:n])
			end := data[len(stripped):n]
			if !bytes.HasPrefix(end, []byte("END")) || bytes.IndexByte(end, '\n') != len(end)-1 {
				t.Fatalf("StripEnd kept %d of %d bytes, leaving %q", len(stripped), n, end)
			}
		}
	})
}

// FuzzReplyScanner feeds a reply to one ReplyScanner as it would arrive, in
// growing prefixes, and checks every answer against ReplyLen's on the same
// bytes: resuming must never change a verdict.
func FuzzReplyScanner(f *testing.F) {
	f.Fuzz(func(t *testing.T, cmd byte, data []byte) {
		if len(data) > 2048 {
			return
		}
		c := Command(cmd % byte(CmdUnsupported+1))
		for _, chunk := range []int{1 + int(cmd>>5), 61} {
			var s ReplyScanner
			for i := 0; ; i = min(i+chunk, len(data)) {
				n, need, isErr, err := s.Scan(c, data[:i])
				wn, wneed, wisErr, werr := ReplyLen(c, data[:i])
				if n != wn || need != wneed || isErr != wisErr || (err == nil) != (werr == nil) {
					t.Fatalf("chunk %d, prefix %d: scanner %d %d %v %v, ReplyLen %d %d %v %v", chunk, i, n, need, isErr, err, wn, wneed, wisErr, werr)
				}
				if n == 0 && err == nil && c.IsRetrieval() {
					// What a streaming proxy relies on: whole blocks before
					// Pending, and a VALUE line there heads an incomplete block.
					p := s.Pending()
					if p > i {
						t.Fatalf("prefix %d: pending %d", i, p)
					}
					if key, ll, size, ok := ValueHead(c, data[p:i]); ok && (len(key) == 0 || p+ll+size+2 <= i) {
						t.Fatalf("prefix %d: pending %d heads a whole block (%d+%d bytes)", i, p, ll, size)
					}
				}
				if n > 0 || err != nil || i == len(data) {
					break
				}
			}
		}
	})
}
