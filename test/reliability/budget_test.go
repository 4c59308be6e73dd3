package reliability

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// budgetValue is client i's SET value.
func budgetValue(i, n int) []byte {
	v := bytes.Repeat([]byte(fmt.Sprintf("%08d", i)), n/8+1)
	return v[:n]
}

// expect reads len(want) bytes from r and compares them with want.
func expect(r *bufio.Reader, want []byte, buf []byte) error {
	for len(want) > 0 {
		n, err := io.ReadFull(r, buf[:min(len(buf), len(want))])
		if !bytes.Equal(buf[:n], want[:n]) {
			return fmt.Errorf("reply differs")
		}
		if err != nil {
			return err
		}
		want = want[n:]
	}
	return nil
}

// worker_output_budget with many clients pipelining large GETs and SETs at
// once (issue #23): every client connects, then all send a SET of their
// own value, GETs of two 200 KiB values (under the streaming threshold,
// so held whole) and a GET of their value, and read nothing for a while;
// then all read. The worker's RSS over its RSS with the clients connected
// and idle must stay under the budget plus a margin: the replies of
// requests already read when the budget was reached and the partial
// requests in the clients' read buffers. Every reply is checked. The short
// version (1,000 clients) runs in make test; NUTHATCH_BIG=1 (make soak)
// runs 10,000.
func TestWorkerBudgetManyClients(t *testing.T) {
	// The margin (docs/reliability.md): Go's heap goal is twice the live
	// heap, and 10,000 clients' read buffers and msgs are live too.
	clients, budgetMiB, marginMiB := 1000, 32, int64(112)
	if os.Getenv("NUTHATCH_BIG") != "" {
		clients, budgetMiB, marginMiB = 10000, 64, 512
	}
	const bigLen, setLen = 200 << 10, 32 << 10
	r := startBigRigWith(t, "redis", fmt.Sprintf("worker_output_budget = \"%dmb\"", budgetMiB), "")
	var bigs [2]string
	var bigWant [2][]byte
	for i := range bigs {
		bigs[i] = r.keyOn("budget-big", i)
		v := bigValue(int64(50+i), bigLen)
		setDirect(t, "redis", r.servers[i], bigs[i], v)
		bigWant[i] = append([]byte(fmt.Sprintf("$%d\r\n", bigLen)), append(v, "\r\n"...)...)
	}
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns[i] = c
		defer c.Close()
	}
	// Every client connected and served once: the idle baseline.
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			io.WriteString(c, redisCmd("PING"))
			var b [7]byte
			if _, err := io.ReadFull(c, b[:]); err != nil || string(b[:]) != "+PONG\r\n" {
				t.Errorf("client %d: %q %v", i, b, err)
			}
		}(i, c)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	time.Sleep(500 * time.Millisecond)
	base := r.workerRSS(t)
	var peak atomic.Int64
	peak.Store(base)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss := r.workerRSS(t); rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	// All at once, reading nothing.
	t0 := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			key := fmt.Sprintf("budget:%d", i)
			var b bytes.Buffer
			b.WriteString(redisCmd("SET", key, string(budgetValue(i, setLen))))
			b.WriteString(redisCmd("GET", bigs[0]) + redisCmd("GET", bigs[1]) + redisCmd("GET", key))
			if _, err := c.Write(b.Bytes()); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}(i, c)
	}
	wg.Wait()
	time.Sleep(2 * time.Second)
	stalled := peak.Load()
	// Now everyone reads.
	var bad atomic.Int64
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			br := bufio.NewReaderSize(c, 16<<10)
			buf := make([]byte, 16<<10)
			own := append([]byte(fmt.Sprintf("$%d\r\n", setLen)), append(budgetValue(i, setLen), "\r\n"...)...)
			for j, want := range [][]byte{[]byte("+OK\r\n"), bigWant[0], bigWant[1], own} {
				if err := expect(br, want, buf); err != nil {
					if bad.Add(1) <= 5 {
						t.Errorf("client %d reply %d: %v", i, j, err)
					}
					return
				}
			}
		}(i, c)
	}
	wg.Wait()
	close(stop)
	<-sampled
	growth := (peak.Load() - base) >> 10
	t.Logf("%d clients, worker_output_budget %d MiB: worker RSS %d MiB connected and idle, peak +%d MiB while no client read (+%d MiB overall, bound %d+%d MiB); %d MiB of replies delivered in %v, %d clients with a wrong reply",
		clients, budgetMiB, base>>10, (stalled-base)>>10, growth, budgetMiB, marginMiB,
		int64(clients)*(2*bigLen+setLen)>>20, time.Since(t0).Round(time.Millisecond), bad.Load())
	if growth > int64(budgetMiB)+marginMiB {
		t.Errorf("worker RSS grew by %d MiB, over the budget %d MiB + %d MiB", growth, budgetMiB, marginMiB)
	}
}
