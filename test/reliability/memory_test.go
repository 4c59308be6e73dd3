package reliability

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// bigRig is the real binary (one worker) in front of two real
// redis-servers (or memcacheds), for the memory tests of large replies.
type bigRig struct {
	proc    *harness.Proc
	addr    string
	servers []string // backend addresses, in config order
	ring    *hashkit.Ring
	hash    hashkit.HashFunc
}

func startBigRig(t testing.TB, proto string, attrs string, extra ...string) *bigRig {
	t.Helper()
	return startBigRigWith(t, proto, "", attrs, extra...)
}

// startBigRigWith: global is top-level configuration.
func startBigRigWith(t testing.TB, proto, global, attrs string, extra ...string) *bigRig {
	t.Helper()
	r := &bigRig{}
	for i := 0; i < 2; i++ {
		var p *harness.Proc
		if proto == "redis" {
			p = harness.Redis(t, extra...)
		} else {
			p = harness.Memcached(t, extra...)
		}
		r.servers = append(r.servers, p.Addr)
	}
	r.addr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	var b strings.Builder
	fmt.Fprintf(&b, "worker_processes = 1\n%s\nstats {\n  listen = \"\"\n}\npool \"p\" {\n  listen = %q\n  protocol = %q\n%s\n", global, r.addr, proto, attrs)
	for _, a := range r.servers {
		fmt.Fprintf(&b, "  server %q {}\n", a)
	}
	b.WriteString("}\n")
	cfg, err := config.Parse([]byte(b.String()), "big.hcl")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	var nodes []hashkit.Node
	for _, s := range cfg.Pools[0].Servers {
		nodes = append(nodes, hashkit.Node{Name: s.PlacementName(), Weight: s.Weight})
	}
	if r.ring, err = hashkit.Build(cfg.Pools[0].Distribution, nodes, nil); err != nil {
		t.Fatal(err)
	}
	if r.hash, err = hashkit.Hash(cfg.Pools[0].Hash); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "nuthatch.hcl")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r.proc = harness.Start(t, harness.Binary(t), "-c", conf)
	t.Cleanup(func() {
		if t.Failed() {
			out := r.proc.Output()
			if len(out) > 4000 {
				out = out[len(out)-4000:]
			}
			t.Logf("nuthatch output (tail):\n%s", out)
		}
	})
	harness.WaitPort(t, "tcp", r.addr, 10*time.Second)
	return r
}

func (r *bigRig) keyOn(prefix string, i int) string {
	for n := 0; ; n++ {
		k := fmt.Sprintf("%s%d", prefix, n)
		if r.ring.Pick(r.hash([]byte(k))) == i {
			return k
		}
	}
}

func (r *bigRig) workerRSS(t testing.TB) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c := harness.Children(r.proc.Cmd.Process.Pid); len(c) == 1 {
			return vmRSS(t, c[0])
		}
		if time.Now().After(deadline) {
			t.Fatal("no single worker")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bigValue is a deterministic incompressible value.
func bigValue(seed int64, n int) []byte {
	v := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(v)
	return v
}

// setDirect stores value under key on a backend, bypassing the proxy.
func setDirect(t testing.TB, proto, addr, key string, value []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriterSize(c, 1<<20)
	if proto == "redis" {
		fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, len(value))
	} else {
		fmt.Fprintf(w, "set %s 0 0 %d\r\n", key, len(value))
	}
	w.Write(value)
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || (line != "+OK\r\n" && line != "STORED\r\n") {
		t.Fatalf("set %s on %s: %q %v", key, addr, line, err)
	}
}

