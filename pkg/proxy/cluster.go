package proxy

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// A cluster pool fronts a Redis Cluster. Its servers are the cluster's
// masters, made as the slot map names them; a key goes to the owner of
// its hash slot. The slot map is data pushed to the engine (SetSlotMap) by
// the master process, which reads it from the cluster; the engine patches
// a slot on MOVED and reports what it sees (hints), never asking the
// cluster itself. Requests are kept (m.req, as for any server whose
// address moves) so that a MOVED, an ASK, a TRYAGAIN or a dead owner
// sends them again, by retry.go's rule, within failover_timeout.

// SlotMap is a cluster pool's topology as the master last read it: the
// masters (those that own no slot too), each one's replicas fit for reads
// (Replicas[i] of Nodes[i], absent when there are none), the slots.
type SlotMap struct {
	Pool     string      `json:"pool"`
	Version  uint64      `json:"version"`
	Nodes    []string    `json:"nodes"` // masters' host:port
	Replicas [][]string  `json:"replicas,omitempty"`
	Ranges   []SlotRange `json:"ranges"`
}

// SlotRange is a run of slots owned by Nodes[Node].
type SlotRange struct {
	Start int `json:"start"`
	End   int `json:"end"` // inclusive
	Node  int `json:"node"`
}

type clusterState struct {
	slots    [hashkit.SlotCount]int32 // server index, -1 while unowned
	version  uint64
	byAddr   map[string]*server
	unrouted []*msg // requests for slots no map has named an owner for
	// masters marks the servers the last map named as masters (the
	// others are nodes a MOVED named, or former masters).
	masters map[*server]bool
	// masterList is the same in the map's order: what SCAN walks.
	masterList []*server
	later      []*msg // requests to retry at m.retryAt (TRYAGAIN, CLUSTERDOWN)
	lastHint   int64
	// haveMap: a slot map arrived. Until then the pool's clients are not
	// read (awaitMap), for up to failover_timeout each: mapWaiters.
	haveMap    bool
	mapWaiters []*clientConn
	// ownerWaiters are the clients parked, unread, on a stateful request
	// whose slot's owner cannot be reached (parkForOwner).
	ownerWaiters []*clientConn
}

func newClusterState() *clusterState {
	cs := &clusterState{byAddr: map[string]*server{}}
	for i := range cs.slots {
		cs.slots[i] = -1
	}
	return cs
}

// SetSlotMap applies a slot map from the topology source.
func (px *Proxy) SetSlotMap(m SlotMap) {
	px.lp.post(func() {
		if p, ok := px.pools[m.Pool]; ok && p.cluster != nil {
			p.setSlotMap(m)
		}
	})
}

func (p *pool) setSlotMap(sm SlotMap) {
	cs := p.cluster
	if sm.Version < cs.version {
		return
	}
	cs.version = sm.Version
	idx := make([]int32, len(sm.Nodes))
	masters := make(map[*server]bool, len(sm.Nodes))
	var list []*server
	for i, addr := range sm.Nodes {
		s := p.clusterServer(addr)
		idx[i] = int32(s.idx)
		if !masters[s] {
			list = append(list, s)
		}
		masters[s] = true
		if p.readFrom != config.ReadFromMaster {
			var rs []string
			if i < len(sm.Replicas) {
				rs = sm.Replicas[i]
			}
			s.setReplicas(rs)
		}
	}
	for _, s := range p.servers {
		if !masters[s] && len(s.replicas) > 0 {
			s.setReplicas(nil) // no master any more: its replicas follow another
		}
	}
	cs.masters, cs.masterList = masters, list
	moved := 0
	for _, r := range sm.Ranges {
		if r.Node < 0 || r.Node >= len(idx) || r.Start < 0 || r.End >= hashkit.SlotCount {
			continue
		}
		for sl := r.Start; sl <= r.End; sl++ {
			if cs.slots[sl] != idx[r.Node] {
				cs.slots[sl] = idx[r.Node]
				moved++
			}
		}
	}
	if moved > 0 {
		p.log.WithField("version", sm.Version).WithField("slots_changed", moved).Info("cluster slot map updated")
	}
	// Every server may be tried again: the map is the cluster's word.
	var again []*msg
	for _, s := range p.servers {
		s.down = false
		again = append(again, s.waiting...)
		s.waiting = nil
	}
	again = append(again, cs.unrouted...)
	cs.unrouted = nil
	for _, m := range again {
		p.sendSlot(m)
	}
	p.wakeOwnerWaiters()
	if !cs.haveMap {
		cs.haveMap = true
		waiters := cs.mapWaiters
		cs.mapWaiters = nil
		if len(waiters) > 0 {
			p.log.WithField("clients", len(waiters)).Info("first cluster slot map: serving the clients that waited for it")
		}
		for _, c := range waiters {
			if !c.closed {
				c.mapSince = 0
				c.serve()
			}
		}
	}
}

