// Package cluster reads Redis Cluster slot maps for the cluster pools: it
// is the one place that asks a cluster for its topology (the master
// process runs it), and what it reads is data, the owner of every slot,
// that the workers route by.
//
// It asks CLUSTER SHARDS (Redis 7.0+: it lists the masters that own no
// slots yet too, and every node's health) of the nodes it knows (the last
// map's masters, their replicas, then the seeds), CLUSTER SLOTS of a node
// that does not know SHARDS, every refresh_interval with jitter, and soon
// after a
// worker reports a MOVED, a dead node or CLUSTERDOWN: such reports are
// coalesced, and while one is recent it polls every fastPoll, since the
// first refresh after a master's death still names it (the replica is
// promoted a node-timeout or so later).
package cluster

import (
	"fmt"
	"math/rand"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/respconn"
)

// Map is a cluster pool's topology: its masters (Nodes, those that own no
// slot yet too), each master's replicas fit for reads (Replicas[i] of
// Nodes[i]: online and synced at least once), and the slot ranges each
// master owns.
type Map struct {
	Pool     string
	Version  uint64
	Nodes    []string
	Replicas [][]string
	Ranges   []Range
	// Source is the command it was read with: "CLUSTER SHARDS" or
	// "CLUSTER SLOTS".
	Source string
	// loading: replicas CLUSTER SHARDS reports "loading" (the asked node
	// saw no replication offset of theirs yet), by master.
	loading map[string][]string
}

// Range is a run of slots and its owner (an index into Map.Nodes).
type Range struct{ Start, End, Node int }

const (
	askTimeout = 500 * time.Millisecond
	fastPoll   = 200 * time.Millisecond
	// noMapPoll: how often the cluster is asked while no map was read
	// (nodes not up yet), when no worker reports clients waiting.
	noMapPoll = time.Second
	// hintedFor is how long reports keep the fast polling on.
	hintedFor = 15 * time.Second
)

// Watcher follows every cluster pool it was given.
type Watcher struct {
	log  *logrus.Entry
	maps chan Map

	mu      sync.Mutex
	targets map[string]*target
	closed  chan struct{}
}

type target struct {
	pool    string
	seeds   []string
	pass    string
	user    string
	refresh time.Duration
	kick    chan struct{}

	mu      sync.Mutex // hinted, confirm
	hinted  time.Time  // the last report from a worker
	confirm bool

	nodes   []string // the last map's masters, then their replicas
	sig     string   // the last map, to tell a change
	version uint64
	lastErr string
	conns   map[string]*respconn.Conn
	// noShards: nodes that refused CLUSTER SHARDS (before 7.0), asked
	// CLUSTER SLOTS instead.
	noShards map[string]bool
	// replicaOf: the last map's replicas and their masters.
	replicaOf map[string]string
}

// New returns a watcher; Watch gives it pools.
func New(log *logrus.Entry) *Watcher {
	return &Watcher{log: log.WithField("component", "cluster"), maps: make(chan Map, 64),
		targets: map[string]*target{}, closed: make(chan struct{})}
}

// Maps delivers slot maps as they are read: on a change, and after a
// report even when unchanged (workers then try the owners again).
func (w *Watcher) Maps() <-chan Map { return w.maps }

// Watch starts following cfg's cluster pools not followed yet.
func (w *Watcher) Watch(cfg *config.Config) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range cfg.Pools {
		cc := p.Cluster
		if cc == nil {
			continue
		}
		if t, ok := w.targets[p.Name]; ok && slices.Equal(t.seeds, cc.Seeds) && t.pass == p.RedisAuth && t.user == p.RedisUsername {
			continue
		}
		if old, ok := w.targets[p.Name]; ok {
			close(old.kick)
		}
		t := &target{pool: p.Name, seeds: cc.Seeds, pass: p.RedisAuth, user: p.RedisUsername, refresh: cc.RefreshInterval,
			kick: make(chan struct{}, 1), conns: map[string]*respconn.Conn{}, noShards: map[string]bool{}}
		w.targets[p.Name] = t
		go w.follow(t)
	}
}

