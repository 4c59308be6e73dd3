package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
)

func sampleSession() *redisSession {
	return &redisSession{proto: 3, authed: true, name: []byte("worker-7"),
		lib: [2][]byte{[]byte("go-redis"), []byte("9.7.0")}, skipNext: true, noTouch: true, lastCmd: "client|setname"}
}

func TestRedisSessionStateRoundTrip(t *testing.T) {
	for _, s := range []*redisSession{newRedisSession(), sampleSession(), {proto: 2, replyOff: true, noEvict: true, replyOn: true}} {
		b, ok := s.appendState([]byte("prefix"))
		if !ok || !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("appendState: ok %v, %q", ok, b)
		}
		var got redisSession
		if err := got.decodeState(b[len("prefix"):]); err != nil {
			t.Fatal(err)
		}
		if got.proto != s.proto || got.authed != s.authed || !bytes.Equal(got.name, s.name) ||
			!bytes.Equal(got.lib[0], s.lib[0]) || !bytes.Equal(got.lib[1], s.lib[1]) ||
			got.replyOff != s.replyOff || got.skipNext != s.skipNext || got.replyOn != s.replyOn ||
			got.noEvict != s.noEvict || got.noTouch != s.noTouch || got.lastCmd != s.lastCmd {
			t.Errorf("round trip: got %+v, want %+v", got, *s)
		}
	}
}

func TestRedisSessionStateRefusals(t *testing.T) {
	good, _ := sampleSession().appendState(nil)
	huge := &redisSession{proto: 2, name: bytes.Repeat([]byte("n"), maxSessionState)}
	if b, ok := huge.appendState([]byte("x")); ok || string(b) != "x" {
		t.Errorf("a session over the limit encoded (%d bytes)", len(b))
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"version":       append([]byte{9}, good[1:]...),
		"unknown field": append(append([]byte{}, good...), 99, 0),
		"twice":         append(append([]byte{}, good...), tagName, 1, 'x'),
		"length":        {redisSessionVersion, tagName, 200, 'x'},
		"varint":        {redisSessionVersion, tagName, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"resp version":  {redisSessionVersion, tagProto, 1, 4},
		"flags":         {redisSessionVersion, tagFlags, 1, 0x80},
		"too large":     make([]byte, maxSessionState+1),
	} {
		var s redisSession
		if err := s.decodeState(b); !errors.Is(err, errSessionState) {
			t.Errorf("%s: err %v, want errSessionState", name, err)
		}
	}
}

// FuzzRedisSessionState: the decoder never panics, and what it accepts
// encodes to something it decodes to the same session.
func FuzzRedisSessionState(f *testing.F) {
	good, _ := sampleSession().appendState(nil)
	f.Add(good)
	def, _ := newRedisSession().appendState(nil)
	f.Add(def)
	f.Add([]byte{redisSessionVersion, tagName, 0x80, 0x80, 0x04})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s redisSession
		if s.decodeState(b) != nil {
			return
		}
		enc, ok := s.appendState(nil)
		if !ok {
			t.Fatalf("decoded session does not encode")
		}
		var s2 redisSession
		if err := s2.decodeState(enc); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		enc2, _ := s2.appendState(nil)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not stable: %x vs %x", enc, enc2)
		}
	})
}

// TestHandOverBetweenEngines: one engine drains with HandOver into
// another's Adopt; clients keep their socket and session, a client with a
// partial request is handed over only once it is answered, and a pool the
// adopting engine lacks closes its clients.
func TestHandOverBetweenEngines(t *testing.T) {
	be := fakeserver.New(t, fakeserver.Redis)
	hcl := fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n  server %q {}\n}\n", be.Addr())
	a, addr := serveHCL(t, hcl)
	b, _ := serveHCL(t, hcl)
	other, _ := serveHCL(t, strings.Replace(hcl, `listen = "127.0.0.1:1"`, `listen = "127.0.0.1:2"`, 1))

	do := func(c net.Conn, r *bufio.Reader, req string) string {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		if line[0] == '$' {
			rest, _ := r.ReadString('\n')
			line += rest
		}
		return line
	}
	type cl struct {
		c net.Conn
		r *bufio.Reader
	}
	var cs []cl
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		name := fmt.Sprintf("c%d", i)
		if got := do(c, r, "CLIENT SETNAME "+name+"\r\n"); got != "+OK\r\n" {
			t.Fatalf("SETNAME: %q", got)
		}
		cs = append(cs, cl{c, r})
	}
	// The last client has half a request buffered when the hand-over starts.
	partial := cs[len(cs)-1]
	partial.c.Write([]byte("*2\r\n$6\r\nCLIENT\r\n$7\r\nGET"))
	time.Sleep(50 * time.Millisecond)

	toOther := make(chan Handoff, 64)
	done := make(chan HandoverReport)
	first := true // on the loop, as give is
	go func() {
		rep, err := a.HandOver(context.Background(), func(h Handoff) {
			if first {
				first = false
				// One goes to an engine whose pool listens elsewhere.
				toOther <- h
				return
			}
			go func() {
				if errs := b.Adopt([]Handoff{h}); errs[0] != nil {
					t.Errorf("adopt: %v", errs[0])
				}
			}()
		})
		if err != nil {
			t.Errorf("HandOver: %v", err)
		}
		done <- rep
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("the hand-over ended with a partial request buffered")
	default:
	}
	partial.c.Write([]byte("NAME\r\n"))
	if got, _ := partial.r.ReadString('\n'); got != "$3\r\n" {
		t.Fatalf("the partial request's reply: %q", got)
	}
	partial.r.ReadString('\n')
	rep := <-done
	if rep.HandedOver != 20 {
		t.Fatalf("handed over %d of 20 (closed %v)", rep.HandedOver, rep.Closed)
	}
	refused := 1
	if errs := other.Adopt([]Handoff{<-toOther}); !errors.Is(errs[0], ErrListenMoved) {
		t.Fatalf("adopting into a moved pool: %v", errs[0])
	}
	closed := 0
	for i, c := range cs {
		c.c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.c.Write([]byte("CLIENT GETNAME\r\n")); err != nil {
			t.Fatal(err)
		}
		line, err := c.r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			closed++
			continue
		}
		rest, _ := c.r.ReadString('\n')
		if want := fmt.Sprintf("c%d\r\n", i); err != nil || rest != want {
			t.Errorf("client %d after the hand-over: %q%q %v", i, line, rest, err)
		}
	}
	if closed != refused {
		t.Errorf("%d clients closed, %d refused", closed, refused)
	}
	if got := b.Snapshot().Pools[0].ClientAdopted; got != uint64(20-refused) {
		t.Errorf("adopted %d, want %d", got, 20-refused)
	}
}

