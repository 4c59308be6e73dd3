package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func respCmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

func randValue(seed int64, n int) string {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return string(b)
}

// readReply reads one RESP2 reply of the kinds these tests see.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if line[0] != '$' {
		return line, nil
	}
	n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
	if n < 0 {
		return line, nil
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return line + string(b), nil
}

func dialProxy(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func mustSet(t testing.TB, addr, key, value string) {
	t.Helper()
	c, r := dialProxy(t, addr)
	defer c.Close()
	io.WriteString(c, respCmd("SET", key, value))
	if rep, err := readReply(r); err != nil || rep != "+OK\r\n" {
		t.Fatalf("SET %s: %q %v", key, rep, err)
	}
}

// loopState reads the loop's streaming state on the loop.
func (tp *testProxy) loopState() (held, streaming, paused int) {
	tp.px.lp.do(func() {
		held = tp.px.lp.held
		for _, p := range tp.px.order {
			for _, s := range p.servers {
				s.eachConn(func(sc *serverConn) {
					if l := sc.current(); l != nil && l.stream != nil {
						streaming++
						if l.paused {
							paused++
						}
					}
				})
			}
		}
	})
	return
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A large reply streams in its client's reply order: interleaved with
// small replies and another large one, a client that reads slowly gets
// every reply whole and in order, while the proxy holds at most a window
// per streaming reply.
func TestStreamOrder(t *testing.T) {
	tp := startTestProxy(t, "redis", 2, "")
	big1, big2 := randValue(1, 4<<20), randValue(2, 3<<20+17)
	mustSet(t, tp.addr, "big1", big1)
	mustSet(t, tp.addr, "big2", big2)
	mustSet(t, tp.addr, "small", "s")
	reqs := []string{respCmd("GET", "small"), respCmd("GET", "big1"), respCmd("GET", "small"), respCmd("GET", "big2"),
		respCmd("GET", "big1"), respCmd("PING"), respCmd("GET", "small")}
	want := []string{"$1\r\ns\r\n", fmt.Sprintf("$%d\r\n%s\r\n", len(big1), big1), "$1\r\ns\r\n",
		fmt.Sprintf("$%d\r\n%s\r\n", len(big2), big2), fmt.Sprintf("$%d\r\n%s\r\n", len(big1), big1), "+PONG\r\n", "$1\r\ns\r\n"}
	c, r := dialProxy(t, tp.addr)
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	io.WriteString(c, strings.Join(reqs, ""))
	// Not reading: the first large reply pauses its link with a window
	// buffered; big2, behind it, is buffered whole if on the other server
	// (it cannot pause its link: see stream.go).
	waitFor(t, "a paused stream", func() bool { _, _, p := tp.loopState(); return p > 0 })
	time.Sleep(50 * time.Millisecond)
	if held, _, _ := tp.loopState(); held > 2*streamWindow+len(big2) {
		t.Errorf("the proxy holds %d bytes for a client that does not read", held)
	}
	// Read slowly, in small pieces.
	var got bytes.Buffer
	total := 0
	for _, w := range want {
		total += len(w)
	}
	buf := make([]byte, 256<<10)
	for got.Len() < total {
		n, err := r.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got.Len(), total, err)
		}
		got.Write(buf[:n])
		if got.Len() < 2<<20 {
			time.Sleep(time.Millisecond)
		}
	}
	if got.String() != strings.Join(want, "") {
		for i, off := 0, 0; i < len(want); i++ {
			if off+len(want[i]) > got.Len() || got.String()[off:off+len(want[i])] != want[i] {
				t.Fatalf("reply %d differs", i)
			}
			off += len(want[i])
		}
	}
	waitFor(t, "the streams to end", func() bool { h, s, _ := tp.loopState(); return s == 0 && h == 0 })
}

// While a link is paused by a client that does not read, other clients'
// new requests for that server are answered at once, on another link.
func TestStreamPausedLinkDoesNotStallOthers(t *testing.T) {
	tp := startTestProxy(t, "redis", 1, "")
	mustSet(t, tp.addr, "big", randValue(3, 8<<20))
	slow, _ := dialProxy(t, tp.addr)
	io.WriteString(slow, respCmd("GET", "big"))
	waitFor(t, "a paused stream", func() bool { _, _, p := tp.loopState(); return p > 0 })
	c, r := dialProxy(t, tp.addr)
	for i := 0; i < 100; i++ {
		t0 := time.Now()
		io.WriteString(c, respCmd("GET", "echo:x"))
		if rep, err := readReply(r); err != nil || rep != "$6\r\necho:x\r\n" {
			t.Fatalf("%q %v", rep, err)
		}
		if d := time.Since(t0); d > 500*time.Millisecond {
			t.Fatalf("a GET took %v behind a paused link", d)
		}
	}
	// The slow client goes away: the rest of its reply is read and
	// dropped, and the link is free again.
	slow.Close()
	waitFor(t, "the stream to be discarded", func() bool { h, s, _ := tp.loopState(); return s == 0 && h == 0 })
	tp.checkServes(t, "redis")
}

