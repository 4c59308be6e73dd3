// Package proxy is nuthatch's proxy engine: it accepts clients on the
// listeners it is given, routes each request to the backend server that owns
// its key and returns the replies in request order.
//
// The engine knows nothing of processes, masters or systemd: a worker (or
// the single-process mode) builds a Proxy from a validated configuration,
// hands it listeners, and later drains or closes it.
package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// Proxy serves every pool of one configuration.
type Proxy struct {
	log     *logrus.Entry
	pools   map[string]*pool
	order   []*pool
	lp      *loop
	running sync.Once
	once    sync.Once
}

// New builds a proxy for cfg. Nothing is started until Start or Serve.
func New(cfg *config.Config, log *logrus.Entry) (*Proxy, error) {
	lp, err := newLoop()
	if err != nil {
		return nil, err
	}
	px := &Proxy{log: log, pools: make(map[string]*pool), lp: lp}
	for _, pc := range cfg.Pools {
		p, err := newPool(pc, log, lp, cfg.TLSFiles)
		if err != nil {
			unix.Close(lp.epfd)
			unix.Close(lp.evfd)
			return nil, fmt.Errorf("proxy: %w", err)
		}
		px.pools[pc.Name] = p
		px.order = append(px.order, p)
		lp.pools = append(lp.pools, p)
		lp.tick = min(lp.tick, p.tickPeriod())
	}
	lp.scratch = make([]byte, scratchSize)
	lp.budget = int(cfg.WorkerOutputBudget)
	return px, nil
}

func (px *Proxy) run() {
	px.running.Do(func() {
		px.lp.started.Store(true)
		go px.lp.run()
	})
}

// Start starts the event loop and opens preconnected server connections.
func (px *Proxy) Start() {
	px.run()
	px.lp.post(func() {
		for _, p := range px.order {
			p.start()
		}
	})
}

// Serve accepts the clients of the named pool on ln, in the background.
// A pool may be served on several listeners (one per SO_REUSEPORT socket).
// The proxy owns ln from then on and closes it when it drains. The clients
// speak TLS when the pool has a tls block without a listen of its own.
func (px *Proxy) Serve(poolName string, ln net.Listener) error {
	p, ok := px.pools[poolName]
	if !ok {
		return fmt.Errorf("proxy: no pool %q", poolName)
	}
	return px.serve(p, ln, p.cfg.TLS != nil && p.cfg.TLS.Listen.Network == "")
}

// ServeTLS is Serve for the listener of a pool's tls block (tls.listen):
// its clients speak TLS.
func (px *Proxy) ServeTLS(poolName string, ln net.Listener) error {
	p, ok := px.pools[poolName]
	if !ok {
		return fmt.Errorf("proxy: no pool %q", poolName)
	}
	if p.tlsServer == nil {
		return fmt.Errorf("proxy: pool %q has no tls block", poolName)
	}
	return px.serve(p, ln, true)
}

func (px *Proxy) serve(p *pool, ln net.Listener, tls bool) error {
	px.run()
	var err error
	px.lp.do(func() { err = p.serve(ln, tls) })
	return err
}

// Shutdown stops accepting, lets every client finish the requests it has
// sent, and returns once all clients are gone or ctx ends; then it closes
// whatever is left.
func (px *Proxy) Shutdown(ctx context.Context) error {
	_, err := px.drainAll(ctx)
	return err
}

// drainAll drains every pool; clients left when ctx ends are closed (and
// counted busy in the report of a hand-over).
func (px *Proxy) drainAll(ctx context.Context) (HandoverReport, error) {
	px.lp.do(func() {
		for _, p := range px.order {
			p.drain()
		}
	})
	done := make(chan struct{})
	go func() {
		for _, p := range px.order {
			p.wg.Wait()
		}
		close(done)
	}()
	var err error
	select {
	case <-done:
		// The last TLS clients' descriptors may linger still (lingerFD):
		// the loop stopping would close them before their clients did.
		for px.lingering() > 0 && err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	case <-ctx.Done():
		err = ctx.Err()
	}
	var rep HandoverReport
	px.lp.do(func() {
		if px.lp.give != nil {
			if n := int(px.clients()); n > 0 {
				px.lp.hoClosed[leaveBusy] += n
			}
			rep = HandoverReport{HandedOver: px.lp.hoHanded, Closed: px.lp.hoClosed}
		}
	})
	px.Close()
	return rep, err
}

// lingering counts the half-closed client descriptors of the loop.
func (px *Proxy) lingering() (n int) {
	px.lp.do(func() {
		for _, l := range px.lp.lingering {
			if l.fd >= 0 {
				n++
			}
		}
	})
	return n
}

// Close closes every listener, client and server connection now.
func (px *Proxy) Close() {
	px.once.Do(func() {
		px.run()
		px.lp.do(func() {
			for _, p := range px.order {
				p.closeAll()
			}
			px.lp.quit = true
		})
		<-px.lp.done
		for _, p := range px.order {
			p.wg.Wait()
		}
	})
}

// Clients reports the number of connected clients over all pools.
func (px *Proxy) Clients() int64 { return px.clients() }

func (px *Proxy) clients() int64 {
	var n int64
	for _, p := range px.order {
		n += p.stats.ClientConnections.Load()
	}
	return n
}

