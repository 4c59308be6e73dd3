package reliability

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

const mb = 1 << 20

// Declared lengths far beyond the limits are refused before anything is
// allocated, and lengths under the limit whose bytes never come cost only
// what arrived (readbuf.want used to allocate the declared size at once:
// eight clients promising 500 MB took 4 GB of heap).
func TestOversizedDeclaredLengths(t *testing.T) {
	for _, tc := range []struct {
		proto string
		// refused: sent, answered with this error, then the connection closes.
		refused map[string]string
		// stalled: sent by each of 8 clients that then stall.
		stalled string
	}{
		{
			proto: "redis",
			refused: map[string]string{
				"*2000000000\r\n":       "-ERR Protocol error: invalid multibulk length\r\n",
				"*1\r\n$2000000000\r\n": "-ERR Protocol error: invalid bulk length\r\n",
				"*1\r\n$-10\r\n":        "-ERR Protocol error: invalid bulk length\r\n",
			},
			stalled: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\n" + strings.Repeat("x", 1000),
		},
		{
			proto: "memcache",
			refused: map[string]string{
				// memcached swallows the value and keeps the connection; the
				// client here closes after the reply.
				"set k 0 0 2000000000\r\n": "SERVER_ERROR object too large for cache\r\n",
			},
			stalled: "set k 0 0 1000000\r\n" + strings.Repeat("x", 1000),
		},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			r := newRig(t, tc.proto, 2, "")
			before := heap()
			for req, want := range tc.refused {
				c := r.dial(t)
				c.send(t, req)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c.r, got); err != nil || string(got) != want {
					t.Errorf("%q: got %q, %v; want %q", req, got, err, want)
				}
				c.Close()
			}
			var conns []*client
			for i := 0; i < 8; i++ {
				c := r.dial(t)
				c.send(t, tc.stalled)
				conns = append(conns, c)
			}
			// Let the proxy read everything that was sent.
			time.Sleep(200 * time.Millisecond)
			during := heap()
			growth := int64(during) - int64(before)
			t.Logf("%s: heap %d MB before, %d MB with 8 stalled oversized requests (%+d KB)",
				tc.proto, before/mb, during/mb, growth/1024)
			if growth > 8*mb {
				t.Errorf("heap grew by %d MB for requests whose bytes never came", growth/mb)
			}
			for _, c := range conns {
				c.Close()
			}
			r.waitIdle(t)
		})
	}
}

// A client that pipelines without ever reading is stopped by back-pressure
// (the proxy does not read it while its replies are unwritten): memory stays
// bounded by one batch, and other clients keep their latency. With
// client_write_timeout the proxy gives the client up, counts and logs it.
func TestPipelineWithoutReading(t *testing.T) {
	for _, wt := range []string{"", "500ms"} {
		name := "no_write_timeout"
		attrs := ""
		if wt != "" {
			name, attrs = "client_write_timeout", `  client_write_timeout = "`+wt+`"`
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, "redis", 2, attrs)
			_, base99 := r.latency(t, 300)
			before := heap()

			c := r.dial(t)
			chunk := []byte(strings.Repeat(redisCmd("GET", "echo:pipelined-without-reading"), 2000))
			const offer = 1 << 30
			var sent atomic.Int64
			done := make(chan error, 1)
			go func() {
				for sent.Load() < offer {
					// Blocked for 2 s: back-pressure reached this client.
					c.SetWriteDeadline(time.Now().Add(2 * time.Second))
					n, err := c.Write(chunk)
					sent.Add(int64(n))
					if err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("writer neither blocked nor finished")
			}
			if err == nil {
				t.Fatalf("the proxy took all of %d bytes from a client that never reads", offer)
			}
			_, during99 := r.latency(t, 300)
			during := heap()
			t.Logf("offered 1 GiB, the proxy took %d KB before back-pressure; heap %+d KB; p99 %v before, %v during",
				sent.Load()/1024, (int64(during)-int64(before))/1024, base99, during99)
			if sent.Load() > 64*mb {
				t.Errorf("the proxy read %d MB from a client that never reads", sent.Load()/mb)
			}
			if g := int64(during) - int64(before); g > 16*mb {
				t.Errorf("heap grew by %d MB", g/mb)
			}
			if during99 > 10*base99+20*time.Millisecond {
				t.Errorf("p99 of a well-behaved client went from %v to %v", base99, during99)
			}
			if wt != "" {
				// The proxy closes the client: its writes fail with a reset.
				errBefore := r.px.Snapshot().Pools[0].ClientErr
				deadline := time.Now().Add(5 * time.Second)
				for r.px.Clients() > 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := r.px.Clients(); n != 0 {
					t.Fatalf("client_write_timeout: %d clients still connected", n)
				}
				if r.logs.grep("does not read its replies") == 0 {
					t.Error("closing the client was not logged")
				}
				if r.px.Snapshot().Pools[0].ClientErr == 0 && errBefore == 0 {
					t.Error("closing the client was not counted in client_err")
				}
			}
			c.Close()
			r.waitIdle(t)
		})
	}
}