// awaitMap keeps a client of a cluster pool that has no slot map yet (the
// proxy just started and the nodes are slow or down) from being read:
// whatever it sends, a GET or a MULTI, SUBSCRIBE or BLPOP, which need an
// owner to pin a link to, waits in its socket until the first map, then
// runs in order. The wait is failover_timeout at most (expireMapWaiters),
// as for a request whose slot has no known owner. It reports whether c
// waits.
// Small enough to be inlined in serve, which every pool runs.
func (c *clientConn) awaitMap() bool {
	cs := c.pool.cluster
	return cs != nil && !cs.haveMap && c.parkForMap(cs)
}

// parkForMap puts c on the list of the clients waiting for the map, but
// for the read after its wait ran out (mapLate).
func (c *clientConn) parkForMap(cs *clusterState) bool {
	if c.mapLate != 0 {
		return false
	}
	if c.mapSince == 0 {
		c.mapSince = c.lp.now
		cs.mapWaiters = append(cs.mapWaiters, c)
		c.pool.clusterHint("", HintWaiting)
	}
	return true
}

// expireMapWaiters lets the clients that waited failover_timeout for the
// first slot map be read: their requests then fail as requests without a
// slot owner do, counted from when the client began to wait.
func (p *pool) expireMapWaiters(now, limit int64) {
	cs := p.cluster
	keep, late := splitLate(cs.mapWaiters, now, limit, func(c *clientConn) int64 { return c.mapSince })
	cs.mapWaiters = keep
	if len(keep) > 0 {
		p.clusterHint("", HintWaiting)
	}
	for _, c := range late {
		since := c.mapSince
		c.mapSince = 0
		if !c.readable && !c.eof {
			continue // nothing sent yet: what comes later waits anew
		}
		c.mapLate = since
		c.serve()
		c.mapLate = 0
	}
}

// parkForOwner parks c on the stateful request being routed (a MULTI's
// first key, WATCH, a blocking call, SUBSCRIBE) when its node cannot be
// reached: a master killed before its replica is promoted, or a link
// still connecting. Ordinary requests wait in s.waiting for the same
// reason; a stateful one cannot, since what follows it on the client's
// connection depends on its link. So c is not read, and the request is
// routed again from the start when a map arrives or a probe connects
// (wakeOwnerWaiters), for up to failover_timeout (expireOwnerWaiters).
// Bounded as s.waiting is: maxWaiting clients per pool, each holding no
// more than what it sent and the proxy did not read. It reports whether
// c waits.
func (c *clientConn) parkForOwner() bool {
	if c.ownerLate || !c.dispatching {
		return false
	}
	cs := c.pool.cluster
	if c.ownerSince == 0 {
		if len(cs.ownerWaiters) >= maxWaiting {
			return false
		}
		c.ownerSince = c.lp.now
	}
	if !c.ownerPark {
		c.ownerPark = true
		cs.ownerWaiters = append(cs.ownerWaiters, c)
		c.pool.clusterHint("", HintWaiting)
	}
	return true
}

// wakeOwnerWaiters routes the parked clients' requests again: the map
// changed or a node answered. Those still without a reachable owner park
// again, keeping their start.
func (p *pool) wakeOwnerWaiters() {
	cs := p.cluster
	if len(cs.ownerWaiters) == 0 {
		return
	}
	ws := cs.ownerWaiters
	cs.ownerWaiters = nil
	for _, c := range ws {
		c.ownerPark = false
	}
	for _, c := range ws {
		if !c.closed && !c.ownerPark {
			c.serve()
		}
	}
}

// splitLate drops the closed clients of waiters (in place) and splits the
// rest into those that waited more than limit since since(c) and those
// that keep waiting.
func splitLate(waiters []*clientConn, now, limit int64, since func(*clientConn) int64) (keep, late []*clientConn) {
	keep = waiters[:0]
	for _, c := range waiters {
		switch {
		case c.closed:
		case now-since(c) > limit:
			late = append(late, c)
		default:
			keep = append(keep, c)
		}
	}
	clear(waiters[len(keep):])
	return keep, late
}

