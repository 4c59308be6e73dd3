package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var vals []int64
	for range 100000 {
		// Spread over ns to seconds.
		v := int64(rng.ExpFloat64() * float64(time.Duration(1)<<uint(rng.IntN(30))))
		vals = append(vals, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(vals)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := int(q * float64(len(vals)))
		if float64(rank) < q*float64(len(vals)) {
			rank++
		}
		rank = min(max(rank, 1), len(vals))
		want := vals[rank-1]
		got := int64(h.Quantile(q))
		if diff := got - want; diff > want/256+1 || -diff > want/256+1 {
			t.Errorf("q%v: got %d, want %d (±0.4%%)", q, got, want)
		}
	}
	if h.Count() != uint64(len(vals)) || int64(h.Max()) != vals[len(vals)-1] {
		t.Errorf("count %d max %v, want %d %d", h.Count(), h.Max(), len(vals), vals[len(vals)-1])
	}
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 1023, 1024, 1025, 2047, 2048, 1 << 20, 1<<20 + 1, 1 << 40, 1<<62 - 1} {
		i := bucketOf(v)
		if i < prev {
			t.Errorf("bucketOf(%d) = %d goes backwards from %d", v, i, prev)
		}
		prev = i
		if i == histBuckets-1 {
			continue // the overflow bucket
		}
		if lo, hi := bucketLow(i), bucketHigh(i); v < lo || v > hi {
			t.Errorf("bucketOf(%d) = %d covers [%d, %d]", v, i, lo, hi)
		}
	}
	for i := 1; i < histBuckets; i++ {
		if bucketLow(i) != bucketHigh(i-1)+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, bucketLow(i), i-1, bucketHigh(i-1))
		}
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

// Delayed-ACK stalls are counted from the histogram: everything at or
// above the threshold, nothing clearly below it.
func TestHistogramCountAtLeast(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{10 * time.Microsecond, 39 * time.Millisecond, 40 * time.Millisecond,
		41 * time.Millisecond, time.Second} {
		h.Record(d)
	}
	for _, c := range []struct {
		at   time.Duration
		want uint64
	}{{0, 5}, {40 * time.Millisecond, 3}, {41 * time.Millisecond, 2}, {time.Second, 1}, {2 * time.Second, 0}} {
		if got := h.CountAtLeast(c.at); got != c.want {
			t.Errorf("CountAtLeast(%v) = %d, want %d", c.at, got, c.want)
		}
	}
	var empty Histogram
	if n := empty.CountAtLeast(40 * time.Millisecond); n != 0 {
		t.Errorf("empty histogram: %d", n)
	}
}