// Snapshot copies every counter.
func (px *Proxy) Snapshot() Snapshot {
	var s Snapshot
	px.lp.do(func() { s = px.snapshot() })
	return s
}

func (px *Proxy) snapshot() Snapshot {
	var s Snapshot
	for _, p := range px.order {
		ps := PoolSnapshot{
			Name:               p.cfg.Name,
			ClientEOF:          p.stats.ClientEOF.Load(),
			ClientErr:          p.stats.ClientErr.Load(),
			ClientConnections:  p.stats.ClientConnections.Load(),
			ServerEjects:       p.stats.ServerEjects.Load(),
			ForwardError:       p.stats.ForwardError.Load(),
			Fragments:          p.stats.Fragments.Load(),
			ClientAccepted:     p.stats.ClientAccepted.Load(),
			ClientRejected:     p.stats.ClientRejected.Load(),
			AuthAttempts:       p.stats.AuthAttempts.Load(),
			AuthFailures:       p.stats.AuthFailures.Load(),
			ClientIdleClosed:   p.stats.ClientIdleClosed.Load(),
			ClientOutputClosed: p.stats.ClientOutputClosed.Load(),
			SlowRequests:       p.stats.SlowRequests.Load(),
			Replayed:           p.stats.Replayed.Load(),
			OutcomeUnknown:     p.stats.OutcomeUnknown.Load(),
			Moved:              p.stats.Moved.Load(),
			Asked:              p.stats.Asked.Load(),
			TryAgain:           p.stats.TryAgain.Load(),
			RedirectsExhausted: p.stats.RedirectsExhausted.Load(),
			PinnedOpened:       p.stats.PinnedOpened.Load(),
			PinnedReused:       p.stats.PinnedReused.Load(),
			PinnedRefused:      p.stats.PinnedRefused.Load(),
			PubSubOutputClosed: p.stats.PubSubOutputClosed.Load(),
			ACLDeniedCommand:   p.stats.ACLDeniedCommand.Load(),
			ACLDeniedKey:       p.stats.ACLDeniedKey.Load(),
			ACLDeniedChannel:   p.stats.ACLDeniedChannel.Load(),
			ClientHandedOver:   p.stats.ClientHandedOver.Load(),
			ClientAdopted:      p.stats.ClientAdopted.Load(),
			HandoverRefused:    p.stats.ClientHandoverRefused.Load(),
			TLSHandshakes:      p.stats.TLSHandshakes.Load(),
			TLSHandshakeFailed: p.stats.TLSHandshakeFailed.Load(),
			RequestLatency:     p.latency.snapshot(),
			Commands:           map[string]uint64{},
		}
		if p.tlsServer != nil {
			ps.TLSCertNotAfter = p.tlsServer.NotAfter().Unix()
		}
		p.commands.Range(func(k, v any) bool {
			ps.Commands[k.(string)] = v.(*atomic.Uint64).Load()
			return true
		})
		for _, sv := range p.servers {
			ps.PinnedOpen += int64(len(sv.pins))
			ps.PinnedLent += int64(len(sv.pins) - len(sv.pinIdle))
			st := &sv.stats
			ps.Servers = append(ps.Servers, ServerSnapshot{
				Name:              sv.name,
				ServerEOF:         st.EOF.Load(),
				ServerErr:         st.Err.Load(),
				ServerTimedout:    st.Timedout.Load(),
				ServerConnections: st.Connections.Load(),
				ServerEjectedAt:   st.EjectedAt.Load(),
				Requests:          st.Requests.Load(),
				RequestBytes:      st.RequestBytes.Load(),
				Responses:         st.Responses.Load(),
				ResponseBytes:     st.ResponseBytes.Load(),
				ServerLatency:     sv.latency.snapshot(),
			})
			if sv.managed {
				ss := &ps.Servers[len(ps.Servers)-1]
				ss.Address, ss.Switches, ss.Waiting = sv.addr.Addr, st.Switches.Load(), int64(len(sv.waiting))
				ss.SwitchedAt = st.SwitchedAt.Load()
			}
			if p.cluster != nil {
				ss := &ps.Servers[len(ps.Servers)-1]
				ss.Role = "node"
				if p.cluster.masters[sv] {
					ss.Role = "master"
				}
			}
			ss := &ps.Servers[len(ps.Servers)-1]
			sv.eachConn(func(sc *serverConn) {
				if l := sc.current(); l != nil {
					ss.InQueue += int64(l.enqSeq - max(l.sentSeq, l.headSeq))
					ss.InQueueBytes += int64(len(l.wbuf) - l.woff)
					ss.OutQueue += int64(max(l.sentSeq, l.headSeq) - l.headSeq)
				}
			})
		}
		if p.cluster != nil {
			p.clusterSnapshot(&ps)
		}
		s.Pools = append(s.Pools, ps)
	}
	return s
}

// SetPeerTotals records what the other workers counted, for INFO.
func (px *Proxy) SetPeerTotals(peers []PeerTotals) {
	px.lp.post(func() {
		for _, pt := range peers {
			if p, ok := px.pools[pt.Pool]; ok {
				p.peers = pt
			}
		}
	})
}

// StatsJSON is Snapshot encoded as JSON.
func (px *Proxy) StatsJSON() []byte {
	b, _ := json.Marshal(px.Snapshot())
	return b
}
