package reliability

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
	"github.com/nuthatch-proxy/nuthatch/test/fakeserver"
)

// tagged runs clients that each send tagged requests (a unique echo key
// per request) and checks every reply: it is either the request's own
// value or an error, and errors are allowed only for keys owned by a
// faulty backend. It returns the count of ok and failed requests.
type tagged struct {
	r       *rig
	faulty  atomic.Int32 // index of the faulty backend, -1 for none
	ok, bad atomic.Int64
	wrong   atomic.Int64 // replies that belong to no request or another one
	misErr  atomic.Int64 // errors for keys on healthy backends
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []string
}

func startTagged(t *testing.T, r *rig, clients int) *tagged {
	tg := &tagged{r: r, stop: make(chan struct{})}
	tg.faulty.Store(-1)
	for ci := 0; ci < clients; ci++ {
		c := r.dial(t)
		tg.wg.Add(1)
		go func() {
			defer tg.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-tg.stop:
					return
				default:
				}
				key := fmt.Sprintf("echo:%d:%d", ci, i)
				owner := r.owner(key)
				req, want := echoGet(r.proto, key)
				faultyBefore := tg.faulty.Load()
				if _, err := c.Write([]byte(req)); err != nil {
					tg.note("write: " + err.Error())
					return
				}
				got, err := c.reply(r.proto)
				faultyAfter := tg.faulty.Load()
				switch {
				case err != nil:
					tg.note(fmt.Sprintf("read: %v", err))
					tg.wrong.Add(1)
					return
				case got == want:
					tg.ok.Add(1)
				case strings.HasPrefix(got, "-ERR ") || strings.HasPrefix(got, "SERVER_ERROR "):
					tg.bad.Add(1)
					if int32(owner) != faultyBefore && int32(owner) != faultyAfter {
						tg.misErr.Add(1)
						tg.note(fmt.Sprintf("error for %s on healthy backend %d: %q", key, owner, got))
					}
				default:
					tg.wrong.Add(1)
					tg.note(fmt.Sprintf("%s got %q", key, got))
				}
			}
		}()
	}
	return tg
}

func (tg *tagged) note(s string) {
	tg.mu.Lock()
	if len(tg.samples) < 5 {
		tg.samples = append(tg.samples, s)
	}
	tg.mu.Unlock()
}

func (tg *tagged) finish(t *testing.T) {
	t.Helper()
	close(tg.stop)
	tg.wg.Wait()
	t.Logf("%d ok, %d errors, %d wrong replies, %d errors on healthy backends", tg.ok.Load(), tg.bad.Load(), tg.wrong.Load(), tg.misErr.Load())
	if tg.wrong.Load() > 0 || tg.misErr.Load() > 0 {
		t.Errorf("%d wrong replies, %d errors for keys on healthy backends: %v", tg.wrong.Load(), tg.misErr.Load(), tg.samples)
	}
	if tg.ok.Load() == 0 {
		t.Error("no request succeeded")
	}
}

// Each fault of one backend fails only the requests routed to it, with an
// error in the protocol's words; nobody gets someone else's reply; the
// backend serves again once healthy.
func TestBackendFaults(t *testing.T) {
	for _, proto := range []string{"redis", "memcache"} {
		t.Run(proto, func(t *testing.T) {
			r := newRig(t, proto, 3, `  timeout = "300ms"`)
			tg := startTagged(t, r, 6)
			victim := r.backends[1]
			for _, fault := range []struct {
				name  string
				apply func()
			}{
				{"stall", func() { victim.SetMode(fakeserver.Stall) }},
				{"reset", func() { victim.SetMode(fakeserver.Reset) }},
				{"garbage", func() { victim.SetMode(fakeserver.Garbage) }},
				{"slower than the timeout", func() { victim.SetDelay(time.Second); victim.SetMode(fakeserver.Slow) }},
				{"killed", func() { victim.Stop() }},
			} {
				time.Sleep(100 * time.Millisecond)
				okBefore, badBefore := tg.ok.Load(), tg.bad.Load()
				tg.faulty.Store(1)
				fault.apply()
				time.Sleep(600 * time.Millisecond)
				if fault.name == "killed" {
					if err := victim.Start(); err != nil {
						t.Fatal(err)
					}
				}
				victim.SetMode(fakeserver.Normal)
				// Requests failed under the fault finish within the timeout.
				time.Sleep(400 * time.Millisecond)
				tg.faulty.Store(-1)
				t.Logf("%s: %d ok, %d errors", fault.name, tg.ok.Load()-okBefore, tg.bad.Load()-badBefore)
				if tg.bad.Load() == badBefore {
					t.Errorf("%s: no request failed", fault.name)
				}
			}
			// Healthy again: a clean window without a single error.
			time.Sleep(200 * time.Millisecond)
			badBefore := tg.bad.Load()
			time.Sleep(500 * time.Millisecond)
			if n := tg.bad.Load() - badBefore; n > 0 {
				t.Errorf("%d errors after every backend recovered", n)
			}
			tg.finish(t)
			if r.logs.grep("level=error") > 0 {
				t.Errorf("error-level log lines: %v", r.logs.lines)
			}
		})
	}
}