// A server that dies in the middle of a large reply: the client, which
// has part of the value, is closed rather than given a cut reply as if
// whole; a client that had none of it gets the error.
func TestStreamServerFailsMidReply(t *testing.T) {
	tp := startTestProxy(t, "redis", 1, "")
	mustSet(t, tp.addr, "big", randValue(4, 8<<20))
	c, r := dialProxy(t, tp.addr)
	io.WriteString(c, respCmd("GET", "big")+respCmd("PING"))
	waitFor(t, "a paused stream", func() bool { _, _, p := tp.loopState(); return p > 0 })
	tp.backends[0].Stop()
	// Resume: the link reads on and finds the server gone. If the server
	// had handed the whole value to the kernel before it stopped, the
	// value arrives whole, then the PING's reply (the proxy's own);
	// otherwise the client is closed after a part.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	head := "$8388608\r\n"
	var got []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		whole := len(got) >= len(head)+8<<20+2
		if whole && string(got[len(head)+8<<20+2:]) == "+PONG\r\n" {
			break // the value, then the PING's reply
		}
		if err != nil {
			if whole || !errors.Is(err, io.EOF) {
				t.Fatalf("%d bytes (ending %q), then %v", len(got), got[max(0, len(got)-40):], err)
			}
			break // closed after part of the value
		}
	}
	if !strings.HasPrefix(string(got), head) {
		t.Fatalf("reply starts %q", got[:min(len(got), 20)])
	}
	waitFor(t, "the stream to end", func() bool { h, s, _ := tp.loopState(); return s == 0 && h == 0 })
}

// client_output_hard_limit closes a client the proxy holds too much for;
// the soft limit one that stays over it for its duration; a client that
// reads at a normal pace is never closed, however large its value.
func TestClientOutputLimits(t *testing.T) {
	t.Run("hard", func(t *testing.T) {
		tp := startTestProxy(t, "redis", 1, "client_output_hard_limit = \"1mb\"")
		mustSet(t, tp.addr, "v", randValue(5, 300<<10))
		c, _ := dialProxy(t, tp.addr)
		c.(*net.TCPConn).SetReadBuffer(16 << 10)
		io.WriteString(c, strings.Repeat(respCmd("GET", "v"), 64))
		waitFor(t, "the client to be closed", func() bool { return tp.px.Snapshot().Pools[0].ClientOutputClosed == 1 })
		tp.waitClients(t)
	})
	t.Run("soft", func(t *testing.T) {
		tp := startTestProxy(t, "redis", 1, "client_output_soft_limit = \"2mb\"\nclient_output_soft_duration = \"300ms\"")
		mustSet(t, tp.addr, "big", randValue(6, 8<<20))
		c, _ := dialProxy(t, tp.addr)
		t0 := time.Now()
		io.WriteString(c, respCmd("GET", "big"))
		waitFor(t, "the client to be closed", func() bool { return tp.px.Snapshot().Pools[0].ClientOutputClosed == 1 })
		if d := time.Since(t0); d < 300*time.Millisecond {
			t.Errorf("closed after %v", d)
		}
		waitFor(t, "the stream to be discarded", func() bool { h, s, _ := tp.loopState(); return s == 0 && h == 0 })
		// A reader at a normal pace gets the same value whole.
		r, rr := dialProxy(t, tp.addr)
		io.WriteString(r, respCmd("GET", "big"))
		if rep, err := readReply(rr); err != nil || len(rep) != 8<<20+len("$8388608\r\n")+2 {
			t.Fatalf("%d bytes, %v", len(rep), err)
		}
		if n := tp.px.Snapshot().Pools[0].ClientOutputClosed; n != 1 {
			t.Errorf("%d clients closed", n)
		}
	})
}