// expireOwnerWaiters fails the parked requests that waited
// failover_timeout: they are routed with ownerLate, which makes pin
// answer its error (has no master) instead of waiting.
func (p *pool) expireOwnerWaiters(now, limit int64) {
	cs := p.cluster
	keep, late := splitLate(cs.ownerWaiters, now, limit, func(c *clientConn) int64 { return c.ownerSince })
	cs.ownerWaiters = keep
	if len(keep) > 0 {
		p.clusterHint("", HintWaiting)
	}
	for _, c := range late {
		c.ownerPark, c.ownerLate, c.ownerSince = false, true, 0
		c.serve()
		c.ownerLate = false
	}
}

// errNoSlotMap fails, after failover_timeout, a request of a cluster pool
// that never had a slot map and that needs a server to pin a link to or to
// ask (MULTI's first command, SUBSCRIBE, BLPOP, DBSIZE, ...).
var errNoSlotMap = errors.New("nuthatch: no slot map read from the cluster yet (failover_timeout passed)")

// clusterServer returns the server of a node's address, made on first
// sight (a map or a MOVED naming a new node).
func (p *pool) clusterServer(addr string) *server {
	cs := p.cluster
	if s := cs.byAddr[addr]; s != nil {
		return s
	}
	s := &server{pool: p, idx: len(p.servers), name: addr, managed: true,
		addr: config.Address{Network: "tcp", Addr: addr}}
	s.conns = newServerConns(s, p.cfg.ServerConnections, false)
	p.servers = append(p.servers, s)
	cs.byAddr[addr] = s
	return s
}

// slotOwner returns the server of a slot, nil while none is known.
func (p *pool) slotOwner(slot int32) *server {
	if i := p.cluster.slots[slot]; i >= 0 {
		return p.servers[i]
	}
	return nil
}

// forwardSlot sends m, for slot, to its owner, or holds it until a map
// names one.
func (p *pool) forwardSlot(m *msg, slot int32, build func(dst []byte) []byte) {
	m.slot, m.hasSlot = slot, true
	if s := p.slotOwner(slot); s != nil {
		p.forward(m, s, build)
		return
	}
	m.req = build(m.req[:0])
	p.setReplaySafe(m)
	p.cluster.unrouted = append(p.cluster.unrouted, m)
	p.clusterHint("", HintWaiting)
}

// sendSlot sends m again to the owner of its slot now (keyless requests
// go to any master).
func (p *pool) sendSlot(m *msg) {
	s := m.server
	if m.hasSlot {
		s = p.slotOwner(m.slot)
	}
	if s == nil {
		p.cluster.unrouted = append(p.cluster.unrouted, m)
		return
	}
	m.server = s
	p.sendManaged(m, s)
}

// anyClusterServer is a master for keyless commands: one the map names,
// else any node known.
func (p *pool) anyClusterServer() *server {
	for _, s := range p.cluster.masterList {
		if !s.down {
			return s
		}
	}
	for _, s := range p.servers {
		if !s.down {
			return s
		}
	}
	if len(p.servers) > 0 {
		return p.servers[0]
	}
	return nil
}

// clusterHint tells the topology source what the engine saw, at most
// every hintEvery per pool.
func (p *pool) clusterHint(addr, reason string) {
	if p.hint == nil {
		return
	}
	if now := p.lp.now; now-p.cluster.lastHint >= hintEvery {
		p.cluster.lastHint = now
		p.hint(p.cfg.Name, addr, reason)
	}
}

