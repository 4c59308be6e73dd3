// Package cluster reads Redis Cluster slot maps for the cluster pools: it
// is the one place that asks a cluster for its topology (the master
// process runs it), and what it reads is data, the owner of every slot,
// that the workers route by.
//
// It asks CLUSTER SLOTS of the nodes it knows (the last map's masters,
// then the seeds), every refresh_interval with jitter, and soon after a
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
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/respconn"
)

// Map is a cluster pool's slot map: Owner[slot] indexes Nodes, -1 when
// the slot has no owner.
type Map struct {
	Pool    string
	Version uint64
	Nodes   []string
	Ranges  []Range
}

// Range is a run of slots and its owner (an index into Map.Nodes).
type Range struct{ Start, End, Node int }

const (
	askTimeout = 500 * time.Millisecond
	fastPoll   = 200 * time.Millisecond
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

	nodes   []string // the last map's masters
	sig     string   // the last map, to tell a change
	version uint64
	lastErr string
	conns   map[string]*respconn.Conn
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
			kick: make(chan struct{}, 1), conns: map[string]*respconn.Conn{}}
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
		m, err := t.slots(addr)
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", addr, err)
			continue
		}
		if len(m.Ranges) == 0 {
			lastErr = fmt.Errorf("%s: no slot is assigned", addr)
			continue
		}
		t.lastErr = ""
		sig := fmt.Sprint(m.Nodes, m.Ranges)
		if sig == t.sig && !confirm {
			return
		}
		if sig != t.sig {
			log.WithFields(logrus.Fields{"masters": len(m.Nodes), "ranges": len(m.Ranges), "from": addr}).Info("cluster slot map read")
		}
		t.sig, t.nodes = sig, m.Nodes
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

// slots asks one node for CLUSTER SLOTS.
func (t *target) slots(addr string) (Map, error) {
	c := t.conns[addr]
	if c == nil {
		var err error
		if c, err = respconn.Dial(addr, askTimeout, t.user, t.pass); err != nil {
			return Map{}, err
		}
		t.conns[addr] = c
	}
	v, err := c.Do(askTimeout, "CLUSTER", "SLOTS")
	if err != nil {
		if _, reply := err.(respconn.ReplyError); !reply {
			c.Close()
			delete(t.conns, addr)
		}
		return Map{}, err
	}
	host, _, _ := net.SplitHostPort(addr)
	return parseSlots(v, host)
}

// parseSlots reads CLUSTER SLOTS: [[start, end, [ip, port, id, ...],
// replicas...], ...]. An empty or null ip means the host asked.
func parseSlots(v any, askedHost string) (Map, error) {
	ranges, ok := v.([]any)
	if !ok {
		return Map{}, fmt.Errorf("cluster: CLUSTER SLOTS is not an array")
	}
	var m Map
	index := map[string]int{}
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
		port, ok := node[1].(int64)
		if !ok || port <= 0 || port > 65535 || ip == "?" {
			continue
		}
		if ip == "" {
			ip = askedHost
		}
		addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
		i, seen := index[addr]
		if !seen {
			i = len(m.Nodes)
			index[addr] = i
			m.Nodes = append(m.Nodes, addr)
		}
		m.Ranges = append(m.Ranges, Range{Start: int(start), End: int(end), Node: i})
	}
	slices.SortFunc(m.Ranges, func(a, b Range) int { return a.Start - b.Start })
	return m, nil
}