// readBulk reads one reply to a GET of a large value and returns its
// value's checksum: RESP "$n\r\n...\r\n" or memcached "VALUE k f n\r\n...\r\nEND\r\n".
func readBig(r *bufio.Reader, proto string) ([32]byte, int, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return [32]byte{}, 0, err
	}
	var n int
	if proto == "redis" {
		if !strings.HasPrefix(line, "$") {
			return [32]byte{}, 0, fmt.Errorf("reply %q", line)
		}
		n, _ = strconv.Atoi(strings.TrimSpace(line[1:]))
	} else {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "VALUE" {
			return [32]byte{}, 0, fmt.Errorf("reply %q", line)
		}
		n, _ = strconv.Atoi(f[3])
	}
	h := sha256.New()
	if _, err := io.CopyN(h, r, int64(n)); err != nil {
		return [32]byte{}, 0, err
	}
	var crlf [2]byte
	if _, err := io.ReadFull(r, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
		return [32]byte{}, 0, fmt.Errorf("value not terminated: %q %v", crlf, err)
	}
	if proto != "redis" {
		if end, err := r.ReadString('\n'); err != nil || end != "END\r\n" {
			return [32]byte{}, 0, fmt.Errorf("after the value: %q %v", end, err)
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n, nil
}

// slowReaders is issue #23's scenario: a large value on each of two
// servers, clients GET it through the proxy and read nothing for a while.
// Meanwhile another client's PINGs and GETs of other keys must be answered
// at normal latency, the worker's RSS must stay within bound, and then
// every slow reader gets its value intact.
func slowReaders(t *testing.T, proto string, size, clients int, pause time.Duration, boundMiB int64, attrs string, extra ...string) {
	r := startBigRig(t, proto, attrs, extra...)
	var keys [2]string
	var sums [2][32]byte
	for i := range keys {
		keys[i] = r.keyOn("big", i)
		v := bigValue(int64(i+1), size)
		sums[i] = sha256.Sum256(v)
		setDirect(t, proto, r.servers[i], keys[i], v)
	}
	small := [2]string{r.keyOn("small", 0), r.keyOn("small", 1)}
	for i, k := range small {
		setDirect(t, proto, r.servers[i], k, []byte("v"))
	}
	get := func(k string) string {
		if proto == "redis" {
			return redisCmd("GET", k)
		}
		return "get " + k + "\r\n"
	}
	// Warm up: a small exchange on each server link.
	probe := dialT(t, r.addr)
	for _, k := range small {
		probe.send(t, get(k))
		if _, err := probe.reply(proto); err != nil {
			t.Fatal(err)
		}
	}
	before := r.workerRSS(t)

	slow := make([]*client, clients)
	for i := range slow {
		slow[i] = dialT(t, r.addr)
		slow[i].send(t, get(keys[i%2]))
	}
	// Other clients during the pause: PINGs (redis) and GETs of the small
	// keys on both servers, sent once the large replies have begun (a
	// request pipelined on a server link behind a large reply, before the
	// reply's header arrived, waits for that reply: see
	// docs/reliability.md).
	time.Sleep(200 * time.Millisecond)
	var lat []time.Duration
	maxRSS := before
	stop := time.Now().Add(pause)
	for time.Now().Before(stop) {
		for _, req := range []string{"PING", get(small[0]), get(small[1])} {
			if req == "PING" {
				if proto != "redis" {
					continue
				}
				req = redisCmd("PING")
			}
			t0 := time.Now()
			probe.SetReadDeadline(time.Now().Add(5 * time.Second))
			probe.send(t, req)
			if _, err := probe.reply(proto); err != nil {
				t.Fatalf("another client's %q during the slow readers: %v", req, err)
			}
			lat = append(lat, time.Since(t0))
			if d := time.Since(t0); d > 100*time.Millisecond {
				t.Logf("slow: %q took %v, %v into the pause", req, d, (pause - time.Until(stop)).Round(time.Millisecond))
			}
		}
		if rss := r.workerRSS(t); rss > maxRSS {
			maxRSS = rss
		}
		time.Sleep(20 * time.Millisecond)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99, worst := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	growth := (maxRSS - before) >> 10
	t.Logf("%s: %d slow readers of %d MiB values: worker RSS grew by %d MiB (bound %d MiB); another client's %d requests meanwhile: p50 %v, p99 %v, max %v",
		proto, clients, size>>20, growth, boundMiB, len(lat), p50, p99, worst)
	if growth > boundMiB {
		t.Errorf("worker RSS grew by %d MiB, over %d MiB", growth, boundMiB)
	}
	if p99 > 50*time.Millisecond {
		t.Errorf("p99 of another client's requests during the slow readers: %v", p99)
	}
	// Now the slow readers read: every value arrives intact.
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	t0 := time.Now()
	for i, c := range slow {
		wg.Add(1)
		go func(i int, c *client) {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			sum, n, err := readBig(c.r, proto)
			switch {
			case err != nil:
				errs <- fmt.Errorf("slow reader %d: %v", i, err)
			case n != size || sum != sums[i%2]:
				errs <- fmt.Errorf("slow reader %d: %d bytes, checksum differs", i, n)
			}
		}(i, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("the %d slow readers then read %d MiB in %v", clients, clients*size>>20, time.Since(t0).Round(time.Millisecond))
}

func dialT(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: bufio.NewReaderSize(c, 64<<10)}
}

// The short version runs in make test: 24 readers of 8 MiB values for 2 s,
// bounded in proportion to the 300 MiB for 64 MiB values.
func TestSlowReadersOfLargeReplies(t *testing.T) {
	size, pause, bound := 8<<20, 2*time.Second, int64(300*8/64)
	if os.Getenv("NUTHATCH_BIG") != "" {
		size, pause, bound = 64<<20, 6*time.Second, 300
	}
	t.Run("redis", func(t *testing.T) {
		slowReaders(t, "redis", size, 24, pause, bound, "")
	})
	// memcached -I 65m takes 64 MiB values with their item header (its
	// default is 1 MiB).
	t.Run("memcache", func(t *testing.T) {
		slowReaders(t, "memcache", size, 24, pause, bound, "", "-I", "65m", "-m", "1024")
	})
	// Within memcached's default item size: many 1 MiB values per get.
	t.Run("memcache-1MiB-values", func(t *testing.T) {
		slowReadersMany(t, size>>20, 24, pause, bound)
	})
}

// slowReadersMany: clients each get n values of 1 MiB (on one server)
// in one request and read nothing for a while; another client's gets are
// answered meanwhile, the worker's RSS stays within bound, and then every
// client gets every value intact.
func slowReadersMany(t *testing.T, n, clients int, pause time.Duration, boundMiB int64) {
	r := startBigRig(t, "memcache", "", "-m", "1024") // room for every value: none evicted
	const valLen = 1<<20 - 1024                       // what fits memcached's default 1 MiB item with its header
	keys := make([]string, n)
	sums := map[string][32]byte{}
	for i := range keys {
		keys[i] = r.keyOn(fmt.Sprintf("m%d-", i), 0)
		v := bigValue(int64(100+i), valLen)
		sums[keys[i]] = sha256.Sum256(v)
		setDirect(t, "memcache", r.servers[0], keys[i], v)
	}
	small := [2]string{r.keyOn("small", 0), r.keyOn("small", 1)}
	for i, k := range small {
		setDirect(t, "memcache", r.servers[i], k, []byte("v"))
	}
	probe := dialT(t, r.addr)
	for _, k := range small {
		probe.send(t, "get "+k+"\r\n")
		if _, err := probe.reply("memcache"); err != nil {
			t.Fatal(err)
		}
	}
	before := r.workerRSS(t)
	req := "get " + strings.Join(keys, " ") + "\r\n"
	slow := make([]*client, clients)
	for i := range slow {
		slow[i] = dialT(t, r.addr)
		slow[i].send(t, req)
	}
	time.Sleep(200 * time.Millisecond)
	maxRSS, worst := before, time.Duration(0)
	requests := 0
	for stop := time.Now().Add(pause); time.Now().Before(stop); time.Sleep(20 * time.Millisecond) {
		for _, k := range small {
			t0 := time.Now()
			probe.SetReadDeadline(time.Now().Add(5 * time.Second))
			probe.send(t, "get "+k+"\r\n")
			if _, err := probe.reply("memcache"); err != nil {
				t.Fatalf("another client's get during the slow readers: %v", err)
			}
			worst = max(worst, time.Since(t0))
			requests++
		}
		maxRSS = max(maxRSS, r.workerRSS(t))
	}
	growth := (maxRSS - before) >> 10
	t.Logf("memcache: %d slow readers of %d values of 1 MiB each in one get: worker RSS grew by %d MiB (bound %d MiB); another client's %d gets meanwhile: max %v",
		clients, n, growth, boundMiB, requests, worst)
	if growth > boundMiB {
		t.Errorf("worker RSS grew by %d MiB, over %d MiB", growth, boundMiB)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range slow {
		wg.Add(1)
		go func(i int, c *client) {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			for _, k := range keys {
				line, err := c.r.ReadString('\n')
				if err != nil || line != fmt.Sprintf("VALUE %s 0 %d\r\n", k, valLen) {
					errs <- fmt.Errorf("slow reader %d: %q %v", i, line, err)
					return
				}
				h := sha256.New()
				var crlf [2]byte
				if _, err := io.CopyN(h, c.r, valLen); err != nil {
					errs <- fmt.Errorf("slow reader %d: %v", i, err)
					return
				}
				if _, err := io.ReadFull(c.r, crlf[:]); err != nil || string(crlf[:]) != "\r\n" || [32]byte(h.Sum(nil)) != sums[k] {
					errs <- fmt.Errorf("slow reader %d: %s differs", i, k)
					return
				}
			}
			if end, err := c.r.ReadString('\n'); err != nil || end != "END\r\n" {
				errs <- fmt.Errorf("slow reader %d: after the values %q %v", i, end, err)
			}
		}(i, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