// redirected handles a cluster's refusal of m (MOVED, ASK, TRYAGAIN,
// CLUSTERDOWN, LOADING): none reaches the client while m is within its
// redirect budget and failover_timeout. It reports whether it took m.
func (p *pool) redirected(m *msg, reply []byte) bool {
	kind, slot, addr := parseRedirect(reply)
	if kind == "" {
		return false
	}
	cc := p.cfg.Cluster
	timeUp := p.lp.now-m.started() > int64(cc.FailoverTimeout)
	if m.redirects < 250 {
		m.redirects++
	}
	switch {
	case (kind == "CLUSTERDOWN" || kind == "LOADING") && timeUp:
		// The cluster (or the node) says so itself: only time bounds it.
		p.stats.RedirectsExhausted.Add(1)
		p.fail(m, &slotError{slot: m.slot, what: "no reachable owner: " + kind + " for failover_timeout"})
		return true
	case kind != "CLUSTERDOWN" && kind != "LOADING" && (int(m.redirects) > cc.MaxRedirects || timeUp):
		p.stats.RedirectsExhausted.Add(1)
		p.fail(m, &slotError{slot: m.slot, what: "too many redirections (" + kind + ")"})
		return true
	}
	m.sentAt = 0
	switch kind {
	case "MOVED":
		p.stats.Moved.Add(1)
		s := p.clusterServer(addr)
		p.cluster.slots[slot] = int32(s.idx)
		p.clusterHint(addr, HintMoved)
		if m.redirects > 1 {
			// MOVED again: two nodes disagree while the cluster settles
			// (a failover, a slot's last step of a move); wait a little.
			m.retryAt = p.lp.now + int64(10e6)<<min(m.redirects, 4)
			p.cluster.later = append(p.cluster.later, m)
			return true
		}
		m.server = s
		p.sendManaged(m, s)
	case "ASK":
		p.stats.Asked.Add(1)
		p.sendAsking(m, p.clusterServer(addr))
	default: // TRYAGAIN, CLUSTERDOWN, LOADING: again a little later
		p.stats.TryAgain.Add(1)
		if kind == "CLUSTERDOWN" {
			p.clusterHint("", HintNotMaster)
		}
		backoff := int64(10e6) << min(m.redirects, 4) // 20 ms .. 160 ms
		m.retryAt = p.lp.now + backoff
		p.cluster.later = append(p.cluster.later, m)
	}
	return true
}

// sendAsking sends ASKING and m back to back on one link of s: the
// importing node serves m's slot for the next command only.
func (p *pool) sendAsking(m *msg, s *server) {
	class := linkDefault
	if c := m.owner(); c != nil {
		class = c.linkClass
	}
	l := s.conn(class).link()
	ask := p.lp.newMsg(nil)
	ask.uncounted = true
	if !l.enqueueFunc(ask, appendAsking) {
		ask.free()
		s.park(m)
		return
	}
	m.server = s
	if !l.enqueueFunc(m, m.appendReq) {
		s.park(m)
	}
}

func appendAsking(dst []byte) []byte { return append(dst, "*1\r\n$6\r\nASKING\r\n"...) }

// expireCluster retries what waited its backoff and fails what waited
// failover_timeout without an owner; on the loop's tick.
func (p *pool) expireCluster(now int64) {
	cs := p.cluster
	limit := int64(p.cfg.Cluster.FailoverTimeout)
	if len(cs.mapWaiters) > 0 {
		p.expireMapWaiters(now, limit)
	}
	if len(cs.ownerWaiters) > 0 {
		p.expireOwnerWaiters(now, limit)
	}
	if len(cs.later) > 0 {
		later := cs.later
		cs.later = nil
		for _, m := range later {
			if now < m.retryAt {
				cs.later = append(cs.later, m)
				continue
			}
			p.sendSlot(m)
		}
	}
	if len(cs.unrouted) > 0 {
		keep := cs.unrouted[:0]
		for _, m := range cs.unrouted {
			if now-m.started() > limit {
				p.fail(m, &slotError{slot: m.slot, what: "no reachable owner (failover in progress)"})
				continue
			}
			keep = append(keep, m)
		}
		clear(cs.unrouted[len(keep):])
		cs.unrouted = keep
		if len(keep) > 0 {
			p.clusterHint("", HintWaiting)
		}
	}
}

// slotError fails a request of a cluster pool that could not be served
// within failover_timeout or the redirect budget.
type slotError struct {
	slot int32
	what string
}

func (e *slotError) Error() string {
	return "nuthatch: slot " + strconv.Itoa(int(e.slot)) + " has " + e.what
}

// parseRedirect reads "-MOVED 3999 127.0.0.1:6381", "-ASK ...",
// "-TRYAGAIN ...", "-CLUSTERDOWN ...", "-LOADING ...".
func parseRedirect(reply []byte) (kind string, slot int, addr string) {
	if len(reply) < 6 || reply[0] != '-' {
		return "", 0, ""
	}
	line := bytes.TrimRight(reply[1:], "\r\n")
	word, rest, _ := bytes.Cut(line, []byte(" "))
	switch string(word) {
	case "MOVED", "ASK":
		sl, target, ok := bytes.Cut(rest, []byte(" "))
		n, err := strconv.Atoi(string(sl))
		if !ok || err != nil || n < 0 || n >= hashkit.SlotCount || len(target) == 0 {
			return "", 0, ""
		}
		return string(word), n, string(target)
	case "TRYAGAIN", "CLUSTERDOWN", "LOADING":
		return string(word), 0, ""
	}
	return "", 0, ""
}

