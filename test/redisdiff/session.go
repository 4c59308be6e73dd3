package redisdiff

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// countElems keeps only an array reply's element count (COMMAND's
// subcommand lists have no stable order).
func countElems(t *testing.T, reply []byte) []byte {
	return resp.AppendArrayHeader(nil, len(SplitElems(t, reply)))
}

// SortElems sorts the elements of an array reply.
func SortElems(t *testing.T, reply []byte) []byte {
	elems := SplitElems(t, reply)
	slices.SortFunc(elems, bytes.Compare)
	out := joinArray(len(elems), elems)
	out[0] = reply[0] // a RESP3 set stays a set
	return out
}

// sortScan sorts the element array of a *SCAN reply.
func sortScan(t *testing.T, reply []byte) []byte {
	parts := SplitElems(t, reply)
	if len(parts) != 2 {
		return reply
	}
	return joinArray(2, [][]byte{parts[0], SortElems(t, parts[1])})
}

func SplitElems(t *testing.T, reply []byte) [][]byte {
	var elems [][]byte
	if err := resp.ArrayElems(reply, func(e []byte) bool { elems = append(elems, e); return true }); err != nil {
		return [][]byte{reply}
	}
	return elems
}

func joinArray(n int, elems [][]byte) []byte {
	out := resp.AppendArrayHeader(nil, n)
	for _, e := range elems {
		out = append(out, e...)
	}
	return out
}

// Session sends requests on one connection and frames the replies,
// reconnecting after the peer closed.
type Session struct {
	t    *testing.T
	addr string
	conn net.Conn
	r    *bufio.Reader
	buf  []byte
	// hello, when set, is sent on every new connection and its reply
	// dropped (HELLO 3 for a RESP3 session).
	Hello []byte
	// split, when set, cuts each request into the writes it returns.
	Split func([]byte) [][]byte
}

func NewSession(t *testing.T, addr string) *Session {
	s := &Session{t: t, addr: addr}
	t.Cleanup(func() {
		if s.conn != nil {
			s.conn.Close()
		}
	})
	return s
}

const closedMark = "<closed>"

var errNoReply = errors.New("no reply")