// 1,000 slowloris clients, each holding a partial request, cost a bounded
// amount of memory and do not slow a well-behaved client.
func TestSlowloris(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	partial := map[string][]string{
		"redis":    {"*3\r\n$3\r\nSET\r\n", "*1\r\n$400000000\r\nab", "GET echo:incomplete"},
		"memcache": {"set foo 0 0 2\r\n", "set foo 0 0 1000000\r\nab", "get echo:incomp"},
	}
	for _, proto := range []string{"redis", "memcache"} {
		t.Run(proto, func(t *testing.T) {
			r := newRig(t, proto, 2, "")
			_, base99 := r.latency(t, 300)
			before := heap()
			var conns []net.Conn
			for i := 0; i < n; i++ {
				c, err := net.Dial("tcp", r.addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				c.Write([]byte(partial[proto][i%len(partial[proto])]))
			}
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			deadline := time.Now().Add(10 * time.Second)
			for r.px.Clients() < int64(n) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			_, during99 := r.latency(t, 300)
			during := heap()
			per := (int64(during) - int64(before)) / int64(n)
			t.Logf("%d slowloris clients: heap %+d KB (%d bytes each, both ends of the connections in this process); p99 %v before, %v during",
				n, (int64(during)-int64(before))/1024, per, base99, during99)
			if per > 64<<10 {
				t.Errorf("%d bytes of heap per stalled client", per)
			}
			if during99 > 10*base99+20*time.Millisecond {
				t.Errorf("p99 of a well-behaved client went from %v to %v", base99, during99)
			}
			for _, c := range conns {
				c.Close()
			}
			r.waitIdle(t)
		})
	}
}

// The worker process: RSS of a real nuthatch worker does not move when
// clients declare huge lengths (the in-process tests above measure the
// heap; this one measures what the kernel charges).
func TestWorkerRSSOversized(t *testing.T) {
	w := startBinaryRig(t)
	rss := func() int64 { return vmRSS(t, w.worker(t)) }
	// Warm up the connections and buffers the worker keeps anyway.
	for i := 0; i < 50; i++ {
		c := w.dial(t, w.redisAddr)
		c.send(t, redisCmd("SET", fmt.Sprint("warm", i), "v"))
		c.redisReply()
		c.Close()
	}
	before := rss()
	var conns []*client
	for i := 0; i < 50; i++ {
		c := w.dial(t, w.redisAddr)
		c.send(t, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\n"+strings.Repeat("x", 4000))
		conns = append(conns, c)
		m := w.dial(t, w.mcAddr)
		m.send(t, "set k 0 0 1000000\r\n"+strings.Repeat("x", 4000))
		conns = append(conns, m)
		big := w.dial(t, w.redisAddr)
		big.send(t, "*2000000000\r\n*1\r\n$2000000000\r\n")
		big.Close()
	}
	time.Sleep(300 * time.Millisecond)
	after := rss()
	t.Logf("worker VmRSS %d KB before, %d KB with 100 stalled oversized requests", before, after)
	if after-before > 16*1024 {
		t.Errorf("worker RSS grew by %d KB", after-before)
	}
	for _, c := range conns {
		c.Close()
	}
}

// vmRSS reads VmRSS (KB) from /proc/<pid>/status.
func vmRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%d", &kb)
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// A client pipelining GETs of a large value without reading its replies:
// the proxy holds at most one batch (maxBatch requests) of replies for it,
// not every request it managed to read (twemproxy #203).
func TestBigRepliesToAClientThatNeverReads(t *testing.T) {
	r := newRig(t, "redis", 1, "")
	big := strings.Repeat("v", 100<<10)
	c := r.dial(t)
	c.send(t, redisCmd("SET", "big", big))
	if rep, err := c.redisReply(); err != nil || rep != "+OK\r\n" {
		t.Fatalf("set: %q %v", rep, err)
	}
	before := heap()
	chunk := []byte(strings.Repeat(redisCmd("GET", "big"), 1000))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	time.Sleep(3 * time.Second)
	grew := int64(heap()) - int64(before)
	forwarded := r.backends[0].Requests() - 1 // the SET
	close(stop)
	wg.Wait()
	t.Logf("%d GETs forwarded, heap grew %d MB while a client pipelined GETs of a 100 KB value without reading",
		forwarded, grew>>20)
	// At most one batch (256 requests) is in flight for the client, so the
	// proxy holds at most 256 replies of 100 KB for it (plus the replies the
	// kernel's socket buffers took). Before the bound, every request of
	// each 16 KiB read was forwarded (about 1,800 per read) and held.
	if forwarded > 2*256 {
		t.Errorf("%d GETs forwarded for a client that reads nothing", forwarded)
	}
	c.Close()
	r.waitIdle(t)
}

// client_connections is the pool's limit however many workers share the
// pool (#23): with 2 workers and a limit of 5, 5 of 20 clients are
// admitted (each worker applied the limit to its own clients: 10 of 20),
// a closed client makes room for one more, and a worker killed with
// SIGKILL while holding clients leaves no count behind: after its
// respawn the pool admits exactly as many as it lost.
func TestClientConnectionsAcrossWorkers(t *testing.T) {
	be := fakeserver.New(t, fakeserver.Redis)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	p := harness.Nuthatch(t, fmt.Sprintf("worker_processes = 2\nstats {\n  listen = \"\"\n}\n"+
		"pool \"r\" {\n  listen = %q\n  protocol = \"redis\"\n  client_connections = 5\n  timeout = \"1s\"\n  server %q {}\n}\n", addr, be.Addr()), addr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nuthatch output:\n%s", p.Output())
		}
	})
	master := p.Cmd.Process.Pid
	waitFor(t, "both workers ready", func() bool {
		return strings.Contains(p.Output(), "workers ready") && len(harness.Children(master)) == 2
	})
	time.Sleep(200 * time.Millisecond) // WaitPort's probe is closed and uncounted

	held := admit(t, addr, 20)
	workers := harness.Children(master)
	t.Logf("client_connections = 5, 2 workers: %d of 20 admitted, spread %v", len(held), spread(t, held, workers, addr))
	if len(held) != 5 {
		t.Fatalf("%d of 20 clients admitted with client_connections = 5 over 2 workers", len(held))
	}

	held[0].Close()
	held[1].Close()
	held = held[2:]
	time.Sleep(200 * time.Millisecond) // the worker reads their EOF
	more := admit(t, addr, 20)
	if len(more) != 2 {
		t.Fatalf("after closing 2 of 5, %d more admitted, want 2", len(more))
	}
	held = append(held, more...)

	// Kill the worker holding the most clients.
	owners := spread(t, held, workers, addr)
	victim, lost := 0, 0
	for pid, n := range owners {
		if n > lost {
			victim, lost = pid, n
		}
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed worker respawned", func() bool {
		c := harness.Children(master)
		return len(c) == 2 && !slices.Contains(c, victim)
	})
	// Its clients are gone with it; the others stay.
	closed := 0
	var survivors []*client
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.r.ReadByte(); err == io.EOF || isReset(err) {
			closed++
		} else {
			c.SetReadDeadline(time.Time{})
			survivors = append(survivors, c)
		}
	}
	if closed != lost {
		t.Fatalf("killing the worker holding %d clients closed %d", lost, closed)
	}
	again := admit(t, addr, 20)
	t.Logf("worker holding %d of 5 clients killed: %d admitted after its respawn", lost, len(again))
	if len(again) != lost {
		t.Fatalf("after the worker holding %d clients was killed, %d admitted, want %d (its count leaked)", lost, len(again), lost)
	}
	if !strings.Contains(p.Output(), "clients_uncounted") {
		t.Error("the dead worker's clients were not uncounted")
	}

	// A reload: the old generation drains 5 clients waiting for replies
	// (the backend stalls them until the pool's 1 s timeout); the new
	// one counts them and admits nobody until they are gone, then 5.
	held = append(survivors, again...)
	be.SetMode(fakeserver.Stall)
	for _, c := range held {
		c.send(t, redisCmd("GET", "stalled"))
	}
	time.Sleep(100 * time.Millisecond)
	p.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(p.Output(), "configuration reloaded") })
	be.SetMode(fakeserver.Normal)
	during := admit(t, addr, 20)
	t.Logf("reload with 5 clients draining on the old generation: %d of 20 admitted by the new one", len(during))
	if len(during) != 0 {
		t.Fatalf("the new generation admitted %d clients beside the old one's 5", len(during))
	}
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if rep, err := c.redisReply(); !strings.Contains(rep, "timed out") {
			t.Fatalf("stalled GET: %q, %v", rep, err)
		}
	}
	waitFor(t, "the old generation's exit", func() bool { return len(harness.Children(master)) == 2 })
	time.Sleep(200 * time.Millisecond)
	// Answered, the 5 were handed over to the new generation with their
	// sockets (issue #24): still served, still counted; once they leave,
	// 5 new clients are admitted.
	for _, c := range held {
		c.send(t, redisCmd("PING"))
		if rep, err := c.redisReply(); rep != "+PONG\r\n" {
			t.Fatalf("a drained client after the hand-over: %q, %v", rep, err)
		}
	}
	if after := admit(t, addr, 20); len(after) != 0 {
		t.Fatalf("beside the 5 handed over, %d of 20 admitted", len(after))
	}
	for _, c := range held {
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	if after := admit(t, addr, 20); len(after) != 5 {
		t.Fatalf("after the handed-over clients left, %d of 20 admitted, want 5", len(after))
	}
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset by peer") }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// admit connects n clients and returns those admitted: refused ones get
// the limit's error and are closed, admitted ones get nothing until they
// send (then PING answers PONG).
func admit(t testing.TB, addr string, n int) []*client {
	t.Helper()
	var conns []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	const refusal = "-ERR max number of clients reached\r\n"
	// Read all at once: a deadline that has passed fails a read at once,
	// even of bytes that wait.
	got := make([]string, n)
	ok := make([]bool, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
			buf := make([]byte, len(refusal))
			k, err := io.ReadFull(c, buf)
			ne, timeout := err.(net.Error)
			ok[i] = timeout && ne.Timeout() && k == 0
			got[i] = fmt.Sprintf("%q, %v", buf[:k], err)
		}()
	}
	wg.Wait()
	var admitted []*client
	for i, c := range conns {
		if ok[i] {
			c.SetReadDeadline(time.Time{})
			admitted = append(admitted, &client{Conn: c, r: bufio.NewReader(c)})
			continue
		}
		if got[i] != fmt.Sprintf("%q, %v", refusal, nil) {
			t.Fatalf("refused client got %s", got[i])
		}
		c.Close()
	}
	for _, c := range admitted {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.send(t, redisCmd("PING"))
		if rep, err := c.redisReply(); rep != "+PONG\r\n" {
			t.Fatalf("admitted client %v: PING got %q, %v (%d admitted)", c.LocalAddr(), rep, err, len(admitted))
		}
		c.SetDeadline(time.Time{})
	}
	return admitted
}

// spread counts the clients each worker holds, by finding each client's
// peer socket in /proc/net/tcp and its inode among the workers' fds.
func spread(t testing.TB, clients []*client, workers []int, addr string) map[int]int {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	proxyPort, _ := strconv.Atoi(port)
	inodes := map[int]string{} // client port -> the proxy's socket inode
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	hexPort := func(a string) int {
		i := strings.LastIndexByte(a, ':')
		v, _ := strconv.ParseInt(a[i+1:], 16, 32)
		return int(v)
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 9 && hexPort(f[1]) == proxyPort && f[3] == "01" { // ESTABLISHED
			inodes[hexPort(f[2])] = f[9]
		}
	}
	owner := map[string]int{} // inode -> worker pid
	for _, pid := range workers {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, e := range ents {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
				owner[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = pid
			}
		}
	}
	out := map[int]int{}
	for _, c := range clients {
		pid := owner[inodes[c.LocalAddr().(*net.TCPAddr).Port]]
		out[pid]++
	}
	return out
}