// groupSlots is groupKeys for a cluster pool: keys are grouped by slot
// (Redis refuses keys of two slots in one command even on one node), one
// group per slot in the order first seen, c.groupSlot[i] the slot of
// c.groups[i]. It returns the number of groups.
func (p *pool) groupSlots(c *clientConn, first, n, step int, key func(i int) []byte) int {
	ng := 0
	c.groupSlot = c.groupSlot[:0]
	for i := first; i < n; i += step {
		sl := int32(hashkit.Slot(key(i)))
		g := -1
		for j := 0; j < ng; j++ {
			if c.groupSlot[j] == sl {
				g = j
				break
			}
		}
		if g < 0 {
			if ng == len(c.groups) {
				c.groups = append(c.groups, nil)
			}
			c.groups[ng] = c.groups[ng][:0]
			c.groupSlot = append(c.groupSlot, sl)
			g = ng
			ng++
		}
		c.groups[g] = append(c.groups[g], int32(i))
	}
	return ng
}

// fragmentSlots is fragment for a cluster pool: one fragment per slot.
func (p *pool) fragmentSlots(c *clientConn, parent *msg, ng int, build func(dst []byte, keys []int32) []byte) {
	parent.pending = int32(ng)
	p.stats.Fragments.Add(uint64(ng))
	for i := 0; i < ng; i++ {
		f := p.lp.newMsg(nil)
		f.parent = parent
		f.op = parent.op
		f.keyIdx = append(f.keyIdx[:0], c.groups[i]...)
		parent.frags = append(parent.frags, f)
	}
	c.enqueue(parent)
	for i := 0; i < ng; i++ {
		f, g := parent.frags[i], parent.frags[i].keyIdx
		p.forwardSlot(f, c.groupSlot[i], func(dst []byte) []byte { return build(dst, g) })
	}
}

// singleCluster is single for a cluster pool: every key must be in the
// first key's slot, as Redis Cluster requires.
func (r *redisProto) singleCluster(c *clientConn, args [][]byte, raw []byte, keys []int) {
	p := r.pool
	build := func(dst []byte) []byte { return resp.AppendCommand(dst, args) }
	if raw != nil {
		build = func(dst []byte) []byte { return append(dst, raw...) }
	}
	if len(keys) == 0 {
		s := p.anyClusterServer()
		m := newMsg(c)
		c.enqueue(m)
		if s == nil {
			m.req = build(m.req[:0])
			p.setReplaySafe(m)
			p.cluster.unrouted = append(p.cluster.unrouted, m)
			return
		}
		p.forward(m, s, build)
		return
	}
	slot := int32(hashkit.Slot(args[keys[0]]))
	for _, k := range keys[1:] {
		if int32(hashkit.Slot(args[k])) != slot {
			c.localError("CROSSSLOT Keys in request don't hash to the same slot")
			return
		}
	}
	m := newMsg(c)
	c.enqueue(m)
	p.forwardSlot(m, slot, build)
}