func TestParseRedis(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		kind reply
		err  error
	}{
		{"+OK\r\n", 5, replyOK, nil},
		{":12\r\n", 5, replyOK, nil},
		{"-ERR x\r\n", 8, replyError, nil},
		{"$3\r\nfoo\r\n", 9, replyOK, nil},
		{"$-1\r\n", 5, replyMiss, nil},
		{"*2\r\n$-1\r\n$1\r\na\r\n", 16, replyOK, nil},
		{"*2\r\n$-1\r\n$-1\r\n", 14, replyMiss, nil},
		{"*1\r\n-ERR\r\n", 10, replyError, nil},
		{"*0\r\n", 4, replyOK, nil},
		{"$3\r\nfoo\r\n+OK\r\n", 9, replyOK, nil},
		{"$3\r\nfo", 0, 0, errIncomplete},
		{"*2\r\n$1\r\na\r\n", 0, 0, errIncomplete},
		{"", 0, 0, errIncomplete},
		{"+OK", 0, 0, errIncomplete},
		{"?\r\n", 0, 0, ErrProtocol},
		{"$x\r\n", 0, 0, ErrProtocol},
		// RESP3, after HELLO 3.
		{"_\r\n", 3, replyMiss, nil},
		{"_\r\n+OK\r\n", 3, replyMiss, nil},
		{"#t\r\n", 4, replyOK, nil},
		{",1.5\r\n", 6, replyOK, nil},
		{"(12345678901234567890\r\n", 23, replyOK, nil},
		{"=7\r\ntxt:abc\r\n", 13, replyOK, nil},
		{"!5\r\nERR x\r\n", 11, replyError, nil},
		{"*2\r\n_\r\n_\r\n", 10, replyMiss, nil},
		{"*2\r\n_\r\n$1\r\na\r\n", 14, replyOK, nil},
		{"~2\r\n:1\r\n:2\r\n", 12, replyOK, nil},
		{"~0\r\n", 4, replyOK, nil},
		{"%1\r\n+server\r\n+redis\r\n", 21, replyOK, nil},
		{"%1\r\n+k\r\n_\r\n", 11, replyOK, nil},
		{"%2\r\n+a\r\n:1\r\n", 0, 0, errIncomplete},
		{"|1\r\n+key\r\n:1\r\n_\r\n", 17, replyMiss, nil},
		{"|1\r\n+key\r\n:1\r\n", 0, 0, errIncomplete},
		{"*1\r\n|1\r\n+a\r\n+b\r\n!1\r\nx\r\n", 23, replyError, nil},
		{"_x\r\n", 0, 0, ErrProtocol},
		{"!-1\r\n", 0, 0, ErrProtocol},
		{"%-1\r\n", 0, 0, ErrProtocol},
		{">2\r\n+message\r\n+x\r\n", 0, 0, ErrProtocol},
	}
	for _, tt := range tests {
		n, kind, err := parseRedis([]byte(tt.in))
		if !errors.Is(err, tt.err) || err == nil && (n != tt.n || kind != tt.kind) {
			t.Errorf("parseRedis(%q) = %d, %d, %v; want %d, %d, %v", tt.in, n, kind, err, tt.n, tt.kind, tt.err)
		}
	}
}

func TestParseMemcache(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		kind reply
		err  error
	}{
		{"STORED\r\n", 8, replyOK, nil},
		{"END\r\n", 5, replyMiss, nil},
		{"VALUE k 0 3\r\nabc\r\nEND\r\n", 23, replyOK, nil},
		{"VALUE k 0 3 9\r\nabc\r\nVALUE j 1 0\r\n\r\nEND\r\n", 40, replyOK, nil},
		{"SERVER_ERROR out of memory\r\n", 28, replyError, nil},
		{"ERROR\r\n", 7, replyError, nil},
		{"NOT_FOUND\r\n", 11, replyMiss, nil},
		{"VALUE k 0 3\r\nabc\r\n", 0, 0, errIncomplete},
		{"VALUE k 0 3\r\nab", 0, 0, errIncomplete},
		{"STORED", 0, 0, errIncomplete},
		{"VALUE k 0\r\n", 0, 0, ErrProtocol},
		{"VALUE k 0 x\r\nEND\r\n", 0, 0, ErrProtocol},
		{"VALUE k 0 1\r\na\r\nSTORED\r\n", 0, 0, ErrProtocol},
	}
	for _, tt := range tests {
		n, kind, err := parseMemcache([]byte(tt.in))
		if !errors.Is(err, tt.err) || err == nil && (n != tt.n || kind != tt.kind) {
			t.Errorf("parseMemcache(%q) = %d, %d, %v; want %d, %d, %v", tt.in, n, kind, err, tt.n, tt.kind, tt.err)
		}
	}
}

func TestEncoders(t *testing.T) {
	if got := KeyName("k:", 42); got != "k:000000000042" {
		t.Errorf("KeyName = %q", got)
	}
	if got := KeyName("k:", 1234567890123); got != "k:1234567890123" {
		t.Errorf("KeyName long = %q", got)
	}
	got := string(appendRedis(nil, "MGET", "k:", []int{1, 1234567890123}, nil))
	want := "*3\r\n$4\r\nMGET\r\n$14\r\nk:000000000001\r\n$15\r\nk:1234567890123\r\n"
	if got != want {
		t.Errorf("appendRedis = %q, want %q", got, want)
	}
	got = string(appendRedis(nil, "SET", "k:", []int{7}, []byte("xy")))
	want = "*3\r\n$3\r\nSET\r\n$14\r\nk:000000000007\r\n$2\r\nxy\r\n"
	if got != want {
		t.Errorf("appendRedis set = %q, want %q", got, want)
	}
	if got := string(appendMemcacheGet(nil, "m", []int{1, 2})); got != "get m000000000001 m000000000002\r\n" {
		t.Errorf("appendMemcacheGet = %q", got)
	}
	if got := string(appendMemcacheSet(nil, "m", 3, []byte("abc"))); got != "set m000000000003 0 0 3\r\nabc\r\n" {
		t.Errorf("appendMemcacheSet = %q", got)
	}
}

