package proxy

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// rig drives the whole routing path of one pool by hand, on socketpairs
// instead of TCP and without the loop's goroutine: a client request is
// read, parsed, routed and written to the servers; the servers' replies
// are read, framed, merged and written back to the client. Everything the
// loop does per request happens, minus epoll_wait.
type rig struct {
	tb     testing.TB
	px     *Proxy
	lp     *loop
	c      *clientConn
	cpeer  int   // the client's end
	speers []int // each server's end
	links  []*link
	buf    []byte
}

func newRig(tb testing.TB, proto string, servers int) *rig {
	tb.Helper()
	return newRigWith(tb, proto, servers, "")
}

// newRigWith is newRig with extra attributes in the pool block.
func newRigWith(tb testing.TB, proto string, servers int, extra string) *rig {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "pool \"p\" {\n  listen = \"127.0.0.1:1\"\n  protocol = %q\n  distribution = \"modula\"\n%s\n", proto, extra)
	for i := range servers {
		fmt.Fprintf(&b, "  server \"127.0.0.1:%d\" {}\n", 7000+i)
	}
	b.WriteString("}\n")
	return rigOf(tb, b.String(), nil)
}

// rigOf builds the rig of the first pool of hcl; setup, when set, runs
// on the pool before its servers are wired (a cluster pool's slot map
// makes them).
func rigOf(tb testing.TB, hcl string, setup func(p *pool)) *rig {
	tb.Helper()
	cfg, err := config.Parse([]byte(hcl), "rig.hcl")
	if err != nil {
		tb.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	px, err := New(cfg, logrus.NewEntry(log))
	if err != nil {
		tb.Fatal(err)
	}
	r := &rig{tb: tb, px: px, lp: px.lp, buf: make([]byte, 1<<16)}
	r.lp.now = time.Now().UnixNano()
	p := px.order[0]
	if setup != nil {
		setup(p)
	}
	pair := func() [2]int {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		return fds
	}
	cp := pair()
	r.c = newClientConn(p, cp[0], nil, false)
	if err := r.lp.register(cp[0], r.c); err != nil {
		tb.Fatal(err)
	}
	p.clients[r.c] = struct{}{}
	p.wg.Add(1)
	p.stats.ClientConnections.Add(1)
	r.cpeer = cp[1]
	for _, s := range p.servers {
		sp := pair()
		l := &link{sc: s.conns[0], lp: r.lp, fd: -1}
		s.conns[0].l = l
		l.connected(sp[0], nil)
		r.links = append(r.links, l)
		r.speers = append(r.speers, sp[1])
	}
	r.lp.settle()
	tb.Cleanup(func() {
		px.Close()
		unix.Close(r.cpeer)
		for _, fd := range r.speers {
			unix.Close(fd)
		}
	})
	return r
}

// request sends req as the client and routes it.
func (r *rig) request(req []byte) {
	if _, err := unix.Write(r.cpeer, req); err != nil {
		r.tb.Fatal(err)
	}
	r.c.readable = true
	r.c.serve()
	r.lp.settle()
}

// serverGot returns what server i was sent.
func (r *rig) serverGot(i int) []byte {
	n, err := unix.Read(r.speers[i], r.buf)
	if err != nil {
		return nil
	}
	return r.buf[:n]
}

// reply answers as server i.
func (r *rig) reply(i int, b []byte) {
	if _, err := unix.Write(r.speers[i], b); err != nil {
		r.tb.Fatal(err)
	}
	r.links[i].read()
	r.lp.settle()
}

// clientGot returns what the client was sent.
func (r *rig) clientGot() []byte {
	n, err := unix.Read(r.cpeer, r.buf)
	if err != nil {
		return nil
	}
	return r.buf[:n]
}

// hotPaths are request/reply exchanges through the rig: each server that
// holds a key gets its fragment and answers with the canned reply.
var hotPaths = []struct {
	name, proto string
	servers     int
	req         string
	replies     map[int]string // server -> its reply
	want        string
}{
	{"redis GET", "redis", 1, "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n",
		map[int]string{0: "$3\r\nbar\r\n"}, "$3\r\nbar\r\n"},
	{"redis SET", "redis", 1, "*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n",
		map[int]string{0: "+OK\r\n"}, "+OK\r\n"},
	// modula over fnv1a_64: "a" and "b" fall on different servers.
	{"redis MGET 2 servers", "redis", 2, "*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n",
		nil, "*2\r\n$2\r\nva\r\n$2\r\nvb\r\n"},
	{"memcache get", "memcache", 1, "get foo\r\n",
		map[int]string{0: "VALUE foo 0 3\r\nbar\r\nEND\r\n"}, "VALUE foo 0 3\r\nbar\r\nEND\r\n"},
	{"memcache get 2 servers", "memcache", 2, "get a b\r\n",
		nil, "VALUE a 0 2\r\nva\r\nVALUE b 0 2\r\nvb\r\nEND\r\n"},
}

// exchange runs one request through the rig and returns the client's reply.
// For multi-key requests (replies nil) each server answers for the keys it
// was sent, value "v"+key.
func (r *rig) exchange(req string, replies map[int]string) []byte {
	r.request([]byte(req))
	for i := range r.speers {
		got := r.serverGot(i)
		if got == nil {
			continue
		}
		rep, ok := replies[i]
		if !ok {
			rep = fakeAnswer(got)
		}
		r.reply(i, []byte(rep))
	}
	return r.clientGot()
}

// fakeAnswer answers an MGET or a get of single-letter keys.
func fakeAnswer(req []byte) string {
	var b strings.Builder
	if bytes.HasPrefix(req, []byte("get ")) {
		for _, k := range strings.Fields(string(req[4:])) {
			fmt.Fprintf(&b, "VALUE %s 0 2\r\nv%s\r\n", k, k)
		}
		b.WriteString("END\r\n")
		return b.String()
	}
	// *N\r\n$4\r\nmget\r\n then $1\r\nk\r\n per key
	parts := strings.Split(string(req), "\r\n")
	keys := parts[3:]
	fmt.Fprintf(&b, "*%d\r\n", len(keys)/2)
	for i := 1; i < len(keys); i += 2 {
		fmt.Fprintf(&b, "$2\r\nv%s\r\n", keys[i])
	}
	return b.String()
}

func TestHotPathReplies(t *testing.T) {
	for _, hp := range hotPaths {
		t.Run(hp.name, func(t *testing.T) {
			r := newRig(t, hp.proto, hp.servers)
			for range 3 {
				if got := r.exchange(hp.req, hp.replies); string(got) != hp.want {
					t.Fatalf("got %q, want %q", got, hp.want)
				}
			}
		})
	}
}

// prepared returns one exchange of hp through r whose test side allocates
// nothing: the servers' answers are computed once beforehand.
func (r *rig) prepared(req string, replies map[int]string) func() {
	if replies == nil {
		r.request([]byte(req))
		replies = map[int]string{}
		for i := range r.speers {
			if got := r.serverGot(i); got != nil {
				replies[i] = fakeAnswer(got)
				r.reply(i, []byte(replies[i]))
			}
		}
		r.clientGot()
	}
	reqb := []byte(req)
	reps := make([][]byte, len(r.speers))
	for i, s := range replies {
		reps[i] = []byte(s)
	}
	return func() {
		r.request(reqb)
		for i := range r.speers {
			if r.serverGot(i) != nil {
				r.reply(i, reps[i])
			}
		}
		r.clientGot()
	}
}

// The whole per-request path, routing and merging included, allocates
// nothing once warm: buffers and msgs are reused.
func TestHotPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race; make test runs this without it")
	}
	for _, hp := range hotPaths {
		t.Run(hp.name, func(t *testing.T) {
			r := newRig(t, hp.proto, hp.servers)
			run := r.prepared(hp.req, hp.replies)
			for range 100 {
				run()
			}
			if n := testing.AllocsPerRun(1000, run); n != 0 {
				t.Errorf("%v allocations per request", n)
			}
		})
	}
}

