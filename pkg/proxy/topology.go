package proxy

import (
	"errors"
	"strings"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// Servers whose address moves (a Sentinel pool's masters): the address is
// data pushed to the engine (SetServerAddresses), which does no discovery
// of its own; it reports what it sees (a refused connection, a server that
// says it is no master) through the pool's hint function and waits for the
// next word. Meanwhile requests for such a server wait, bounded in time
// (failover_timeout) and in count, and are replayed when they may be:
// retry.go holds that rule.

// ServerAddress is one server's address as the topology source last
// resolved it; Version grows with every resolution, so a stale message
// never wins over a newer one.
type ServerAddress struct {
	Pool    string `json:"pool"`
	Server  string `json:"server"`
	Addr    string `json:"addr"` // host:port; "" while the source knows none
	Version uint64 `json:"version"`
	// Paused: the master is being failed over; writes wait for the next
	// address (reads still go to Addr).
	Paused bool `json:"paused,omitempty"`
	// Replicas are the server's replicas fit for reads, for a pool whose
	// read_from is not "master" (replica.go); versioned with Addr.
	Replicas []string `json:"replicas,omitempty"`
}

// maxWaiting bounds the requests that wait for one server's master.
const maxWaiting = 4096

// Hint reasons a worker reports to the topology source.
const (
	HintUnreachable = "unreachable" // connecting failed, or the connection died
	HintNotMaster   = "not-master"  // the server answered READONLY, MASTERDOWN, ...
	HintWaiting     = "waiting"     // requests wait for an address
	HintMoved       = "moved"       // a cluster node answered MOVED
)

// hintEvery throttles a server's hints.
const hintEvery = int64(200e6)

// errNoMaster fails requests that waited failover_timeout for a master.
type noMasterError struct{ server string }

func (e *noMasterError) Error() string {
	return "nuthatch: server '" + e.server + "' has no master (failover in progress)"
}

// outcomeError fails a write whose connection was lost after it was
// written: the old master may or may not have applied it.
type outcomeError struct{ server string }

func (e *outcomeError) Error() string {
	return "nuthatch: server '" + e.server + "' lost the connection after the write was sent; it may or may not have been applied"
}

// errAddressChanged closes a server's links when its master moved.
var errAddressChanged = errors.New("proxy: the server's master moved")

// proxyErrorText is the reply text of the engine's own request errors.
func proxyErrorText(err error) (string, bool) {
	var nm *noMasterError
	var oe *outcomeError
	var se *slotError
	switch {
	case errors.As(err, &se):
		return se.Error(), true
	case errors.As(err, &nm):
		return nm.Error(), true
	case errors.As(err, &oe):
		return oe.Error(), true
	}
	var nr *noReplicaError
	if errors.As(err, &nr) {
		return nr.Error(), true
	}
	var sm *slotMovedError
	if errors.As(err, &sm) {
		return sm.Error(), true
	}
	if errors.Is(err, errNoSlotMap) {
		return errNoSlotMap.Error(), true
	}
	return pinErrorText(err)
}

// SetServerAddresses applies addresses from the topology source: a server
// whose address changed stops getting requests at once and its links
// close (requests are replayed or failed by retry.go's rule); waiting
// requests go to the new address.
func (px *Proxy) SetServerAddresses(addrs []ServerAddress) {
	px.lp.post(func() {
		for _, a := range addrs {
			if p, ok := px.pools[a.Pool]; ok {
				p.setAddress(a)
			}
		}
	})
}

// SetHintFunc sets where the engine reports what it saw of a moving
// server; fn is called on the loop and must not block.
func (px *Proxy) SetHintFunc(fn func(pool, server, reason string)) {
	px.lp.do(func() {
		for _, p := range px.order {
			p.hint = fn
		}
	})
}

func (p *pool) setAddress(a ServerAddress) {
	var s *server
	for _, sv := range p.servers {
		if sv.name == a.Server {
			s = sv
		}
	}
	if s == nil || !s.managed || a.Version < s.version {
		return
	}
	s.version = a.Version
	if a.Addr == "" {
		return
	}
	addr := config.Address{Network: "tcp", Addr: a.Addr}
	if addr != s.addr {
		old := s.addr.Addr
		s.addr = addr
		if old == "" {
			p.log.WithField("server", s.name).WithField("address", a.Addr).Info("server master known")
		} else {
			s.stats.Switches.Add(1)
			s.stats.SwitchedAt.Store(time.Now().UnixMicro())
			p.log.WithField("server", s.name).WithField("from", old).WithField("to", a.Addr).Info("server master moved")
		}
		// Stop writing to the old master now: what it acknowledges after
		// the switch is lost.
		s.eachConn(func(sc *serverConn) {
			if l := sc.current(); l != nil {
				l.kill(errAddressChanged)
			}
		})
		s.killPins(errAddressChanged)
	}
	s.down, s.paused = false, a.Paused
	if p.readFrom != config.ReadFromMaster {
		s.setReplicas(a.Replicas)
	}
	s.flushWaiting()
}

// hasMaster reports whether requests may be sent to s now.
func (s *server) hasMaster() bool {
	return !s.managed || (s.addr.Network != "" && !s.down)
}

// mayTake reports whether m may be sent to s now: a paused server takes
// reads only.
func (s *server) mayTake(m *msg) bool {
	return s.hasMaster() && (!s.paused || m.readOnly)
}

// park holds m until s has a master, or fails it when too many wait.
func (s *server) park(m *msg) {
	if len(s.waiting) >= maxWaiting {
		s.pool.fail(m, &noMasterError{server: s.name})
		return
	}
	m.sentAt = 0
	s.waiting = append(s.waiting, m)
	s.waitingHint()
}

// markDown stops sending to s until the topology source speaks again.
func (s *server) markDown(reason string) {
	s.down = true
	s.hintNow(reason)
}

func (s *server) hintNow(reason string) {
	p := s.pool
	if p.hint == nil {
		return
	}
	if now := p.lp.now; now-s.lastHint >= hintEvery {
		s.lastHint = now
		p.hint(p.cfg.Name, s.name, reason)
	}
}

// flushWaiting sends the waiting requests, in their order, once s has a
// master.
func (s *server) flushWaiting() {
	if !s.hasMaster() || len(s.waiting) == 0 {
		return
	}
	waiting := s.waiting
	s.waiting = nil
	for _, m := range waiting {
		if s.pool.cluster != nil {
			s.pool.sendSlot(m) // the slot may have moved meanwhile
		} else {
			s.pool.sendManaged(m, s)
		}
	}
}

// waitingHint: requests wait for a pause to end, which a refresh ends;
// no hint is needed then.
func (s *server) waitingHint() {
	if !s.paused {
		s.hintNow(HintWaiting)
	}
}

// expireWaiting fails the requests that waited failover_timeout; on the
// loop's tick. A server still without a master is hinted again.
func (s *server) expireWaiting(now int64) {
	if len(s.waiting) == 0 {
		return
	}
	limit := s.pool.failoverTimeout()
	keep := s.waiting[:0]
	for _, m := range s.waiting {
		if now-m.started() > limit {
			s.pool.fail(m, &noMasterError{server: s.name})
			continue
		}
		keep = append(keep, m)
	}
	clear(s.waiting[len(keep):])
	s.waiting = keep
	if len(keep) > 0 {
		s.waitingHint()
	}
}

// sendManaged queues m, whose request is in m.req, on a link of s, or
// parks it while s has no master.
func (p *pool) sendManaged(m *msg, s *server) {
	m.server = s
	if m.replicaOK && p.readFrom != config.ReadFromMaster {
		if r := s.pickReplica(p.lp.now); r != nil {
			// The master's count keeps every request for its data; the
			// replica's counts those it was sent.
			r.stats.Requests.Add(1)
			m.server = r
			s = r
		} else if p.readFrom == config.ReadFromReplica {
			p.fail(m, &noReplicaError{server: s.name})
			return
		}
	}
	if !s.mayTake(m) {
		s.park(m)
		return
	}
	class := linkDefault
	if c := m.owner(); c != nil {
		class = c.linkClass
	}
	for range 2 {
		if s.conn(class).link().enqueueFunc(m, m.appendReq) {
			return
		}
	}
	s.park(m)
}

func (m *msg) appendReq(dst []byte) []byte { return append(dst, m.req...) }

// notRunError reports whether a server's error reply proves the request
// did not run because the server is no master (or not ready): redis
// refuses before executing.
func notRunError(reply []byte) bool {
	if len(reply) < 2 || reply[0] != '-' {
		return false
	}
	r := reply[1:]
	for _, p := range []string{"READONLY ", "MASTERDOWN ", "LOADING ", "NOREPLICAS "} {
		if len(r) >= len(p) && strings.EqualFold(string(r[:len(p)]), p) {
			return true
		}
	}
	return false
}
