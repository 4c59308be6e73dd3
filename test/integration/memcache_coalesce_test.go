package integration

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// coalesceValue is key k's value: its length varies with k, and keys
// ending in 7 are never stored (misses).
func coalesceValue(k int) (string, bool) {
	return strings.Repeat(strconv.Itoa(k%10), 1+k%37*9), k%10 != 7
}

// TestMemcacheCoalescedGetsConcurrent: clients pipelining gets (single and
// multi-key, with repeats and misses), gets and sets at once through real
// memcacheds, where gets of different clients share lines, each receive
// exactly the replies memcached would give them alone.
func TestMemcacheCoalescedGetsConcurrent(t *testing.T) {
	for _, tc := range []struct{ name, attrs string }{
		{"one connection per server", ""},
		{"two connections per server", "server_connections = 2"},
	} {
		t.Run(tc.name, func(t *testing.T) { coalescedGetsConcurrent(t, tc.attrs) })
	}
}

func coalescedGetsConcurrent(t *testing.T, attrs string) {
	mp := startMemcachePool(t, 2, attrs)
	const keys = 300
	seed := dialRaw(t, mp.addr)
	for k := range keys {
		if v, ok := coalesceValue(k); ok {
			seed.send(fmt.Sprintf("set ck%d %d 0 %d\r\n%s\r\n", k, k, len(v), v))
			seed.expect("STORED\r\n")
		}
	}
	const clients, rounds = 24, 40
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for ci := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := coalesceClient(mp.addr, ci, rounds, keys); err != nil {
				errs <- fmt.Errorf("client %d: %w", ci, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func coalesceClient(addr string, ci, rounds, keys int) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	rng := rand.New(rand.NewPCG(uint64(ci), 7))
	own := fmt.Sprintf("own%d", ci) // a key only this client writes
	for round := range rounds {
		var req, want strings.Builder
		for range 1 + rng.IntN(12) {
			switch op := rng.IntN(10); {
			case op == 0:
				v := strconv.Itoa(round)
				fmt.Fprintf(&req, "set %s 0 0 %d\r\n%s\r\n", own, len(v), v)
				want.WriteString("STORED\r\n")
			case op == 1:
				req.WriteString("gets " + own + "\r\n")
				want.WriteString("\x00gets\r\n") // checked below: cas varies
			default:
				n := 1
				if op > 6 {
					n = 1 + rng.IntN(8)
				}
				req.WriteString("get")
				for range n {
					k := rng.IntN(keys)
					if rng.IntN(8) == 0 {
						k = rng.IntN(3) // repeats
					}
					fmt.Fprintf(&req, " ck%d", k)
					if v, ok := coalesceValue(k); ok {
						fmt.Fprintf(&want, "VALUE ck%d %d %d\r\n%s\r\n", k, k, len(v), v)
					}
				}
				req.WriteString("\r\n")
				want.WriteString("END\r\n")
			}
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req.String()); err != nil {
			return err
		}
		for _, part := range strings.SplitAfter(want.String(), "\x00gets\r\n") {
			exact, isGets := strings.CutSuffix(part, "\x00gets\r\n")
			got := make([]byte, len(exact))
			if _, err := io.ReadFull(r, got); err != nil || string(got) != exact {
				return fmt.Errorf("round %d: got %q (%v), want %q", round, got, err, exact)
			}
			if isGets {
				if err := readGets(r, own); err != nil {
					return fmt.Errorf("round %d: %w", round, err)
				}
			}
		}
	}
	return nil
}

// readGets reads the reply to "gets own": END, or one VALUE with a cas.
func readGets(r *bufio.Reader, own string) error {
	line, err := r.ReadString('\n')
	if err != nil || line == "END\r\n" {
		return err
	}
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "VALUE" || f[1] != own {
		return fmt.Errorf("gets: %q", line)
	}
	n, _ := strconv.Atoi(f[3])
	rest := make([]byte, n+2+len("END\r\n"))
	if _, err := io.ReadFull(r, rest); err != nil || !strings.HasSuffix(string(rest), "\r\nEND\r\n") {
		return fmt.Errorf("gets: %q %q (%v)", line, rest, err)
	}
	return nil
}

// TestMemcacheCoalescedGetsReachMemcached: with coalesce_gets on, memcached
// reads a pipeline of single-key gets as shared lines (fewer bytes than the
// client sent); off, it reads the client's bytes.
func TestMemcacheCoalescedGetsReachMemcached(t *testing.T) {
	for _, tc := range []struct {
		name, attrs string
		min, max    float64 // bytes memcached read / bytes the client sent
	}{
		{"on", "", 0.3, 0.7},
		{"off", "coalesce_gets = false", 1, 1.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mp := startMemcachePool(t, 1, tc.attrs)
			read := func() int {
				c := dialRaw(t, mp.backends[0].Addr)
				c.send("stats\r\n")
				for {
					line, err := c.r.ReadString('\n')
					if err != nil || line == "END\r\n" {
						t.Fatalf("no bytes_read in stats (%v)", err)
					}
					if v, ok := strings.CutPrefix(line, "STAT bytes_read "); ok {
						n, _ := strconv.Atoi(strings.TrimSpace(v))
						return n
					}
				}
			}
			c := dialRaw(t, mp.addr)
			c.send("get warm\r\n") // the proxy's link is up before counting
			c.expect("END\r\n")
			before := read()
			var req, want strings.Builder
			for k := range 200 {
				fmt.Fprintf(&req, "get k%d\r\n", k)
				want.WriteString("END\r\n")
			}
			c.send(req.String())
			c.expect(want.String())
			got := float64(read()-before-len("stats\r\n")) / float64(req.Len())
			if got < tc.min || got > tc.max {
				t.Fatalf("memcached read %.2f of the bytes sent, want %.2f to %.2f", got, tc.min, tc.max)
			}
		})
	}
}
