package proxy

import "fmt"

// ClientCounter counts a pool's clients together with other engines (the
// other worker processes of a generation), so that client_connections is
// the pool's limit rather than each worker's. Acquire and Release are
// called on the loop, once per client; they must not block.
type ClientCounter interface {
	// Acquire counts one more client unless limit (> 0) clients are
	// counted already; limit 0 counts without a limit. It reports
	// whether the client was counted.
	Acquire(limit int64) bool
	// Release uncounts a client Acquire counted.
	Release()
}

// SetClientCounter makes the named pool admit clients through c instead
// of its own count of this engine's clients (the fallback when none is
// set: one process, tests). Call it before Serve; c then sees every
// client of the pool, with or without a limit, so that its count stays
// true if a later configuration sets one.
func (px *Proxy) SetClientCounter(poolName string, c ClientCounter) error {
	p, ok := px.pools[poolName]
	if !ok {
		return fmt.Errorf("proxy: no pool %q", poolName)
	}
	px.lp.do(func() { p.counter = c })
	return nil
}

// admit counts a new client against client_connections; on the loop.
func (p *pool) admit() bool {
	lim := int64(p.cfg.ClientConnections)
	if p.counter != nil {
		return p.counter.Acquire(lim)
	}
	return lim <= 0 || p.stats.ClientConnections.Load() < lim
}

// unadmit gives back what admit counted.
func (p *pool) unadmit() {
	if p.counter != nil {
		p.counter.Release()
	}
}