// Hint reports a MOVED, a dead node or CLUSTERDOWN seen by a worker.
func (w *Watcher) Hint(pool string) {
	w.mu.Lock()
	t := w.targets[pool]
	w.mu.Unlock()
	if t == nil {
		return
	}
	t.mu.Lock()
	t.hinted, t.confirm = time.Now(), true
	t.mu.Unlock()
	defer func() { recover() }() // a replaced target's closed channel
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Close stops the watcher.
func (w *Watcher) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.closed:
	default:
		close(w.closed)
	}
}

func (w *Watcher) follow(t *target) {
	defer func() {
		for _, c := range t.conns {
			c.Close()
		}
	}()
	for {
		w.refresh(t)
		t.mu.Lock()
		fast := time.Since(t.hinted) < hintedFor
		t.mu.Unlock()
		wait := t.refresh/2 + time.Duration(rand.Int63n(int64(t.refresh)))
		if t.version == 0 {
			// No map yet: the workers' clients wait for the first one.
			wait = min(wait, noMapPoll)
		}
		if fast {
			wait = fastPoll
		}
		timer := time.NewTimer(wait)
		select {
		case <-w.closed:
			timer.Stop()
			return
		case _, ok := <-t.kick:
			timer.Stop()
			if !ok {
				return
			}
			// Coalesce a burst of reports into one read.
			time.Sleep(10 * time.Millisecond)
		case <-timer.C:
		}
	}
}

// refresh reads the slot map from the first node that answers.
func (w *Watcher) refresh(t *target) {
	t.mu.Lock()
	confirm := t.confirm
	t.confirm = false
	t.mu.Unlock()
	log := w.log.WithField("pool", t.pool)
	var lastErr error
	for _, addr := range candidates(t) {
		m, err := t.read(addr, log)
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", addr, err)
			continue
		}
		if len(m.Ranges) == 0 {
			lastErr = fmt.Errorf("%s: no slot is assigned", addr)
			continue
		}
		t.lastErr = ""
		t.keepReplicas(&m)
		sig := fmt.Sprint(m.Nodes, m.Replicas, m.Ranges)
		if sig == t.sig && !confirm {
			return
		}
		if sig != t.sig {
			log.WithFields(logrus.Fields{"masters": len(m.Nodes), "replicas": countReplicas(m), "ranges": len(m.Ranges),
				"from": addr, "via": m.Source}).Info("cluster slot map read")
		}
		t.sig, t.nodes = sig, append([]string(nil), m.Nodes...)
		for _, rs := range m.Replicas {
			t.nodes = append(t.nodes, rs...)
		}
		t.version++
		m.Pool, m.Version = t.pool, t.version
		select {
		case w.maps <- m:
		case <-w.closed:
		}
		return
	}
	if lastErr != nil && t.lastErr != lastErr.Error() {
		t.lastErr = lastErr.Error()
		log.WithError(lastErr).Warn("cannot read the cluster's slot map")
	}
}

