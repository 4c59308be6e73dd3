package memcache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startMemcached starts a memcached on a free local port and returns its
// address; the process is killed when the test ends.
func startMemcached(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		t.Skip("memcached binary not found in PATH; skipping comparison with a real server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := []string{"-p", strconv.Itoa(port), "-U", "0", "-l", "127.0.0.1", "-m", "64"}
	if os.Geteuid() == 0 {
		// memcached refuses to run as root without -u.
		args = append(args, "-u", "root")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("memcached did not start on %s: %v (stderr: %s)", addr, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type mcConn struct {
	t *testing.T
	c net.Conn
}

func dialMC(t *testing.T, addr string) *mcConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &mcConn{t: t, c: c}
}

// roundTrip sends in followed by "mn\r\n" and returns everything memcached
// answered before the final "MN\r\n".
func (m *mcConn) roundTrip(in []byte) []byte {
	m.t.Helper()
	_ = m.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := m.c.Write(append(append([]byte(nil), in...), "mn\r\n"...)); err != nil {
		m.t.Fatal(err)
	}
	var acc []byte
	buf := make([]byte, 64<<10)
	for !bytes.HasSuffix(acc, []byte("MN\r\n")) {
		n, err := m.c.Read(buf)
		acc = append(acc, buf[:n]...)
		if err != nil {
			m.t.Fatalf("reading reply to %.60q: %v (got %q)", in, err, acc)
		}
	}
	return acc[:len(acc)-4]
}

// simulate runs the parser over in like the engine would for a stream made
// only of refused requests and returns the bytes memcached would send.
func simulate(t *testing.T, in []byte) []byte {
	t.Helper()
	p := NewRequestParser(Limits{})
	var out []byte
	for len(in) > 0 {
		n, req, _, err := p.Parse(in)
		var e *Error
		switch {
		case errors.As(err, &e):
			if e.Close {
				t.Fatalf("%.60q: unexpected close: %v", in, e)
			}
			out = e.AppendReply(out)
			in = in[min(e.Skip, len(in)):]
		case err != nil:
			t.Fatal(err)
		case n == 0:
			t.Fatalf("incomplete: %.60q", in)
		default:
			t.Fatalf("%.60q parsed as %v; the comparison expects only refused requests", in, req.Cmd)
		}
	}
	return out
}

// Every refusal reply (and its resynchronisation) matches memcached 1.6.18.
func TestErrorTextsMatchMemcached(t *testing.T) {
	addr := startMemcached(t)
	mc := dialMC(t, addr)
	k251 := strings.Repeat("k", 251)
	o32 := "O" + strings.Repeat("o", 32)
	big := "2000000\r\n" + strings.Repeat("v", 2000000) + "\r\n"
	cases := []string{
		"\r\n",
		"\n",
		"x\r\n",
		"bogus\r\n",
		"DELETE k\r\n",
		"get\r\n",
		"get \r\n",
		"get " + k251 + "\r\n",
		"get a " + k251 + "\r\n",
		"gets\r\n",
		"gat\r\n",
		"gat abc k\r\n",
		"set k 0 0\r\n",
		"set k 0 0 1 noreply x\r\n",
		"set k x 0 1\r\nx\r\n",
		"set k 0 x 1\r\n",
		"set k 0 0 -1\r\n",
		"set k 0 0 x noreply\r\n",
		"set k 0 0 noreply\r\n",
		"set " + k251 + " 0 0 1\r\nx\r\n",
		"set " + k251 + " 0 0 1 noreply\r\n",
		"cas k 0 0 1\r\n",
		"cas k 0 0 1 x\r\n",
		"set k 0 0 1\r\nab\r\n",
		"set k 0 0 1 noreply\r\nab\r\n",
		"set k 0 0 " + big,
		"add k 0 0 " + big,
		"set k 0 0 2000000 noreply\r\n" + big[9:],
		"set k 0 0 2147483646\r\n",
		"incr k\r\n",
		"incr k x\r\n",
		"incr k -1\r\n",
		"incr k x noreply\r\n",
		"decr " + k251 + " 1\r\n",
		"touch k\r\n",
		"touch k x\r\n",
		"delete\r\n",
		"delete k 1\r\n",
		"delete k 1 noreply\r\n",
		"delete k 0 x\r\n",
		"delete k 0 noreply x\r\n",
		"delete " + k251 + "\r\n",
		"mx k\r\n",
		"mg\r\n",
		"mg " + k251 + " v\r\n",
		"mg k v v\r\n",
		"mg k \xff\r\n",
		"mg k !\r\n",
		"mg k Tx\r\n",
		"mg k T\r\n",
		"mg k Fx\r\n",
		"mg k Tx Jx\r\n",
		"mg k Dx\r\n",
		"mg k MEE\r\n",
		"mg k b\r\n",
		"mg k q Tx\r\n",
		"mg k " + o32 + "\r\n",
		"mg k" + strings.Repeat(" O", 18) + "\r\n",
		"md k" + strings.Repeat(" O", 18) + "\r\n",
		"md k !\r\n",
		"md k q q\r\n",
		"md k " + o32 + "\r\n",
		"ma k Dx\r\n",
		"ma k MX\r\n",
		"ma k MX " + o32 + "\r\n",
		"me\r\n",
		"me " + k251 + "\r\n",
		"me ! b\r\n",
		"ms\r\n",
		"ms k\r\n",
		"ms k x\r\n",
		"ms k -1\r\n",
		"ms " + k251 + " 1\r\n",
		"ms k 1" + strings.Repeat(" O", 17) + "\r\n",
		"ms k 1 !\r\nx\r\n",
		"ms k 1 q q\r\nx\r\n",
		"ms k 1 MX\r\nx\r\n",
		"ms k 1 MX " + o32 + "\r\nx\r\n",
		"ms k 1 " + o32 + "\r\nx\r\n",
		"ms k 1 q\r\nxy\r\n",
		"ms k " + big,
		"ms k 2000000 q\r\n" + big[9:],
	}
	for _, in := range cases {
		want := mc.roundTrip([]byte(in))
		got := simulate(t, []byte(in))
		if !bytes.Equal(got, want) {
			t.Errorf("%.70q:\n ours      %q\n memcached %q", in, got, want)
		}
	}
}

// memcached hangs up where the parser says Close without a reply.
func TestClosesMatchMemcached(t *testing.T) {
	addr := startMemcached(t)
	cases := []string{
		"GET / HTTP/1.0\r\n",
		"POST /x HTTP/1.1\r\n",
		strings.Repeat("x", 3000),
		"set " + strings.Repeat(" ", 3000),
		strings.Repeat(" ", 101) + "get " + strings.Repeat("k ", 1500),
	}
	for _, in := range cases {
		_, _, _, err := NewRequestParser(Limits{}).Parse([]byte(in))
		var e *Error
		if !errors.As(err, &e) || !e.Close || len(e.AppendReply(nil)) != 0 {
			t.Errorf("%.40q: parser gave %v, want a silent close", in, err)
			continue
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(got) != 0 {
			t.Errorf("%.40q: memcached sent %q, err %v; want silent close", in, got, err)
		}
	}
}

// Two memcached instances see the same request sequence: one exactly as the
// client sent it, one as the proxy forwards it (AppendWithoutNoreply). Every
// forwarded reply must be framed exactly by ReplyLen, and dropping the
// replies Suppressed selects must reproduce what the client gets directly.
func TestForwardingMatchesMemcached(t *testing.T) {
	direct := dialMC(t, startMemcached(t))
	proxied := dialMC(t, startMemcached(t))
	seq := []string{
		"set a 0 0 1 noreply\r\nx\r\n",
		"get a\r\n",
		"get a b zz\r\n",
		"gets a\r\n",
		"add a 0 0 1 noreply\r\ny\r\n",
		"add b 5 0 4\r\ny\r\ny\r\n",
		"replace c 0 0 1 noreply\r\ny\r\n",
		"append a 0 0 1\r\nz\r\n",
		"prepend a 0 0 1 noreply\r\nw\r\n",
		"cas a 0 0 1 999 noreply\r\nq\r\n",
		"gets a b\r\n",
		"gat 100 a b\r\n",
		"gats 100 a\r\n",
		"touch a 10 noreply\r\n",
		"touch zz 10\r\n",
		"incr n 1\r\n",
		"set n 0 0 1\r\n5\r\n",
		"incr n 10 noreply\r\n",
		"decr n 3\r\n",
		"incr a 1\r\n",
		"delete n noreply\r\n",
		"delete n 0\r\n",
		"delete n\r\n",
		"version\r\n",
		"get " + strings.Repeat("k", 250) + "\r\n",
		"set k 0 0 1048577\r\n" + strings.Repeat("v", 1048577) + "\r\n",
		"mg a v f q\r\n",
		"mg missing v q\r\n",
		"mg missing v k Oxy\r\n",
		"mg a q\r\n",
		"mg a s v c f k Oop\r\n",
		"ms m 2 q\r\nab\r\n",
		"ms m 2 q MA\r\ncd\r\n",
		"ms m 2 q ME\r\nef\r\n",
		"ms m 2 q C1\r\nef\r\n",
		"ms m 2 q MR F7 T0 k\r\n\r\n\r\n",
		"mg m v f\r\n",
		"md m q\r\n",
		"md m q\r\n",
		"md m k Oz\r\n",
		"ms Zm9v 3 b\r\nbar\r\n",
		"get foo\r\n",
		"mg Zm9v b v k\r\n",
		"me Zm9v b\r\n",
		"me nothere\r\n",
		"ma cnt q\r\n",
		"ma cnt N0 J10\r\n",
		"ma cnt q\r\n",
		"ma cnt q v MD D5\r\n",
		"ma cnt v\r\n",
		"ma cnt q C1\r\n",
		"mg cnt v\r\n",
	}
	p := NewRequestParser(Limits{MaxItemSize: 2 << 20})
	for _, in := range seq {
		n, req, _, err := p.Parse([]byte(in))
		if err != nil || n != len(in) {
			t.Fatalf("%.60q: n=%d err=%v", in, n, err)
		}
		fwd := AppendWithoutNoreply(nil, req)
		reply := proxied.roundTrip(fwd)
		rn, _, _, err := ReplyLen(req.Cmd, reply)
		if err != nil || rn != len(reply) {
			t.Errorf("%.60q: ReplyLen(%q) = %d, %v; want %d", in, reply, rn, err, len(reply))
			continue
		}
		want := direct.roundTrip([]byte(in))
		got := reply
		if Suppressed(req, reply) {
			got = nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%.60q: client would see %q via proxy, %q directly", in, got, want)
		}
	}
}

// Every multi-get fragment is rebuilt so memcached answers with the same
// VALUE blocks as for the original request.
func TestRetrievalFragmentsMatchMemcached(t *testing.T) {
	mc := dialMC(t, startMemcached(t))
	var setup bytes.Buffer
	for i := 0; i < 20; i += 2 {
		fmt.Fprintf(&setup, "set key%d %d 0 %d noreply\r\n%s\r\n", i, i, i, strings.Repeat("\r\n", i/2))
	}
	if got := mc.roundTrip(setup.Bytes()); len(got) != 0 {
		t.Fatalf("setup: %q", got)
	}
	var line strings.Builder
	line.WriteString("get")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&line, " key%d", i)
	}
	line.WriteString("\r\n")
	p := NewRequestParser(Limits{})
	_, req, _, err := p.Parse([]byte(line.String()))
	if err != nil {
		t.Fatal(err)
	}
	whole := mc.roundTrip([]byte(line.String()))
	// Split into three "servers" by key index and merge in key order, the
	// way the engine does.
	var merged []byte
	for i := 0; i < len(req.Keys); i += 7 {
		frag := AppendRetrieval(nil, req, req.Keys[i:min(i+7, len(req.Keys))])
		reply := mc.roundTrip(frag)
		n, _, isErr, err := ReplyLen(CmdGet, reply)
		if err != nil || isErr || n != len(reply) {
			t.Fatalf("fragment %q: n=%d isErr=%v err=%v", frag, n, isErr, err)
		}
		merged = append(merged, StripEnd(reply)...)
	}
	merged = append(merged, "END\r\n"...)
	if !bytes.Equal(merged, whole) {
		t.Errorf("merged %q\nwhole  %q", merged, whole)
	}
}