// FuzzParse checks that the reply parsers never panic, that a reply
// they accept is reported incomplete when cut short, and that the Redis
// parser frames a reply that the proxy's own scanner (resp.ReplyLen,
// strict where the generator is lenient) accepts to the same length.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "*2\r\n$-1\r\n$1\r\na\r\n", "VALUE k 0 3\r\nabc\r\nEND\r\n", "$5\r\nab", "END\r\n",
		"_\r\n", "%1\r\n+a\r\n_\r\n", "|1\r\n+a\r\n#t\r\n~1\r\n,1.5\r\n", "=5\r\ntxt:a\r\n!3\r\nERR\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, _, err := parseRedis(b); err == nil {
			if m, _, rerr := resp.ReplyLen(b, resp.Limits{}); rerr == nil && m != 0 && m != n {
				t.Fatalf("%q: parseRedis frames %d bytes, resp.ReplyLen %d", b, n, m)
			}
		}
		for _, parse := range []func([]byte) (int, reply, error){parseRedis, parseMemcache} {
			n, _, err := parse(b)
			if err != nil {
				continue
			}
			if n <= 0 || n > len(b) {
				t.Fatalf("parsed length %d of %d bytes", n, len(b))
			}
			if _, _, err := parse(b[:n-1]); !errors.Is(err, errIncomplete) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("%q cut short parsed as complete", b[:n-1])
			}
		}
	})
}

// fakeServer answers the generator's requests like redis-server or
// memcached would (every key exists with value "v"), and can be made to
// stall for a while to test latency accounting.
type fakeServer struct {
	ln      net.Listener
	proto   Protocol
	stallAt atomic.Int64 // request number at which to stall, 0 = never
	stall   time.Duration
	until   atomic.Int64 // unix ns until which every connection stalls
	served  atomic.Int64
	wg      sync.WaitGroup
}

func startFake(t *testing.T, p Protocol) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, proto: p}
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *fakeServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	for {
		var out []byte
		var err error
		if s.proto == Redis {
			out, err = s.redisOne(r)
		} else {
			out, err = s.memcacheOne(r)
		}
		if err != nil {
			return
		}
		if n := s.served.Add(1); n == s.stallAt.Load() {
			s.until.Store(time.Now().Add(s.stall).UnixNano())
		}
		if d := time.Until(time.Unix(0, s.until.Load())); d > 0 {
			w.Flush()
			time.Sleep(d)
		}
		w.Write(out)
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
	}
}

func (s *fakeServer) redisOne(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	argc, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
	var args []string
	for range argc {
		hdr, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		n, _ := strconv.Atoi(strings.TrimSpace(hdr[1:]))
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args = append(args, string(buf[:n]))
	}
	switch args[0] {
	case "GET":
		return []byte("$1\r\nv\r\n"), nil
	case "MGET":
		return []byte(fmt.Sprintf("*%d\r\n%s", argc-1, strings.Repeat("$1\r\nv\r\n", argc-1))), nil
	default:
		return []byte("+OK\r\n"), nil
	}
}

func (s *fakeServer) memcacheOne(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	f := strings.Fields(line)
	if f[0] == "set" {
		n, _ := strconv.Atoi(f[4])
		if _, err := io.ReadFull(r, make([]byte, n+2)); err != nil {
			return nil, err
		}
		return []byte("STORED\r\n"), nil
	}
	var b bytes.Buffer
	for _, k := range f[1:] {
		fmt.Fprintf(&b, "VALUE %s 0 1\r\nv\r\n", k)
	}
	b.WriteString("END\r\n")
	return b.Bytes(), nil
}

