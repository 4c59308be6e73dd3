package reliability

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// mixedPipeline builds a long pipeline of tagged requests spanning every
// backend (single-key GET/SET, MGET or multi-get across servers) and the
// exact bytes the proxy must answer.
func mixedPipeline(proto string, n int) (req, want string) {
	var rq, wt strings.Builder
	for i := 0; i < n; i++ {
		a, b, c := fmt.Sprintf("echo:%d:a", i), fmt.Sprintf("echo:%d:b", i), fmt.Sprintf("echo:%d:c", i)
		k, v := fmt.Sprintf("k:%d", i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("v", i%50))
		if proto == "memcache" {
			switch i % 3 {
			case 0:
				r, w := echoGet(proto, a)
				rq.WriteString(r)
				wt.WriteString(w)
			case 1:
				fmt.Fprintf(&rq, "set %s 0 0 %d\r\n%s\r\nget %s\r\n", k, len(v), v, k)
				fmt.Fprintf(&wt, "STORED\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n", k, len(v), v)
			case 2:
				fmt.Fprintf(&rq, "get %s %s %s\r\n", a, b, c)
				for _, x := range []string{a, b, c} {
					fmt.Fprintf(&wt, "VALUE %s 0 %d\r\n%s\r\n", x, len(x), x)
				}
				wt.WriteString("END\r\n")
			}
			continue
		}
		switch i % 3 {
		case 0:
			rq.WriteString(redisCmd("GET", a))
			wt.WriteString(bulk(a))
		case 1:
			rq.WriteString(redisCmd("SET", k, v) + redisCmd("GET", k))
			wt.WriteString("+OK\r\n" + bulk(v))
		case 2:
			rq.WriteString(redisCmd("MGET", a, b, c))
			wt.WriteString("*3\r\n" + bulk(a) + bulk(b) + bulk(c))
		}
	}
	return rq.String(), wt.String()
}

// A long mixed pipeline delivered in random pieces, with pauses, gets
// byte-identical replies whatever the split.
func TestRandomFragmentationEndToEnd(t *testing.T) {
	for _, proto := range []string{"redis", "memcache"} {
		t.Run(proto, func(t *testing.T) {
			r := newRig(t, proto, 3, "")
			bigReq, bigWant := mixedPipeline(proto, 3000)
			smallReq, smallWant := mixedPipeline(proto, 300)
			rng := rand.New(rand.NewPCG(1, uint64(len(proto))))
			for round := 0; round < 10; round++ {
				maxPiece := []int{1, 7, 100, 4096, 65536}[round%5]
				// Byte-sized pieces cost a syscall each: a shorter pipeline.
				req, want := bigReq, bigWant
				if maxPiece < 100 {
					req, want = smallReq, smallWant
				}
				c := r.dial(t)
				got := make(chan []byte, 1)
				go func() {
					c.SetReadDeadline(time.Now().Add(30 * time.Second))
					b, _ := io.ReadAll(io.LimitReader(c, int64(len(want))))
					got <- b
				}()
				for rest := req; len(rest) > 0; {
					n := min(len(rest), 1+rng.IntN(maxPiece))
					c.send(t, rest[:n])
					rest = rest[n:]
					if rng.IntN(200) == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				b := <-got
				if string(b) != want {
					i := 0
					for i < len(b) && i < len(want) && b[i] == want[i] {
						i++
					}
					t.Fatalf("round %d (pieces up to %d bytes): reply differs at byte %d of %d: got %q, want %q",
						round, maxPiece, i, len(want), b[i:min(len(b), i+80)], want[i:min(len(want), i+80)])
				}
				c.Close()
			}
			r.waitIdle(t)
		})
	}
}

// Clients that disconnect mid-pipeline, mid-multi-get and mid-value leave
// nothing behind: no goroutine, no client, no queued request, and the
// backend links stay in step (a later request gets its own reply).
func TestClientDisconnectMidFlight(t *testing.T) {
	for _, proto := range []string{"redis", "memcache"} {
		t.Run(proto, func(t *testing.T) {
			r := newRig(t, proto, 3, `  timeout = "5s"`)
			// Establish every backend link (one reader goroutine each).
			for i := range r.backends {
				c := r.dial(t)
				req, want := echoGet(proto, r.keyOn("echo:warm:", i))
				c.send(t, req)
				if got, err := c.reply(proto); err != nil || got != want {
					t.Fatalf("warm-up: %q %v", got, err)
				}
				c.Close()
			}
			r.waitIdle(t)
			base := runtime.NumGoroutine()
			for _, be := range r.backends {
				be.SetMode(0)
			}
			pipe, _ := mixedPipeline(proto, 200)
			multi := redisCmd("MGET", "echo:m1", "echo:m2", "echo:m3", "echo:m4", "echo:m5")
			value := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n" + strings.Repeat("x", 50)
			if proto == "memcache" {
				multi = "get echo:m1 echo:m2 echo:m3 echo:m4 echo:m5\r\n"
				value = "set k 0 0 100\r\n" + strings.Repeat("x", 50)
			}
			rng := rand.New(rand.NewPCG(2, 3))
			for i := 0; i < 150; i++ {
				// Slow backends keep requests in flight when the client goes.
				slow := i%2 == 0
				for _, be := range r.backends {
					if slow {
						be.SetDelay(time.Duration(rng.IntN(20)) * time.Millisecond)
						be.SetMode(4) // fakeserver.Slow
					} else {
						be.SetMode(0)
					}
				}
				c, err := net.Dial("tcp", r.addr)
				if err != nil {
					t.Fatal(err)
				}
				switch i % 3 {
				case 0:
					c.Write([]byte(pipe[:rng.IntN(len(pipe))]))
				case 1:
					c.Write([]byte(multi))
				case 2:
					c.Write([]byte(value))
				}
				if rng.IntN(2) == 0 {
					time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
				}
				if rng.IntN(3) == 0 {
					c.(*net.TCPConn).SetLinger(0) // reset rather than FIN
				}
				c.Close()
			}
			for _, be := range r.backends {
				be.SetMode(0)
			}
			r.waitIdle(t)
			goroutinesBack(t, base)
			// Every link is in step: tagged requests get their own replies.
			c := r.dial(t)
			for i := 0; i < 300; i++ {
				req, want := echoGet(proto, fmt.Sprintf("echo:after:%d", i))
				c.send(t, req)
				if got, err := c.reply(proto); err != nil || got != want {
					t.Fatalf("request %d after the disconnects: %q, %v; want %q", i, got, err, want)
				}
			}
			c.Close()
			r.waitIdle(t)
			s := r.px.Snapshot().Pools[0]
			for _, sv := range s.Servers {
				if sv.InQueue != 0 || sv.OutQueue != 0 {
					t.Errorf("server %s: in_queue %d out_queue %d", sv.Name, sv.InQueue, sv.OutQueue)
				}
			}
			if r.logs.grep("level=error") > 0 {
				t.Errorf("error-level log lines: %v", r.logs.lines)
			}
		})
	}
}