// With auto_eject_hosts a dead backend is ejected after
// server_failure_limit failures, retried every server_retry_timeout, and
// re-admitted for good once it answers: no flapping.
func TestEjectionAndReadmission(t *testing.T) {
	r := newRig(t, "redis", 3, `  timeout = "300ms"
  auto_eject_hosts = true
  server_failure_limit = 2
  server_retry_timeout = "300ms"`)
	tg := startTagged(t, r, 4)
	time.Sleep(100 * time.Millisecond)
	victim := r.backends[1]
	tg.faulty.Store(1)
	victim.Stop()
	time.Sleep(1500 * time.Millisecond)
	down := r.px.Snapshot().Pools[0]
	// While down: ejected, retried about every retry timeout, and keys of
	// the dead server go to the others (echo keys answer anywhere).
	if down.ServerEjects == 0 {
		t.Fatal("a dead server was never ejected")
	}
	if down.ServerEjects > 8 {
		t.Errorf("%d ejections in 1.5 s with a 300 ms retry: flapping", down.ServerEjects)
	}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	tg.faulty.Store(-1)
	back := r.px.Snapshot().Pools[0]
	reqBefore := victim.Requests()
	time.Sleep(time.Second)
	after := r.px.Snapshot().Pools[0]
	if after.ServerEjects != back.ServerEjects {
		t.Errorf("ejected again after recovery: %d -> %d", back.ServerEjects, after.ServerEjects)
	}
	if victim.Requests() == reqBefore {
		t.Error("the recovered server gets no traffic")
	}
	t.Logf("ejections while down: %d; after recovery: %d", down.ServerEjects, after.ServerEjects)
	tg.finish(t)
}

// Every backend down with auto-eject on: errors, no crash, and service
// resumes when they return.
func TestAllBackendsDown(t *testing.T) {
	for _, eject := range []string{"false", "true"} {
		t.Run("auto_eject_hosts="+eject, func(t *testing.T) {
			r := newRig(t, "memcache", 2, `  timeout = "300ms"
  auto_eject_hosts = `+eject+`
  server_failure_limit = 1
  server_retry_timeout = "200ms"`)
			for _, be := range r.backends {
				be.Stop()
			}
			c := r.dial(t)
			for i := 0; i < 50; i++ {
				c.send(t, "get echo:a echo:b echo:c\r\n")
				got, err := c.reply("memcache")
				if err != nil {
					// A failed multi-get closes the client, as twemproxy.
					c = r.dial(t)
					continue
				}
				if !strings.HasPrefix(got, "SERVER_ERROR ") {
					t.Fatalf("all down: %q", got)
				}
			}
			for _, be := range r.backends {
				if err := be.Start(); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				c := r.dial(t)
				req, want := echoGet("memcache", "echo:back")
				c.send(t, req)
				got, _ := c.reply("memcache")
				c.Close()
				if got == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no service after the backends returned: %q", got)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// The latency histograms match a load with a known delay injected at the
// backend: every request lands in the bucket that holds the delay.
func TestLatencyHistogramsMatchInjectedDelay(t *testing.T) {
	r := newRig(t, "redis", 1, `timeout = "2s"`)
	r.backends[0].SetDelay(30 * time.Millisecond)
	r.backends[0].SetMode(fakeserver.Slow)
	c := r.dial(t)
	for i := 0; i < 20; i++ {
		req, want := echoGet("redis", fmt.Sprintf("echo:delay-%d", i))
		c.send(t, req)
		if got, err := c.redisReply(); err != nil || got != want {
			t.Fatalf("reply %q %v, want %q", got, err, want)
		}
	}
	p := r.px.Snapshot().Pools[0]
	s := p.Servers[0]
	for name, h := range map[string]proxy.HistogramSnapshot{"pool": p.RequestLatency, "server": s.ServerLatency} {
		if h.Count() != 20 {
			t.Errorf("%s histogram counted %d requests, want 20", name, h.Count())
		}
		// Nothing can be faster than the delay: every bucket up to 25 ms is
		// empty. (A busy machine may make some requests slower, never
		// faster, so the upper side is only bounded loosely.)
		for i, b := range proxy.LatencyBounds {
			if b <= 25_000 && h.Counts[i] != 0 {
				t.Errorf("%s: %d requests faster than %d µs with a 30 ms delay", name, h.Counts[i], b)
			}
		}
		if got := h.Quantile(0.5); got < 50_000 || got > 250_000 {
			t.Errorf("%s p50 = %d µs for a 30 ms delay", name, got)
		}
		if mean := h.SumUs / h.Count(); mean < 30_000 {
			t.Errorf("%s mean %d µs for a 30 ms delay", name, mean)
		}
	}
	if got := p.Commands["get"]; got != 20 {
		t.Errorf("commands[get] = %d, want 20", got)
	}
}
