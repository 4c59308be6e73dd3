package stats

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// ErrBadState is wrapped by LoadState when the document cannot be used.
var ErrBadState = errors.New("stats: bad state")

// stateFormat and stateVersion identify MarshalState's document.
const (
	stateFormat  = "nuthatch-stats-state"
	stateVersion = 1
)

// Aggregator keeps the master's running totals: the last snapshot of each
// live worker plus a retired base holding the counters of workers that
// have exited. Pools are matched by name and servers by their block label
// (or placement name). It is safe for concurrent use.
//
// Which pools and servers are reported is defined by SetConfig: those of
// the current configuration, in configuration order. Counters of a pool or
// server that the current configuration no longer has are dropped (the
// retired base forgets them, and live workers still running an older
// configuration do not contribute them); if it comes back in a later
// reload it starts again from zero. Without a configuration every name
// ever reported is kept, in the order first seen.
type Aggregator struct {
	mu    sync.Mutex
	cfg   *config.Config
	names map[string]map[string]string // pool -> label or placement name -> label
	// clusterPools' servers are not in the file: they are kept by name.
	clusterPools map[string]bool
	live         map[string]proxy.Snapshot
	base         proxy.Snapshot // retired counters; gauges are always zero
}

// NewAggregator returns an empty aggregator that reports every name seen
// until SetConfig is called.
func NewAggregator() *Aggregator {
	return &Aggregator{live: make(map[string]proxy.Snapshot)}
}

// SetConfig makes cfg's pools and servers, in cfg's order, the ones
// reported, and drops retired counters of the others. Call it when a
// configuration is loaded or reloaded, before its workers report.
func (a *Aggregator) SetConfig(cfg *config.Config) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg = cfg
	a.names = nil
	a.clusterPools = map[string]bool{}
	if cfg != nil {
		a.names = make(map[string]map[string]string, len(cfg.Pools))
		for _, p := range cfg.Pools {
			if p.Cluster != nil {
				a.clusterPools[p.Name] = true
			}
			m := make(map[string]string, 2*len(p.Servers))
			// Placement names first so that a label wins a collision.
			for _, s := range p.Servers {
				m[s.PlacementName()] = s.Name
			}
			for _, s := range p.Servers {
				m[s.Name] = s.Name
			}
			a.names[p.Name] = m
		}
	}
	b := a.layout()
	a.fold(b, a.base, false)
	a.base = b.snapshot()
}

// Update records the latest snapshot of a worker. A snapshot whose
// counters went backwards means the worker restarted under the same id:
// the previous one is retired first so that nothing is lost.
func (a *Aggregator) Update(workerID string, snap proxy.Snapshot) {
	snap = cloneSnapshot(snap)
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.live[workerID]; ok && wentBackwards(prev, snap) {
		a.retire(prev)
	}
	a.live[workerID] = snap
}

// Retire folds a worker's last counters into the retired base and forgets
// the worker. Its gauges are not carried over. Unknown ids are ignored.
func (a *Aggregator) Retire(workerID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.live[workerID]; ok {
		a.retire(prev)
		delete(a.live, workerID)
	}
}

func (a *Aggregator) retire(s proxy.Snapshot) {
	b := a.layout()
	a.fold(b, a.base, false)
	a.fold(b, s, false)
	a.base = b.snapshot()
}

// Live returns the last snapshot of a live worker. It is shared: callers
// must not change it.
func (a *Aggregator) Live(workerID string) (proxy.Snapshot, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.live[workerID]
	return s, ok
}

// Workers returns the ids of the live workers, sorted.
func (a *Aggregator) Workers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workerIDs()
}

func (a *Aggregator) workerIDs() []string {
	ids := make([]string, 0, len(a.live))
	for id := range a.live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Total is the retired base plus every live worker's counters and gauges.
// Server names are block labels; histograms always have
// len(proxy.LatencyBounds)+1 buckets.
func (a *Aggregator) Total() proxy.Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.layout()
	a.fold(t, a.base, false)
	for _, id := range a.workerIDs() {
		a.fold(t, a.live[id], true)
	}
	return t.snapshot()
}