// A TLS client that never pauses for tlsDrainIdle is closed at a boundary
// once the drain is that old, not at the end of the drain's timeout, and
// with a lingering close: it reads a clean end of the stream (close_notify,
// then EOF) with its next request not run, never a reset, and every reply
// before that is its own. (Before: closed as busy at the timeout.)
func TestHandOverEndsBusyTLSClientsCleanly(t *testing.T) {
	be := fakeserver.New(t, fakeserver.Redis)
	rig := newTLSRig(t)
	hcl := fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n%s  server %q {}\n}\n",
		rig.block("    listen = \"127.0.0.1:3\"\n"), be.Addr())
	a, _ := serveHCL(t, hcl)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ServeTLS("p", ln); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n, afterDrain int
		err           error
	}
	var draining atomic.Bool
	const clients = 4
	results := make(chan result, clients)
	for i := 0; i < clients; i++ {
		tc, err := tls.Dial("tcp", ln.Addr().String(), rig.clientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		go func(i int) {
			r := bufio.NewReader(tc)
			var res result
			for ; ; res.n++ {
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				v := fmt.Sprint(res.n)
				key := fmt.Sprintf("busy%d", i)
				req := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n",
					len(key), key, len(v), v, len(key), key)
				if _, err := io.WriteString(tc, req); err != nil {
					res.err = err
					break
				}
				if draining.Load() {
					// A reset that reached it meanwhile would be read
					// before the end of the stream.
					time.Sleep(5 * time.Millisecond)
				}
				want := fmt.Sprintf("+OK\r\n$%d\r\n%s\r\n", len(v), v)
				got := make([]byte, len(want))
				if _, err := io.ReadFull(r, got); err != nil {
					res.err = err
					break
				}
				if string(got) != want {
					res.err = fmt.Errorf("got %q, want %q", got, want)
					break
				}
				if draining.Load() {
					res.afterDrain++
				}
			}
			results <- res
		}(i)
	}
	time.Sleep(100 * time.Millisecond)
	draining.Store(true)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	rep, err := a.HandOver(ctx, func(h Handoff) { t.Errorf("a TLS client handed over") })
	if err != nil {
		t.Fatalf("the drain did not end before its timeout (%v): %v, closed %v", time.Since(start), err, rep.Closed)
	}
	if rep.Closed[leaveTLS] != clients || rep.Closed[leaveBusy] != 0 {
		t.Errorf("closed %v, want %d as %q", rep.Closed, clients, leaveTLS)
	}
	for i := 0; i < clients; i++ {
		res := <-results
		if !errors.Is(res.err, io.EOF) {
			t.Errorf("a busy TLS client ended with %v after %d round trips, want a clean EOF", res.err, res.n)
		}
		if res.afterDrain == 0 {
			t.Errorf("a busy TLS client was not served during the drain")
		}
	}
	t.Logf("drained in %v", time.Since(start).Round(time.Millisecond))
}

// A TLS client is never handed over (crypto/tls cannot export its
// session): it is closed at its boundary, counted as "tls", while a
// plaintext client of the same pool moves.
func TestHandOverLeavesTLSClients(t *testing.T) {
	be := fakeserver.New(t, fakeserver.Redis)
	rig := newTLSRig(t)
	hcl := fmt.Sprintf("pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = \"redis\"\n%s  server %q {}\n}\n",
		rig.block("    listen = \"127.0.0.1:3\"\n"), be.Addr())
	a, plainAddr := serveHCL(t, hcl)
	b, _ := serveHCL(t, hcl)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ServeTLS("p", ln); err != nil {
		t.Fatal(err)
	}
	tlsAddr := ln.Addr().String()
	tc, err := tls.Dial("tcp", tlsAddr, rig.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	pc, err := net.Dial("tcp", plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, c := range []net.Conn{tc, pc} {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "PING\r\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("PING: %q %v", line, err)
		}
	}
	lastTLS := time.Now()
	rep, err := a.HandOver(context.Background(), func(h Handoff) {
		go func() {
			if errs := b.Adopt([]Handoff{h}); errs[0] != nil {
				t.Errorf("adopt: %v", errs[0])
			}
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.HandedOver != 1 || rep.Closed[leaveTLS] != 1 {
		t.Fatalf("handed over %d, closed %v; want the plaintext client handed over and the TLS one closed as %q", rep.HandedOver, rep.Closed, leaveTLS)
	}
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the TLS client: %v, want a clean EOF", err)
	}
	if d := time.Since(lastTLS); d < tlsDrainIdle {
		t.Errorf("the TLS client was closed %v after its last request, before it idled %v", d, tlsDrainIdle)
	}
	pc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(pc, "PING\r\n")
	if line, err := bufio.NewReader(pc).ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Errorf("the plaintext client after the hand-over: %q %v", line, err)
	}
}