// BenchmarkHotPath includes the socketpair system calls of both peers.
func BenchmarkHotPath(b *testing.B) {
	for _, hp := range hotPaths {
		b.Run(hp.name, func(b *testing.B) {
			r := newRig(b, hp.proto, hp.servers)
			run := r.prepared(hp.req, hp.replies)
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}

// TestRedisReplyInPieces: a server reply that arrives a few bytes at a
// time is framed across reads (the link's scanner resumes it) and reaches
// the client once, whole, and the next reply on the link still frames.
func TestRedisReplyInPieces(t *testing.T) {
	r := newRig(t, "redis", 1)
	for _, tc := range []struct{ req, rep string }{
		{"*4\r\n$6\r\nLRANGE\r\n$1\r\nk\r\n$1\r\n0\r\n$2\r\n-1\r\n", "*4\r\n$5\r\nhello\r\n$-1\r\n$0\r\n\r\n*2\r\n:12\r\n+OK\r\n"},
		{"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n", "$10\r\n0123456789\r\n"},
		{"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n", "-ERR broken\r\n"},
	} {
		r.request([]byte(tc.req))
		if got := r.serverGot(0); string(got) != tc.req {
			t.Fatalf("server got %q, want %q", got, tc.req)
		}
		for i := 0; i < len(tc.rep); {
			n := min(1+i%3, len(tc.rep)-i)
			r.reply(0, []byte(tc.rep[i:i+n]))
			i += n
			if i < len(tc.rep) {
				if got := r.clientGot(); got != nil {
					t.Fatalf("client got %q with %d of %d reply bytes sent", got, i, len(tc.rep))
				}
			}
		}
		if got := r.clientGot(); string(got) != tc.rep {
			t.Fatalf("client got %q, want %q", got, tc.rep)
		}
	}
}

// TestMemcacheRetrievalInPieces: a get of 60 keys over two servers whose
// fragment replies arrive a few bytes at a time and in larger pieces, with
// misses among the hits, reaches the client once, whole and in key order
// (the link's scanner resumes each fragment across reads).
func TestMemcacheRetrievalInPieces(t *testing.T) {
	r := newRig(t, "memcache", 2)
	var req, want strings.Builder
	req.WriteString("get")
	value := func(k string) string { return strings.Repeat(k, 1+len(k)%5) }
	hit := func(k string) bool { return !strings.HasSuffix(k, "7") }
	for i := range 60 {
		k := fmt.Sprintf("key%d", i)
		fmt.Fprintf(&req, " %s", k)
		if hit(k) {
			fmt.Fprintf(&want, "VALUE %s 3 %d\r\n%s\r\n", k, len(value(k)), value(k))
		}
	}
	req.WriteString("\r\n")
	want.WriteString("END\r\n")
	r.request([]byte(req.String()))
	replies := make([]string, 2)
	for i := range replies {
		got := string(r.serverGot(i))
		keys, ok := strings.CutPrefix(strings.TrimSuffix(got, "\r\n"), "get ")
		if !ok {
			t.Fatalf("server %d got %q", i, got)
		}
		var b strings.Builder
		for _, k := range strings.Fields(keys) {
			if hit(k) {
				fmt.Fprintf(&b, "VALUE %s 3 %d\r\n%s\r\n", k, len(value(k)), value(k))
			}
		}
		replies[i] = b.String() + "END\r\n"
	}
	var got []byte
	for i, rep := range replies {
		for off, step := 0, 0; off < len(rep); step++ {
			if got != nil {
				t.Fatalf("client got %q with server %d at %d of %d bytes", got, i, off, len(rep))
			}
			n := min(1+step%3, len(rep)-off)
			if step%5 == 4 {
				n = min(37, len(rep)-off) // a piece spanning block boundaries
			}
			r.reply(i, []byte(rep[off:off+n]))
			off += n
			for b := r.clientGot(); b != nil; b = r.clientGot() {
				got = append(got, b...)
			}
		}
	}
	if string(got) != want.String() {
		t.Fatalf("client got %q, want %q", got, want.String())
	}
}

// TestSmallRepliesThroughAFullSocket: pipelined replies, small ones
// (copied together into one buffer) between large ones (written from
// their own buffers), reach a client whose socket keeps filling up, in
// order and byte for byte, across partial writes.
func TestSmallRepliesThroughAFullSocket(t *testing.T) {
	r := newRig(t, "redis", 1)
	if err := unix.SetsockoptInt(r.c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var req, rep, want bytes.Buffer
	for i := range n {
		fmt.Fprintf(&req, "*2\r\n$3\r\nGET\r\n$4\r\nk%03d\r\n", i)
		v := fmt.Sprintf("v%d", i)
		if i%7 == 3 {
			v = strings.Repeat(string(rune('a'+i%26)), 1000+i) // above coalesceMax
		}
		fmt.Fprintf(&rep, "$%d\r\n%s\r\n", len(v), v)
	}
	want.Write(rep.Bytes())
	r.request(req.Bytes())
	var sent []byte
	for len(sent) < req.Len() {
		got := r.serverGot(0)
		if got == nil {
			t.Fatalf("server got %d of %d request bytes", len(sent), req.Len())
		}
		sent = append(sent, got...)
	}
	r.reply(0, rep.Bytes())
	if !r.c.blocked {
		t.Fatal("the client's socket never filled: no partial write tested")
	}
	var got []byte
	for tries := 0; len(got) < want.Len() && tries < 10000; tries++ {
		if b := r.clientGot(); b != nil {
			got = append(got, b...)
		}
		r.c.event(unix.EPOLLOUT)
		r.lp.settle()
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("client got %d bytes, want %d; first difference at %d", len(got), want.Len(), firstDiff(got, want.Bytes()))
	}
	if !r.c.blocked && r.c.qhead != len(r.c.queue) {
		t.Fatal("replies left queued")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestAppendReplyCoalesces(t *testing.T) {
	big := bytes.Repeat([]byte("B"), coalesceMax+1)
	for _, tc := range []struct {
		name    string
		replies [][]byte
		coalCap int
		want    []string // the iovecs
	}{
		{"lone small reply is not copied", [][]byte{[]byte("+OK\r\n")}, 64, []string{"+OK\r\n"}},
		{"small replies join", [][]byte{[]byte("a"), []byte("b"), []byte("c")}, 64, []string{"abc"}},
		{"a large reply splits runs", [][]byte{[]byte("a"), []byte("b"), big, []byte("c"), []byte("d")}, 64, []string{"ab", string(big), "cd"}},
		{"a full buffer starts a new iovec", [][]byte{[]byte("aaaa"), []byte("bbbb"), []byte("cccc"), []byte("dd")}, 8, []string{"aaaabbbb", "cccc", "dd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bufs [][]byte
			coal := make([]byte, 0, tc.coalCap)
			from := -1
			for _, r := range tc.replies {
				bufs, coal = appendReply(bufs, coal, r, &from)
			}
			var got []string
			for _, b := range bufs {
				got = append(got, string(b))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("iovecs %q, want %q", got, tc.want)
			}
			if len(tc.replies) == 1 && &bufs[0][0] != &tc.replies[0][0] {
				t.Error("a lone reply was copied")
			}
		})
	}
}

// A burst of large replies does not stay pinned on the loop's free list:
// what the recycled msgs keep is bounded by maxFreeBytes, and taking them
// back out keeps the count exact.
func TestFreeListBoundsRetainedBuffers(t *testing.T) {
	r := newRig(t, "redis", 1)
	lp := r.lp
	var ms []*msg
	for range 2000 {
		m := lp.newMsg(nil)
		m.reply = make([]byte, 0, 60<<10)
		ms = append(ms, m)
	}
	for _, m := range ms {
		m.free()
	}
	if lp.freeBytes > maxFreeBytes {
		t.Fatalf("free list keeps %d bytes, over %d", lp.freeBytes, maxFreeBytes)
	}
	kept := 0
	for _, m := range lp.freeMsgs {
		kept += m.buffered()
	}
	if kept != lp.freeBytes {
		t.Fatalf("free list counts %d bytes, holds %d", lp.freeBytes, kept)
	}
	for len(lp.freeMsgs) > 0 {
		lp.newMsg(nil)
	}
	if lp.freeBytes != 0 {
		t.Fatalf("%d bytes counted after emptying the free list", lp.freeBytes)
	}
}

// A batch read at once whose keys are on two servers is written to the
// client once, when both have answered; but a server that is slow to
// answer holds the other's replies back for deferWindow at most.
func TestBatchAcrossServersWrittenOnce(t *testing.T) {
	r := newRig(t, "redis", 2)
	// modula over fnv1a_64: "a" is on server 0, "b" on server 1.
	batch := "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
	r.request([]byte(batch))
	if r.serverGot(0) == nil || r.serverGot(1) == nil {
		t.Fatal("the batch did not reach both servers")
	}
	r.reply(0, []byte("$2\r\nva\r\n"))
	if got := r.clientGot(); got != nil {
		t.Fatalf("wrote %q before the batch was whole", got)
	}
	r.reply(1, []byte("$2\r\nvb\r\n"))
	if got, want := string(r.clientGot()), "$2\r\nva\r\n$2\r\nvb\r\n"; got != want {
		t.Fatalf("client got %q, want %q in one write", got, want)
	}

	// Server 1 is slow: after deferWindow server 0's reply goes alone.
	r.request([]byte(batch))
	r.serverGot(0)
	r.serverGot(1)
	r.reply(0, []byte("$2\r\nva\r\n"))
	if got := r.clientGot(); got != nil {
		t.Fatalf("wrote %q before the batch was whole", got)
	}
	r.lp.now += deferWindow
	r.lp.settle()
	if got, want := string(r.clientGot()), "$2\r\nva\r\n"; got != want {
		t.Fatalf("after the window the client got %q, want %q", got, want)
	}
	r.reply(1, []byte("$2\r\nvb\r\n"))
	if got, want := string(r.clientGot()), "$2\r\nvb\r\n"; got != want {
		t.Fatalf("client got %q, want %q", got, want)
	}
	if len(r.lp.deferred) != 0 {
		t.Errorf("%d clients left on the deferred list", len(r.lp.deferred))
	}

	// Requests read in different batches are not held for each other.
	r.request([]byte("*2\r\n$3\r\nGET\r\n$1\r\na\r\n"))
	r.lp.now++
	r.request([]byte("*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"))
	r.serverGot(0)
	r.serverGot(1)
	r.reply(0, []byte("$2\r\nva\r\n"))
	if got, want := string(r.clientGot()), "$2\r\nva\r\n"; got != want {
		t.Fatalf("an earlier batch's reply: got %q, want %q", got, want)
	}
	r.reply(1, []byte("$2\r\nvb\r\n"))
	r.clientGot()
}