// stateDoc is MarshalState's document.
type stateDoc struct {
	Format  string               `json:"format"`
	Version int                  `json:"version"`
	Pools   []proxy.PoolSnapshot `json:"pools"`
}

// MarshalState returns the counters a successor master should start from:
// the retired base plus the live workers' counters, without gauges. An old
// master hands it over when its last worker is gone, so that nothing is
// counted twice.
func (a *Aggregator) MarshalState() []byte {
	a.mu.Lock()
	t := a.layout()
	a.fold(t, a.base, false)
	for _, id := range a.workerIDs() {
		a.fold(t, a.live[id], false)
	}
	a.mu.Unlock()
	b, err := json.Marshal(stateDoc{Format: stateFormat, Version: stateVersion, Pools: t.snapshot().Pools})
	if err != nil {
		panic("stats: cannot encode state: " + err.Error()) // plain data, cannot fail
	}
	return b
}

// LoadState adds the counters of a predecessor's MarshalState to the
// retired base (it merges; loading the same document twice counts twice).
// Pools and servers not in the current configuration are dropped.
func (a *Aggregator) LoadState(b []byte) error {
	var doc stateDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%w: %w", ErrBadState, err)
	}
	if doc.Format != stateFormat || doc.Version != stateVersion {
		return fmt.Errorf("%w: format %q version %d, want %q version %d",
			ErrBadState, doc.Format, doc.Version, stateFormat, stateVersion)
	}
	for _, p := range doc.Pools {
		if p.Name == "" {
			return fmt.Errorf("%w: pool without a name", ErrBadState)
		}
		if err := checkHistogram(p.RequestLatency); err != nil {
			return fmt.Errorf("%w: pool %q: %w", ErrBadState, p.Name, err)
		}
		for _, s := range p.Servers {
			if s.Name == "" {
				return fmt.Errorf("%w: pool %q: server without a name", ErrBadState, p.Name)
			}
			if err := checkHistogram(s.ServerLatency); err != nil {
				return fmt.Errorf("%w: pool %q server %q: %w", ErrBadState, p.Name, s.Name, err)
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// fold without gauges ignores any gauge the document carries.
	a.retire(proxy.Snapshot{Pools: doc.Pools})
	return nil
}

func checkHistogram(h proxy.HistogramSnapshot) error {
	if len(h.Counts) > len(proxy.LatencyBounds)+1 {
		return fmt.Errorf("histogram has %d buckets, want at most %d", len(h.Counts), len(proxy.LatencyBounds)+1)
	}
	return nil
}

// resolve maps a server name reported by a worker to the label it is
// reported under; ok is false when the current configuration lacks it.
func (a *Aggregator) resolve(pool, server string) (string, bool) {
	if a.cfg == nil {
		return server, true
	}
	label, ok := a.names[pool][server]
	if !ok && a.clusterPools[pool] {
		// A cluster pool's servers are its nodes, named by address as
		// the cluster reports them: none is in the file.
		return server, true
	}
	return label, ok
}

// layout is an empty accumulator holding the configured pools and servers.
func (a *Aggregator) layout() *acc {
	t := &acc{byName: make(map[string]*poolAcc)}
	if a.cfg == nil {
		return t
	}
	for _, p := range a.cfg.Pools {
		pa := t.add(p.Name)
		for _, s := range p.Servers {
			pa.add(s.Name)
		}
	}
	return t
}

// fold adds s into t; gauges only when asked. Names outside the current
// configuration are skipped; without a configuration they are created.
func (a *Aggregator) fold(t *acc, s proxy.Snapshot, gauges bool) {
	create := a.cfg == nil
	for i := range s.Pools {
		p := &s.Pools[i]
		pa := t.byName[p.Name]
		if pa == nil {
			if !create {
				continue
			}
			pa = t.add(p.Name)
		}
		addPool(&pa.s, p, gauges)
		for j := range p.Servers {
			sv := &p.Servers[j]
			label, ok := a.resolve(p.Name, sv.Name)
			if !ok {
				continue
			}
			ss := pa.byName[label]
			if ss == nil {
				if !create && !a.clusterPools[p.Name] {
					continue
				}
				ss = pa.add(label)
			}
			addServer(ss, sv, gauges)
		}
	}
}

// acc accumulates a snapshot with name lookups.
type acc struct {
	pools  []*poolAcc
	byName map[string]*poolAcc
}

type poolAcc struct {
	s       proxy.PoolSnapshot // Servers unused
	servers []*proxy.ServerSnapshot
	byName  map[string]*proxy.ServerSnapshot
}

func (t *acc) add(name string) *poolAcc {
	pa := &poolAcc{byName: make(map[string]*proxy.ServerSnapshot)}
	pa.s.Name = name
	pa.s.RequestLatency.Counts = make([]uint64, len(proxy.LatencyBounds)+1)
	t.pools = append(t.pools, pa)
	t.byName[name] = pa
	return pa
}

func (pa *poolAcc) add(name string) *proxy.ServerSnapshot {
	ss := &proxy.ServerSnapshot{Name: name}
	ss.ServerLatency.Counts = make([]uint64, len(proxy.LatencyBounds)+1)
	pa.servers = append(pa.servers, ss)
	pa.byName[name] = ss
	return ss
}

func (t *acc) snapshot() proxy.Snapshot {
	out := proxy.Snapshot{Pools: make([]proxy.PoolSnapshot, 0, len(t.pools))}
	for _, pa := range t.pools {
		p := pa.s
		p.Servers = make([]proxy.ServerSnapshot, 0, len(pa.servers))
		for _, ss := range pa.servers {
			p.Servers = append(p.Servers, *ss)
		}
		out.Pools = append(out.Pools, p)
	}
	return out
}

func addPool(d, s *proxy.PoolSnapshot, gauges bool) {
	d.ClientEOF += s.ClientEOF
	d.ClientErr += s.ClientErr
	d.ServerEjects += s.ServerEjects
	d.ForwardError += s.ForwardError
	d.Fragments += s.Fragments
	d.ClientAccepted += s.ClientAccepted
	d.ClientRejected += s.ClientRejected
	d.AuthAttempts += s.AuthAttempts
	d.AuthFailures += s.AuthFailures
	d.ClientIdleClosed += s.ClientIdleClosed
	d.ClientOutputClosed += s.ClientOutputClosed
	d.SlowRequests += s.SlowRequests
	d.Replayed += s.Replayed
	d.OutcomeUnknown += s.OutcomeUnknown
	d.Moved += s.Moved
	d.Asked += s.Asked
	d.TryAgain += s.TryAgain
	d.RedirectsExhausted += s.RedirectsExhausted
	d.ACLDeniedCommand += s.ACLDeniedCommand
	d.ACLDeniedKey += s.ACLDeniedKey
	d.ACLDeniedChannel += s.ACLDeniedChannel
	d.PinnedOpened += s.PinnedOpened
	d.PinnedReused += s.PinnedReused
	d.PinnedRefused += s.PinnedRefused
	d.PubSubOutputClosed += s.PubSubOutputClosed
	d.ClientHandedOver += s.ClientHandedOver
	d.ClientAdopted += s.ClientAdopted
	d.HandoverRefused += s.HandoverRefused
	d.TLSHandshakes += s.TLSHandshakes
	d.TLSHandshakeFailed += s.TLSHandshakeFailed
	if s.TLSCertNotAfter != 0 && (d.TLSCertNotAfter == 0 || s.TLSCertNotAfter < d.TLSCertNotAfter) {
		// The first to expire of the certificates the workers serve.
		d.TLSCertNotAfter = s.TLSCertNotAfter
	}
	d.RequestLatency.Add(s.RequestLatency)
	if len(s.Commands) > 0 && d.Commands == nil {
		d.Commands = make(map[string]uint64, len(s.Commands))
	}
	for k, v := range s.Commands {
		d.Commands[k] += v
	}
	if gauges {
		d.ClientConnections += s.ClientConnections
		d.PinnedLent += s.PinnedLent
		d.PinnedOpen += s.PinnedOpen
	}
}

func addServer(d, s *proxy.ServerSnapshot, gauges bool) {
	d.ServerEOF += s.ServerEOF
	d.ServerErr += s.ServerErr
	d.ServerTimedout += s.ServerTimedout
	d.Requests += s.Requests
	d.RequestBytes += s.RequestBytes
	d.Responses += s.Responses
	d.ResponseBytes += s.ResponseBytes
	d.ServerLatency.Add(s.ServerLatency)
	// A timestamp, not a gauge: the latest ejection seen by any worker,
	// kept across restarts (twemproxy keeps the last non-zero one).
	d.ServerEjectedAt = max(d.ServerEjectedAt, s.ServerEjectedAt)
	// Every worker sees the same master moves.
	d.Switches = max(d.Switches, s.Switches)
	d.SwitchedAt = max(d.SwitchedAt, s.SwitchedAt)
	if s.Address != "" {
		d.Address = s.Address
	}
	if s.Role != "" {
		// A cluster node: the workers read the same map.
		d.Role, d.ReplicaOf = s.Role, s.ReplicaOf
		d.Slots = max(d.Slots, s.Slots)
	}
	if gauges {
		d.Waiting += s.Waiting
		d.ServerConnections += s.ServerConnections
		d.InQueue += s.InQueue
		d.InQueueBytes += s.InQueueBytes
		d.OutQueue += s.OutQueue
	}
}

// wentBackwards reports whether any counter of cur is below prev's, which
// only happens when the reporting process started over.
func wentBackwards(prev, cur proxy.Snapshot) bool {
	pools := make(map[string]*proxy.PoolSnapshot, len(prev.Pools))
	for i := range prev.Pools {
		pools[prev.Pools[i].Name] = &prev.Pools[i]
	}
	for i := range cur.Pools {
		c := &cur.Pools[i]
		p := pools[c.Name]
		if p == nil {
			continue
		}
		if c.ClientEOF < p.ClientEOF || c.ClientErr < p.ClientErr ||
			c.ServerEjects < p.ServerEjects || c.ForwardError < p.ForwardError ||
			c.Fragments < p.Fragments || c.ClientAccepted < p.ClientAccepted ||
			c.ClientRejected < p.ClientRejected || c.AuthAttempts < p.AuthAttempts ||
			c.RequestLatency.Count() < p.RequestLatency.Count() {
			return true
		}
		servers := make(map[string]*proxy.ServerSnapshot, len(p.Servers))
		for j := range p.Servers {
			servers[p.Servers[j].Name] = &p.Servers[j]
		}
		for j := range c.Servers {
			cs := &c.Servers[j]
			ps := servers[cs.Name]
			if ps == nil {
				continue
			}
			if cs.ServerEOF < ps.ServerEOF || cs.ServerErr < ps.ServerErr ||
				cs.ServerTimedout < ps.ServerTimedout || cs.Requests < ps.Requests ||
				cs.RequestBytes < ps.RequestBytes || cs.Responses < ps.Responses ||
				cs.ResponseBytes < ps.ResponseBytes ||
				cs.ServerLatency.Count() < ps.ServerLatency.Count() {
				return true
			}
		}
	}
	return false
}

// cloneSnapshot copies s so that the caller may reuse its slices.
func cloneSnapshot(s proxy.Snapshot) proxy.Snapshot {
	out := proxy.Snapshot{Pools: slices.Clone(s.Pools)}
	for i := range out.Pools {
		p := &out.Pools[i]
		p.RequestLatency.Counts = slices.Clone(p.RequestLatency.Counts)
		p.Commands = maps.Clone(p.Commands)
		p.Servers = slices.Clone(p.Servers)
		for j := range p.Servers {
			p.Servers[j].ServerLatency.Counts = slices.Clone(p.Servers[j].ServerLatency.Counts)
		}
	}
	return out
}