// pinnedRedirect handles a MOVED or ASK answering a request on a pinned
// link (the slot moved while a client held state on its old owner). The
// request did not run. A blocking call (also one woken with UNBLOCKED
// because its node was demoted) is sent again on a link pinned to
// the new owner (for ASK: after ASKING), within max_redirects: the client
// sees its call block on, with its timeout counted anew. In a
// transaction the state on the old owner is worthless: the request gets
// a clear error, the transaction is broken (EXEC answers EXECABORT, a new
// WATCH starts over on the new owner) and the slot map is patched.
// TRYAGAIN, CLUSTERDOWN and LOADING reach the client as Redis said them.
// It reports whether it took m.
func (p *pool) pinnedRedirect(m *msg, reply []byte) bool {
	if m.blockFor != 0 && m.hasSlot && bytes.HasPrefix(reply, unblockedDemoted) {
		// The node was demoted (CLUSTER FAILOVER) while the call blocked
		// on it: the call did not pop anything; it blocks again on the
		// slot's owner (the demoted node answers MOVED to the new master
		// while the map still names it).
		c := m.owner()
		p.clusterHint("", HintNotMaster)
		if c != nil && c.rs != nil && c.rs.st != nil {
			// Redis closes the connection after that reply.
			for _, l := range c.rs.st.blocks {
				if l.blockedFor(c) && l.sc.srv == m.server {
					l.pin.doomed = true
				}
			}
		}
		if m.redirects < 250 {
			m.redirects++
		}
		if s := p.slotOwner(m.slot); s != nil && c != nil && !c.closed && int(m.redirects) <= p.cfg.Cluster.MaxRedirects {
			m.sentAt = 0
			p.sendBlocking(c, m, s, m.appendReq, false)
			return true
		}
		return false
	}
	kind, slot, addr := parseRedirect(reply)
	if kind != "MOVED" && kind != "ASK" {
		return false
	}
	c := m.owner()
	target := p.clusterServer(addr)
	if kind == "MOVED" {
		p.stats.Moved.Add(1)
		p.cluster.slots[slot] = int32(target.idx)
		p.clusterHint(addr, HintMoved)
	} else {
		p.stats.Asked.Add(1)
	}
	if m.redirects < 250 {
		m.redirects++
	}
	if m.blockFor != 0 && m.hasSlot && c != nil && !c.closed && int(m.redirects) <= p.cfg.Cluster.MaxRedirects {
		m.sentAt = 0
		p.sendBlocking(c, m, target, m.appendReq, kind == "ASK")
		return true
	}
	if m.blockFor != 0 {
		p.stats.RedirectsExhausted.Add(1)
		p.fail(m, &slotError{slot: int32(slot), what: "too many redirections (" + kind + ")"})
		return true
	}
	// A transaction's request (the other pinned requests are blocking
	// calls): the transaction is over on that node.
	err := &slotMovedError{slot: int32(slot), addr: addr}
	if c != nil && c.rs != nil && c.rs.st != nil && c.rs.st.txn.link != nil {
		c.rs.st.txn.broken = err
	}
	p.fail(m, err)
	return true
}

// unblockedDemoted starts the error Redis wakes a blocked client with when
// its master becomes a replica.
var unblockedDemoted = []byte("-UNBLOCKED force unblock from blocking operation, instance state changed")

// slotMovedError answers a transaction's request that its slot's owner
// refused with MOVED or ASK: the transaction cannot go on there.
type slotMovedError struct {
	slot int32
	addr string
}

func (e *slotMovedError) Error() string {
	return "nuthatch: slot " + strconv.Itoa(int(e.slot)) + " moved to " + e.addr +
		" during the transaction; it is aborted (EXEC answers EXECABORT), run it again"
}

// clusterSnapshot adds to a cluster pool's snapshot the slots each
// master owns and the replicas read from, each under its own address (a
// demoted master's counters and its replica's are one node's).
func (p *pool) clusterSnapshot(ps *PoolSnapshot) {
	cs := p.cluster
	var owned []int64
	for _, i := range cs.slots {
		if i >= 0 {
			for int(i) >= len(owned) {
				owned = append(owned, 0)
			}
			owned[i]++
		}
	}
	byName := make(map[string]int, len(ps.Servers))
	for i := range ps.Servers {
		if i < len(owned) {
			ps.Servers[i].Slots = owned[i]
		}
		byName[ps.Servers[i].Name] = i
	}
	for _, s := range p.servers {
		for _, r := range s.replicas {
			st := &r.stats
			snap := ServerSnapshot{Name: r.addr.Addr, Address: r.addr.Addr, Role: "replica", ReplicaOf: s.name,
				ServerEOF: st.EOF.Load(), ServerErr: st.Err.Load(), ServerTimedout: st.Timedout.Load(),
				ServerConnections: st.Connections.Load(), Requests: st.Requests.Load(), RequestBytes: st.RequestBytes.Load(),
				Responses: st.Responses.Load(), ResponseBytes: st.ResponseBytes.Load(), ServerLatency: r.latency.snapshot()}
			i, seen := byName[snap.Name]
			if !seen {
				byName[snap.Name] = len(ps.Servers)
				ps.Servers = append(ps.Servers, snap)
				continue
			}
			d := &ps.Servers[i]
			d.ServerEOF += snap.ServerEOF
			d.ServerErr += snap.ServerErr
			d.ServerTimedout += snap.ServerTimedout
			d.ServerConnections += snap.ServerConnections
			d.Requests += snap.Requests
			d.RequestBytes += snap.RequestBytes
			d.Responses += snap.Responses
			d.ResponseBytes += snap.ResponseBytes
			d.ServerLatency.Add(snap.ServerLatency)
			if d.Role != "master" {
				d.Role, d.ReplicaOf = "replica", s.name
			}
		}
	}
}