// readReply reads one complete reply.
func (s *Session) readReply(timeout time.Duration) ([]byte, error) {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	chunk := make([]byte, 64<<10)
	for {
		if len(s.buf) > 0 {
			n, _, err := resp.ReplyLen(s.buf, resp.Limits{})
			if err != nil {
				return nil, fmt.Errorf("bad reply %q: %w", s.buf, err)
			}
			if n > 0 {
				out := slices.Clone(s.buf[:n])
				s.buf = s.buf[n:]
				return out, nil
			}
		}
		n, err := s.r.Read(chunk)
		s.buf = append(s.buf, chunk[:n]...)
		if err != nil {
			if len(s.buf) == 0 && !isTimeoutErr(err) {
				return nil, io.EOF
			}
			if isTimeoutErr(err) {
				return nil, errNoReply
			}
			return nil, fmt.Errorf("partial reply %q: %w", s.buf, err)
		}
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Do sends req followed by a PING and returns the reply to req, with
// closedMark appended when the peer closed instead of answering the PING.
// The PING tells a missing reply from a slow one without waiting.
func (s *Session) Do(req []byte) string {
	s.t.Helper()
	if s.conn == nil {
		c, err := net.DialTimeout("tcp", s.addr, 2*time.Second)
		if err != nil {
			s.t.Fatalf("dial %s: %v", s.addr, err)
		}
		s.conn, s.r, s.buf = c, bufio.NewReaderSize(c, 64<<10), nil
		if s.Hello != nil {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(s.Hello); err != nil {
				s.t.Fatalf("%s: hello: %v", s.addr, err)
			}
			if r, err := s.readReply(5 * time.Second); err != nil || r[0] == '-' {
				s.t.Fatalf("%s: hello: %q %v", s.addr, r, err)
			}
		}
	}
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	msg := append(slices.Clone(req), "*1\r\n$4\r\nPING\r\n"...)
	var werr error
	if s.Split == nil {
		_, werr = s.conn.Write(msg)
	} else {
		for _, part := range s.Split(msg) {
			if _, werr = s.conn.Write(part); werr != nil {
				break
			}
		}
	}
	var out []byte
	closed := false
	for i := 0; i < 2; i++ {
		timeout := 5 * time.Second
		if i == 1 && isSentinelReply(out) {
			// The request may have had no reply (an empty line, "*0"):
			// then this PONG was the sentinel's.
			timeout = 300 * time.Millisecond
		}
		r, err := s.readReply(timeout)
		if err == io.EOF || err != nil && werr != nil {
			closed = true
			break
		}
		if err == errNoReply && i == 1 && isSentinelReply(out) {
			out = nil
			break
		}
		if err != nil {
			s.t.Fatalf("%s: %v", s.addr, err)
		}
		if i == 1 {
			if !isSentinelReply(r) {
				s.t.Fatalf("%s: sentinel PING answered %q after %q", s.addr, r, out)
			}
			break
		}
		out = r
	}
	if closed {
		s.conn.Close()
		s.conn = nil
		return string(out) + closedMark
	}
	return string(out)
}

// isSentinelReply reports whether r answers the sentinel PING: PONG, or
// the refusal of an unauthenticated connection.
func isSentinelReply(r []byte) bool {
	switch string(r) {
	case "+PONG\r\n", "-NOAUTH Authentication required.\r\n", "-NOAUTH Authentication required\r\n":
		return true
	}
	return false
}

// Close closes the connection now.
func (s *Session) Close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// Normalize applies a step's normalizer to an array reply.
func Normalize(t *testing.T, f func(*testing.T, []byte) []byte, s string) string {
	if strings.HasSuffix(s, closedMark) || len(s) == 0 || (s[0] != '*' && s[0] != '~') {
		return s
	}
	return string(f(t, []byte(s)))
}

// anyKey keeps of a bulk reply that it is one (RANDOMKEY's key is
// picked at random on either side).
func anyKey(s string) string {
	if strings.HasPrefix(s, "$") && !strings.HasPrefix(s, "$-1") && !strings.HasSuffix(s, closedMark) {
		return "$<a key>"
	}
	return s
}

// Short cuts a reply for a message.
func Short(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s...(%d bytes)", s[:200], len(s))
	}
	return s
}

// Compare sends each step of script to ref and to got and compares the
// replies: identical, or different with the tag tag(step) names. A
// difference without a tag fails t, and so does a tagged step whose
// replies are identical (drop the tag and its docs row). It returns the
// identical steps and the expected differences by tag.
func Compare(t *testing.T, script []Step, ref, got *Session, refName, gotName string, tag func(Step) string) (identical int, expected map[string]int) {
	t.Helper()
	expected = map[string]int{}
	w := max(len(refName), len(gotName)) + 1
	for i, st := range script {
		a, b := ref.Do(st.Req), got.Do(st.Req)
		if st.Norm != nil {
			a, b = Normalize(t, st.Norm, a), Normalize(t, st.Norm, b)
		}
		if st.randomKey {
			a, b = anyKey(a), anyKey(b)
		}
		id := tag(st)
		switch same := a == b; {
		case same && id == "":
			identical++
		case same:
			t.Errorf("step %d %s: tagged %q but identical now: %q; drop the tag and the docs row", i, Short(st.What), id, Short(a))
		case id == "":
			t.Errorf("step %d %s: unexpected difference\n %-*s %q\n %-*s %q", i, Short(st.What), w, refName+":", Short(a), w, gotName+":", Short(b))
		default:
			expected[id]++
			if testing.Verbose() {
				t.Logf("step %d %s [%s]\n %-*s %q\n %-*s %q", i, Short(st.What), id, w, refName+":", Short(a), w, gotName+":", Short(b))
			}
		}
	}
	return identical, expected
}

// Keys lists a redis-server's keys, sorted, leaving out those in skip.
func Keys(t *testing.T, addr string, skip map[string]bool) []string {
	t.Helper()
	s := NewSession(t, addr)
	defer s.Close()
	r := s.Do(resp.AppendCommand(nil, [][]byte{[]byte("KEYS"), []byte("*")}))
	var keys []string
	for _, e := range SplitElems(t, []byte(r)) {
		if len(e) == 0 || e[0] != '$' {
			t.Fatalf("KEYS element %q", e)
		}
		k := string(e[bytes.IndexByte(e, '\n')+1 : len(e)-2])
		if !skip[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
