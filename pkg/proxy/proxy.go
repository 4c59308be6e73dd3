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

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// Proxy serves every pool of one configuration.
type Proxy struct {
	log   *logrus.Entry
	pools map[string]*pool
	order []*pool
	wg    sync.WaitGroup // accept loops
	once  sync.Once
}

// New builds a proxy for cfg. Nothing is started until Serve.
func New(cfg *config.Config, log *logrus.Entry) (*Proxy, error) {
	px := &Proxy{log: log, pools: make(map[string]*pool)}
	for _, pc := range cfg.Pools {
		p, err := newPool(pc, log)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		px.pools[pc.Name] = p
		px.order = append(px.order, p)
	}
	return px, nil
}

// Start starts background work: pool housekeeping and preconnects.
func (px *Proxy) Start() {
	for _, p := range px.order {
		p.start()
	}
}

// Serve accepts the clients of the named pool on ln, in the background.
// A pool may be served on several listeners (one per SO_REUSEPORT socket).
func (px *Proxy) Serve(poolName string, ln net.Listener) error {
	p, ok := px.pools[poolName]
	if !ok {
		return fmt.Errorf("proxy: no pool %q", poolName)
	}
	px.wg.Add(1)
	go func() {
		defer px.wg.Done()
		p.serve(ln)
	}()
	return nil
}

// Shutdown stops accepting, lets every client finish the requests it has
// sent, and returns once all clients are gone or ctx ends; then it closes
// whatever is left.
func (px *Proxy) Shutdown(ctx context.Context) error {
	for _, p := range px.order {
		p.drain()
	}
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
	case <-ctx.Done():
		err = ctx.Err()
	}
	px.Close()
	return err
}

// Close closes every listener, client and server connection now.
func (px *Proxy) Close() {
	px.once.Do(func() {
		for _, p := range px.order {
			p.closeAll()
		}
		px.wg.Wait()
	})
}

// Clients reports the number of connected clients over all pools.
func (px *Proxy) Clients() int64 {
	var n int64
	for _, p := range px.order {
		n += p.stats.ClientConnections.Load()
	}
	return n
}

// Snapshot copies every counter.
func (px *Proxy) Snapshot() Snapshot {
	var s Snapshot
	for _, p := range px.order {
		ps := PoolSnapshot{
			Name:              p.cfg.Name,
			ClientEOF:         p.stats.ClientEOF.Load(),
			ClientErr:         p.stats.ClientErr.Load(),
			ClientConnections: p.stats.ClientConnections.Load(),
			ServerEjects:      p.stats.ServerEjects.Load(),
			ForwardError:      p.stats.ForwardError.Load(),
			Fragments:         p.stats.Fragments.Load(),
			ClientAccepted:    p.stats.ClientAccepted.Load(),
			ClientRejected:    p.stats.ClientRejected.Load(),
			AuthAttempts:      p.stats.AuthAttempts.Load(),
			AuthFailures:      p.stats.AuthFailures.Load(),
			ClientIdleClosed:  p.stats.ClientIdleClosed.Load(),
			SlowRequests:      p.stats.SlowRequests.Load(),
			RequestLatency:    p.latency.snapshot(),
			Commands:          map[string]uint64{},
		}
		p.commands.Range(func(k, v any) bool {
			ps.Commands[k.(string)] = v.(*atomic.Uint64).Load()
			return true
		})
		for _, sv := range p.servers {
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
			ss := &ps.Servers[len(ps.Servers)-1]
			for _, sc := range sv.conns {
				if l := sc.current(); l != nil {
					l.mu.Lock()
					ss.InQueue += int64(l.enqSeq - max(l.sentSeq, l.headSeq))
					ss.InQueueBytes += int64(len(l.wbuf))
					ss.OutQueue += int64(max(l.sentSeq, l.headSeq) - l.headSeq)
					l.mu.Unlock()
				}
			}
		}
		s.Pools = append(s.Pools, ps)
	}
	return s
}

// StatsJSON is Snapshot encoded as JSON.
func (px *Proxy) StatsJSON() []byte {
	b, _ := json.Marshal(px.Snapshot())
	return b
}