func TestRunClosedLoop(t *testing.T) {
	for _, tt := range []struct {
		p       Protocol
		op      Op
		threads int
	}{{Redis, Get, 0}, {Redis, Set, 1}, {Redis, MGet, 3}, {Memcache, Get, 2}, {Memcache, Set, 8}, {Memcache, MGet, 1}} {
		t.Run(fmt.Sprintf("%s-%s-%d", tt.p, tt.op, tt.threads), func(t *testing.T) {
			srv := startFake(t, tt.p)
			var started, stopped bool
			res, err := Run(context.Background(), Spec{
				Protocol: tt.p, Op: tt.op, Addrs: []string{srv.ln.Addr().String()}, Threads: tt.threads,
				Clients: 4, Pipeline: 8, ValueSize: 100, Keys: 100, KeyPrefix: "k:",
				Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond,
				OnStart: func() { started = true }, OnStop: func() { stopped = true },
			})
			if err != nil {
				t.Fatal(err)
			}
			if !started || !stopped {
				t.Error("window hooks not called")
			}
			if res.Requests == 0 || res.Errors != 0 || res.Misses != 0 {
				t.Fatalf("requests %d errors %d misses %d", res.Requests, res.Errors, res.Misses)
			}
			if res.Requests%8 != 0 {
				t.Errorf("%d requests: not whole pipelines of 8", res.Requests)
			}
			if res.Latency.Count() != res.Requests {
				t.Errorf("%d latencies for %d requests", res.Latency.Count(), res.Requests)
			}
			// The warm-up's requests are not counted.
			if served := srv.served.Load(); uint64(served) <= res.Requests {
				t.Errorf("server served %d, counted %d: warm-up counted", served, res.Requests)
			}
		})
	}
}

// TestClosedLoopServerGone: a server that closes its connections in the
// middle of the window fails the run instead of hanging it.
func TestClosedLoopServerGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				// Answer a few requests, then hang up.
				buf := make([]byte, 4096)
				for i := 0; i < 3; i++ {
					if _, err := c.Read(buf); err != nil {
						break
					}
					c.Write([]byte("$1\r\nv\r\n"))
				}
				c.Close()
			}()
		}
	}()
	start := time.Now()
	_, err = Run(context.Background(), Spec{Protocol: Redis, Op: Get, Addrs: []string{ln.Addr().String()},
		Clients: 2, Pipeline: 1, Keys: 10, Warmup: 10 * time.Millisecond, Duration: 200 * time.Millisecond})
	// A close with a request unread reaches the client as a reset.
	if err == nil || !strings.Contains(err.Error(), "server closed") && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Run = %v, want a server-closed error", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

// TestFixedRateChargesStalls: a server that stalls for 300 ms must show
// up in every request scheduled during the stall, not just in the one it
// was serving (coordinated omission).
func TestFixedRateChargesStalls(t *testing.T) {
	srv := startFake(t, Redis)
	const rate = 2000.0
	srv.stall = 300 * time.Millisecond
	srv.stallAt.Store(400) // about 200 ms into the run
	res, err := Run(context.Background(), Spec{
		Protocol: Redis, Op: Get, Addrs: []string{srv.ln.Addr().String()},
		Clients: 4, Rate: rate, Keys: 10, KeyPrefix: "k:", Duration: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lag == nil || res.Lag.Count() == 0 {
		t.Fatal("no schedule lag recorded")
	}
	// Open loop: the schedule goes on during the stall.
	if res.Requests < rate/2 {
		t.Fatalf("%d requests at %v/s over 1s", res.Requests, rate)
	}
	// Requests scheduled in the first 200 ms of the stall waited at least
	// 100 ms each: about 400 of them. A closed-loop count would see 4.
	var over uint64
	for i := range res.Latency.counts {
		if bucketLow(i) >= int64(100*time.Millisecond) {
			over += res.Latency.counts[i]
		}
	}
	if over < 300 {
		t.Errorf("only %d of %d requests took 100ms or more through a 300ms stall", over, res.Requests)
	}
	if p50 := res.Latency.Quantile(0.5); p50 >= 100*time.Millisecond {
		t.Errorf("p50 %v: the stall should not dominate the median", p50)
	}
}

func TestPreloadAndIdle(t *testing.T) {
	for _, p := range []Protocol{Redis, Memcache} {
		srv := startFake(t, p)
		if err := Preload(context.Background(), p, srv.ln.Addr().String(), "k:", 450, 10); err != nil {
			t.Fatal(err)
		}
		if got := srv.served.Load(); got != 450 {
			t.Errorf("%s: preload sent %d sets, want 450", p, got)
		}
		idle, err := OpenIdle(context.Background(), p, srv.ln.Addr().String(), "k:", 20, true)
		if err != nil {
			t.Fatal(err)
		}
		if idle.Len() != 20 || srv.served.Load() != 470 {
			t.Errorf("%s: %d idle clients, %d requests served", p, idle.Len(), srv.served.Load())
		}
		idle.Close()
	}
}

// startRedis starts a redis-server on a free loopback port for the test.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server not listening on %s: %v", addr, err)
		}
	}
}