// worker_output_budget: clients pipelining GETs of values under the
// streaming threshold and reading nothing take the worker over its budget;
// then no client's new request is read (none is forwarded) until they
// read, and every request is answered whole.
func TestWorkerOutputBudget(t *testing.T) {
	tp := startTestProxy(t, "redis", 2, "")
	const budget = 4 << 20
	tp.px.lp.do(func() { tp.px.lp.budget = budget })
	val := randValue(7, 200<<10)
	mustSet(t, tp.addr, "v", val)
	want := fmt.Sprintf("$%d\r\n%s\r\n", len(val), val)
	const hogs, depth = 10, 40
	conns := make([]net.Conn, hogs)
	for i := range conns {
		conns[i], _ = dialProxy(t, tp.addr)
		conns[i].(*net.TCPConn).SetReadBuffer(16 << 10)
		io.WriteString(conns[i], strings.Repeat(respCmd("GET", "v"), depth))
	}
	waitFor(t, "the budget to be exceeded", func() bool {
		var held int
		tp.px.lp.do(func() { held = tp.px.lp.held })
		return held > budget
	})
	late, lr := dialProxy(t, tp.addr)
	io.WriteString(late, respCmd("GET", "v"))
	// The late client's request is not read while the hogs hold the
	// budget (they may dip under three quarters of it as the kernel takes
	// their replies, and be read on: the hogs are parked too).
	maxParked, maxHeld := 0, 0
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		tp.px.lp.do(func() {
			maxParked = max(maxParked, len(tp.px.lp.parked))
			maxHeld = max(maxHeld, tp.px.lp.held)
		})
	}
	// Held bytes dip as the kernel takes replies; the late client must be
	// parked only if the worker was still over its budget when it came.
	// The server links stop reading over the budget, so the held bytes
	// hover about it (by a reply at most, stream.go link.overBudget).
	if maxParked == 0 && maxHeld > budget+len(want) {
		t.Errorf("over budget (%d KiB held at most), no client was parked", maxHeld>>10)
	}
	t.Logf("%d KiB held at most, budget %d KiB; up to %d clients parked", maxHeld>>10, budget>>10, maxParked)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			r := bufio.NewReader(c)
			for j := 0; j < depth; j++ {
				if rep, err := readReply(r); err != nil || rep != want {
					t.Errorf("client %d reply %d: %d bytes, %v", i, j, len(rep), err)
					return
				}
			}
		}(i, c)
	}
	wg.Wait()
	if rep, err := readReply(lr); err != nil || rep != want {
		t.Errorf("the parked client's reply: %d bytes, %v", len(rep), err)
	}
}

// worker_output_budget against a herd: clients that all send their
// pipelines at once, before any reply came back, have every request read
// under the budget; the server links then stop reading replies over it
// (except a reply its client waits for with nothing else to write), so
// the worker holds about the budget plus one reply per client, not every
// reply. Every reply is then delivered whole.
func TestWorkerOutputBudgetHerd(t *testing.T) {
	tp := startTestProxy(t, "redis", 2, "")
	const budget, hogs, depth = 2 << 20, 20, 8
	tp.px.lp.do(func() { tp.px.lp.budget = budget })
	val := randValue(8, 200<<10)
	mustSet(t, tp.addr, "v", val)
	want := fmt.Sprintf("$%d\r\n%s\r\n", len(val), val)
	conns := make([]net.Conn, hogs)
	for i := range conns {
		conns[i], _ = dialProxy(t, tp.addr)
		conns[i].(*net.TCPConn).SetReadBuffer(16 << 10)
	}
	for _, c := range conns {
		go io.WriteString(c, strings.Repeat(respCmd("GET", "v"), depth))
	}
	maxHeld := 0
	waitFor(t, "the replies to come", func() bool {
		tp.px.lp.do(func() { maxHeld = tp.px.lp.held })
		return maxHeld > budget/2
	})
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		tp.px.lp.do(func() { maxHeld = max(maxHeld, tp.px.lp.held) })
	}
	bound := budget + hogs*len(want) + 1<<20
	t.Logf("%d clients x %d GETs of 200 KiB (%d KiB owed): %d KiB held at most, budget %d KiB, bound %d KiB",
		hogs, depth, hogs*depth*len(want)>>10, maxHeld>>10, budget>>10, bound>>10)
	if maxHeld > bound {
		t.Errorf("%d KiB held, over %d KiB", maxHeld>>10, bound>>10)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			r := bufio.NewReader(c)
			for j := 0; j < depth; j++ {
				if rep, err := readReply(r); err != nil || rep != want {
					t.Errorf("client %d reply %d: %d bytes, %v", i, j, len(rep), err)
					return
				}
			}
		}(i, c)
	}
	wg.Wait()
	waitFor(t, "nothing held", func() bool { h, _, _ := tp.loopState(); return h == 0 })
}