// candidates are the nodes to ask, the last map's masters first.
func candidates(t *target) []string {
	out := append([]string(nil), t.nodes...)
	for _, s := range t.seeds {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// keepReplicas keeps in m a replica of the last map that the node asked
// now reports "loading" under the same master: a node that has not had
// the replica's gossip yet says so of a replica the others see synced,
// and reads would flap between it and the master with every refresh. A
// replica that is really loading answers LOADING, and its reads go
// elsewhere (proxy/replica.go).
func (t *target) keepReplicas(m *Map) {
	for i, master := range m.Nodes {
		for _, r := range m.loading[master] {
			if t.replicaOf[r] == master && !slices.Contains(m.Replicas[i], r) {
				m.Replicas[i] = append(m.Replicas[i], r)
				slices.Sort(m.Replicas[i])
			}
		}
	}
	t.replicaOf = map[string]string{}
	for i, rs := range m.Replicas {
		for _, r := range rs {
			t.replicaOf[r] = m.Nodes[i]
		}
	}
}

func countReplicas(m Map) int {
	n := 0
	for _, rs := range m.Replicas {
		n += len(rs)
	}
	return n
}

// read asks one node for the topology: CLUSTER SHARDS, or CLUSTER SLOTS
// when the node refuses SHARDS (an error reply: Redis before 7.0).
func (t *target) read(addr string, log *logrus.Entry) (Map, error) {
	c := t.conns[addr]
	if c == nil {
		var err error
		if c, err = respconn.Dial(addr, askTimeout, t.user, t.pass); err != nil {
			return Map{}, err
		}
		t.conns[addr] = c
	}
	host, _, _ := net.SplitHostPort(addr)
	if !t.noShards[addr] {
		v, err := c.Do(askTimeout, "CLUSTER", "SHARDS")
		if err == nil {
			m, err := parseShards(v, host)
			m.Source = "CLUSTER SHARDS"
			return m, err
		}
		if _, reply := err.(respconn.ReplyError); !reply {
			c.Close()
			delete(t.conns, addr)
			return Map{}, err
		}
		log.WithField("node", addr).WithField("reply", err.Error()).Info("node refused CLUSTER SHARDS; reading CLUSTER SLOTS from it")
		t.noShards[addr] = true
	}
	v, err := c.Do(askTimeout, "CLUSTER", "SLOTS")
	if err != nil {
		if _, reply := err.(respconn.ReplyError); !reply {
			c.Close()
			delete(t.conns, addr)
		}
		return Map{}, err
	}
	m, err := parseSlots(v, host)
	m.Source = "CLUSTER SLOTS"
	return m, err
}

// nodeAddr makes host:port of a topology reply's node; an empty ip means
// the host asked, "?" an unknown endpoint.
func nodeAddr(ip string, port int64, askedHost string) (string, bool) {
	if port <= 0 || port > 65535 || ip == "?" {
		return "", false
	}
	if ip == "" {
		ip = askedHost
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(port))), true
}

// builder collects a Map's nodes without duplicates.
type builder struct {
	m     Map
	index map[string]int
}

func (b *builder) master(addr string) int {
	if b.index == nil {
		b.index = map[string]int{}
	}
	i, seen := b.index[addr]
	if !seen {
		i = len(b.m.Nodes)
		b.index[addr] = i
		b.m.Nodes = append(b.m.Nodes, addr)
		b.m.Replicas = append(b.m.Replicas, nil)
	}
	return i
}

func (b *builder) replica(master int, addr string) {
	if slices.Contains(b.m.Replicas[master], addr) {
		return
	}
	b.m.Replicas[master] = append(b.m.Replicas[master], addr)
}

// done sorts the masters, the ranges and the replicas (a stable
// signature: each node lists the shards in an order of its own, and the
// same map read from two nodes must not count as a change, which would
// push it to the workers and reorder SCAN's masters at every read) and
// drops a replica named as a master too (a reply read mid-failover).
func (b *builder) done() Map {
	order := make([]int, len(b.m.Nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return strings.Compare(b.m.Nodes[x], b.m.Nodes[y]) })
	at := make([]int, len(order)) // old index -> sorted index
	nodes, replicas := make([]string, len(order)), make([][]string, len(order))
	for i, old := range order {
		at[old] = i
		nodes[i], replicas[i] = b.m.Nodes[old], b.m.Replicas[old]
	}
	b.m.Nodes, b.m.Replicas = nodes, replicas
	for i := range b.m.Ranges {
		b.m.Ranges[i].Node = at[b.m.Ranges[i].Node]
	}
	slices.SortFunc(b.m.Ranges, func(a, b Range) int { return a.Start - b.Start })
	for i, rs := range b.m.Replicas {
		rs = slices.DeleteFunc(rs, func(a string) bool { _, m := b.index[a]; return m })
		slices.Sort(rs)
		b.m.Replicas[i] = rs
	}
	return b.m
}

// parseShards reads CLUSTER SHARDS in RESP2: [[ "slots", [s1, e1, ...],
// "nodes", [[field, value, ...], ...] ], ...]. A shard's master is its
// node of role master whatever its health (the slots are its until a
// failover names another); a replica counts when online and synced once
// (a replication offset above 0), as CLUSTER SLOTS lists them.
func parseShards(v any, askedHost string) (Map, error) {
	shards, ok := v.([]any)
	if !ok {
		return Map{}, fmt.Errorf("cluster: CLUSTER SHARDS is not an array")
	}
	var b builder
	for _, sh := range shards {
		f, ok := sh.([]any)
		if !ok {
			continue
		}
		var slots, nodes []any
		for i := 0; i+1 < len(f); i += 2 {
			switch k, _ := f[i].(string); k {
			case "slots":
				slots, _ = f[i+1].([]any)
			case "nodes":
				nodes, _ = f[i+1].([]any)
			}
		}
		master := -1
		var replicas, loading []string
		for _, n := range nodes {
			nf, ok := n.([]any)
			if !ok {
				continue
			}
			var ip, endpoint, role, health string
			var port, offset int64
			for i := 0; i+1 < len(nf); i += 2 {
				switch k, _ := nf[i].(string); k {
				case "ip":
					ip, _ = nf[i+1].(string)
				case "endpoint":
					endpoint, _ = nf[i+1].(string)
				case "port":
					port, _ = nf[i+1].(int64)
				case "role":
					role, _ = nf[i+1].(string)
				case "health":
					health, _ = nf[i+1].(string)
				case "replication-offset":
					offset, _ = nf[i+1].(int64)
				}
			}
			if endpoint != "" && endpoint != "?" {
				ip = endpoint // as cluster-preferred-endpoint-type says
			}
			addr, ok := nodeAddr(ip, port, askedHost)
			if !ok {
				continue
			}
			switch role {
			case "master":
				if master < 0 {
					master = b.master(addr)
				}
			case "replica":
				switch {
				case health == "online" && offset > 0:
					replicas = append(replicas, addr)
				case health == "loading":
					loading = append(loading, addr)
				}
			}
		}
		if master < 0 {
			continue // no master known (yet): nothing to route to
		}
		for _, r := range replicas {
			b.replica(master, r)
		}
		if len(loading) > 0 {
			if b.m.loading == nil {
				b.m.loading = map[string][]string{}
			}
			b.m.loading[b.m.Nodes[master]] = loading
		}
		for i := 0; i+1 < len(slots); i += 2 {
			start, ok1 := slots[i].(int64)
			end, ok2 := slots[i+1].(int64)
			if !ok1 || !ok2 || start < 0 || end < start || end >= hashkit.SlotCount {
				continue
			}
			b.m.Ranges = append(b.m.Ranges, Range{Start: int(start), End: int(end), Node: master})
		}
	}
	return b.done(), nil
}

// parseSlots reads CLUSTER SLOTS: [[start, end, [ip, port, id, ...],
// [replica ip, port, id, ...], ...], ...]. It names only the masters that
// own slots, and the replicas Redis deems fit (not failed, synced once).
func parseSlots(v any, askedHost string) (Map, error) {
	ranges, ok := v.([]any)
	if !ok {
		return Map{}, fmt.Errorf("cluster: CLUSTER SLOTS is not an array")
	}
	var b builder
	for _, r := range ranges {
		e, ok := r.([]any)
		if !ok || len(e) < 3 {
			continue
		}
		start, ok1 := e[0].(int64)
		end, ok2 := e[1].(int64)
		node, ok3 := e[2].([]any)
		if !ok1 || !ok2 || !ok3 || len(node) < 2 || start < 0 || end < start || end >= hashkit.SlotCount {
			continue
		}
		ip, _ := node[0].(string)
		port, _ := node[1].(int64)
		addr, ok := nodeAddr(ip, port, askedHost)
		if !ok {
			continue
		}
		i := b.master(addr)
		b.m.Ranges = append(b.m.Ranges, Range{Start: int(start), End: int(end), Node: i})
		for _, rv := range e[3:] {
			rn, ok := rv.([]any)
			if !ok || len(rn) < 2 {
				continue
			}
			rip, _ := rn[0].(string)
			rport, _ := rn[1].(int64)
			if ra, ok := nodeAddr(rip, rport, askedHost); ok {
				b.replica(i, ra)
			}
		}
	}
	return b.done(), nil
}