// TestRESP3AgainstRedis runs the generator in both protocol versions
// against a real redis-server, half the keys present: after HELLO 3 a
// GET miss is "_" and must count as a miss, as "$-1" does in RESP2.
func TestRESP3AgainstRedis(t *testing.T) {
	addr := startRedis(t)
	// The premise: redis-server answers HELLO 3 with a map, then a miss
	// with RESP3's null.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(&Spec{Protocol: Redis, Op: Get, KeyPrefix: "absent:", Keys: 1}, conn, 1, nil)
	if err := c.hello(); err != nil {
		t.Fatal(err)
	}
	conn.Write(c.appendRequest(nil))
	if b, r, err := c.nextRaw(); err != nil || string(b) != "_\r\n" || r != replyMiss {
		t.Fatalf("GET of a missing key after HELLO 3: %q, %d, %v", b, r, err)
	}
	conn.Close()

	const keys = 200
	if err := Preload(context.Background(), Redis, addr, "k:", keys/2, 100); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		op       Op
		pipeline int
		resp3    bool
	}{{Get, 1, false}, {Get, 1, true}, {Get, 16, true}, {MGet, 4, true}, {Set, 16, true}} { // SET last: it fills the key space
		t.Run(fmt.Sprintf("%s-P%d-resp3=%v", tt.op, tt.pipeline, tt.resp3), func(t *testing.T) {
			res, err := Run(context.Background(), Spec{
				Protocol: Redis, Op: tt.op, Addrs: []string{addr}, RESP3: tt.resp3, Threads: 2,
				Clients: 6, Pipeline: tt.pipeline, ValueSize: 100, Keys: keys, KeyPrefix: "k:", MultiKeys: 2,
				Warmup: 20 * time.Millisecond, Duration: 150 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 || res.Errors != 0 {
				t.Fatalf("requests %d errors %d", res.Requests, res.Errors)
			}
			share := float64(res.Misses) / float64(res.Requests)
			want := map[Op]float64{Get: 0.5, MGet: 0.25, Set: 0}[tt.op]
			if tt.op == Set && res.Misses != 0 || math.Abs(share-want) > 0.1 {
				t.Errorf("%d misses in %d requests (%.2f), want about %.2f", res.Misses, res.Requests, share, want)
			}
		})
	}
}

// A server that does not speak RESP3 fails a RESP3 run at the start:
// nutcracker and predixy close the connection on HELLO 3, redis before 6
// replies with an error.
func TestRESP3Refused(t *testing.T) {
	for _, answer := range []string{"", "-ERR unknown command 'HELLO'\r\n", "*2\r\n$6\r\nserver\r\n$5\r\nredis\r\n"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					c.Read(make([]byte, 512))
					c.Write([]byte(answer))
					if answer == "" {
						c.Close()
					}
				}()
			}
		}()
		_, err = Run(context.Background(), Spec{Protocol: Redis, Op: Get, Addrs: []string{ln.Addr().String()}, RESP3: true,
			Clients: 2, Pipeline: 1, Keys: 10, Duration: 50 * time.Millisecond})
		ln.Close()
		if err == nil || !strings.Contains(err.Error(), "HELLO 3") {
			t.Errorf("server answering %q: Run = %v, want a HELLO 3 error", answer, err)
		}
	}
}
