package proxy

import (
	"errors"
	"io"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// Pinned links (issue #21). A transaction, a blocking call or a
// subscription needs a server connection of its own: its state (MULTI,
// WATCH, a client blocked in BLPOP, SUBSCRIBE) lives in the server's
// connection, which the shared links cannot hold for one client. The
// engine lends such a client a link of its own, from a pool per server
// and worker bounded by max_pinned_links (lent and idle together), opened
// on demand with the same handshake as a shared link of the client's
// protocol version (AUTH, SELECT, HELLO 3). When the client is done the
// link is given back: once every request on it is answered it waits,
// clean, for the next pin, and is closed after pinned_idle_timeout
// unused. A link whose state is unknown (a client that disconnected while
// blocked or subscribed) is closed instead; a client that disconnects in a
// transaction has DISCARD (or UNWATCH) sent first, and the link is reused.
//
// Pinned links are not among the server's shared links (server.eachConn):
// they are timed out by their own rule (expirePins: a blocking call is not
// timed out by the pool's timeout), and a server whose master moves closes
// them (killPins), failing what is in flight; the client gets the error.

// Pin kinds.
const (
	pinTxn   uint8 = iota + 1 // WATCH, MULTI ... EXEC
	pinBlock                  // one blocking call (and those queued behind it)
	pinSub                    // SUBSCRIBE, PSUBSCRIBE
)

// pinState is a pinned link's: to whom it is lent and what the server was
// told on it.
type pinState struct {
	owner *clientConn // nil while idle
	kind  uint8
	// giveBack: the owner is done; the link becomes idle once its
	// requests are answered.
	giveBack  bool
	idleSince int64
	// headAt is when the link last read a reply: the request at its head
	// has waited since then, or since it was written.
	headAt int64
	// What the server was sent, for a clean give-back: MULTI without
	// EXEC/DISCARD, WATCH without EXEC/DISCARD/UNWATCH.
	multi, watching bool
	// sub is set on a subscriber link: every frame the server sends that
	// answers no request goes to it.
	sub *subLink
	// doomed: the server closes the link after its last reply (a blocked
	// client woken with UNBLOCKED); nothing more is sent on it.
	doomed bool
}

// pinError refuses a pin over max_pinned_links.
type pinError struct{ max int }

func (e *pinError) Error() string {
	return "nuthatch: too many pinned connections (max_pinned_links " + strconv.Itoa(e.max) + ")"
}

// pinLostError fails what was in flight on a pinned link closed because
// its server's master moved.
type pinLostError struct{ server string }

func (e *pinLostError) Error() string {
	return "nuthatch: server '" + e.server + "' master moved; the pinned connection was closed"
}

// pinErrorText is proxyErrorText's part for pinned links.
func pinErrorText(err error) (string, bool) {
	var pe *pinError
	var pl *pinLostError
	var tl *txnLostError
	switch {
	case errors.As(err, &pe):
		return pe.Error(), true
	case errors.As(err, &pl):
		return pl.Error(), true
	case errors.As(err, &tl):
		return tl.Error(), true
	}
	return "", false
}

// pin lends c a link to s for a stateful command of the given kind: an
// idle one of c's protocol version, or a new one. In a cluster pool it
// may answer errPinWait instead: c is parked (parkForOwner) until s, or
// the slot's next owner, can be reached; the caller leaves the request
// unconsumed.
func (p *pool) pin(c *clientConn, s *server, kind uint8) (*link, error) {
	// late: c waited failover_timeout for this request (only this one).
	late := p.cluster != nil && c.ownerLate
	if late {
		c.ownerLate = false
	}
	if s.managed && !s.hasMaster() {
		if p.cluster != nil && !late && c.parkForOwner() {
			return nil, errPinWait
		}
		return nil, &noMasterError{server: s.name}
	}
	resp3, dbSel := c.linkClass&linkRESP3 != 0, c.linkClass>>1
	dialing := false
	for i := len(s.pinIdle) - 1; i >= 0; i-- {
		l := s.pinIdle[i]
		if l.sc.resp3 != resp3 || l.sc.dbSel != dbSel || l.dead {
			continue
		}
		if l.fd < 0 && p.cluster != nil {
			dialing = true // a probe (below): wait for its connect
			continue
		}
		if p.cluster != nil && l.peerClosed() {
			l.kill(io.EOF)
			continue
		}
		s.pinIdle = slices.Delete(s.pinIdle, i, i+1)
		l.pin.owner, l.pin.kind = c, kind
		p.stats.PinnedReused.Add(1)
		c.ownerSince = 0
		return l, nil
	}
	if late {
		// Its node never answered a probe in failover_timeout.
		return nil, &noMasterError{server: s.name}
	}
	if dialing && c.parkForOwner() {
		return nil, errPinWait
	}
	limit := p.cfg.MaxPinnedLinks
	if len(s.pins) >= limit {
		if len(s.pinIdle) == 0 || limit == 0 {
			p.stats.PinnedRefused.Add(1)
			if p.limitLog.allow(p.lp.now) {
				p.log.WithField("server", s.name).WithField("max_pinned_links", limit).Warn("too many pinned connections")
			}
			return nil, &pinError{max: limit}
		}
		// Make room: the oldest idle link (of the other version).
		s.pinIdle[0].kill(errLinkShutdown)
	}
	sc := &serverConn{srv: s, resp3: resp3, dbSel: dbSel}
	l := sc.link()
	s.pins = append(s.pins, l)
	p.stats.PinnedOpened.Add(1)
	if p.cluster != nil && c.parkForOwner() {
		// A cluster node may be dead while the map still names it (a
		// master killed before its replica is promoted): the new link
		// is a probe, idle until it connects, and c waits for it (or
		// for the slot's next owner) with its request unread, instead of
		// failing at once when the connect is refused.
		l.pin = &pinState{idleSince: p.lp.now}
		s.pinIdle = append(s.pinIdle, l)
		return nil, errPinWait
	}
	l.pin = &pinState{owner: c, kind: kind}
	c.ownerSince = 0
	return l, nil
}

// errPinWait: the client waits for a reachable owner (parkForOwner); its
// request is not consumed.
var errPinWait = errors.New("proxy: waiting for a reachable slot owner")

// unpin gives l back: idle once what is in flight on it is answered.
func (l *link) unpin() {
	if l.pin == nil || l.dead {
		return
	}
	l.pin.giveBack = true
	l.maybeIdle()
}

// maybeIdle makes a given-back link idle once nothing is in flight.
func (l *link) maybeIdle() {
	pin := l.pin
	if l.dead || !pin.giveBack || l.head < len(l.inflight) || l.stream != nil || len(l.wbuf) > l.woff {
		return
	}
	if pin.multi || pin.watching || pin.sub != nil || pin.doomed {
		// Not clean: the server holds state a next owner must not see.
		l.kill(errLinkShutdown)
		return
	}
	*pin = pinState{idleSince: l.lp.now}
	s := l.sc.srv
	s.pinIdle = append(s.pinIdle, l)
}

// pinRead follows a read of a pinned link.
func (l *link) pinRead() {
	l.pin.headAt = l.lp.now
	if l.pin.giveBack {
		l.maybeIdle()
	}
}

// sendPinned queues m, a request of a pinned client, on its link.
func (p *pool) sendPinned(m *msg, l *link, build func(dst []byte) []byte) {
	s := l.sc.srv
	m.server, m.pinned = s, true
	s.stats.Requests.Add(1)
	if !l.enqueueFunc(m, build) {
		p.fail(m, ErrClosed)
	}
}

// sendInternal queues a request of the proxy's own on a pinned link
// (MULTI, DISCARD, UNWATCH, a transaction's early keyless commands): its
// reply is dropped.
func (l *link) sendInternal(build func(dst []byte) []byte) {
	m := l.lp.newMsg(nil)
	m.uncounted = true
	if !l.enqueueFunc(m, build) {
		m.free()
	}
}

// pinKilled: a pinned link died with pending requests. They fail (never
// replayed: the state they depended on is gone) and the owner is told.
func (l *link) pinKilled(pending []*msg, err error, connected bool) {
	s := l.sc.srv
	cluster := s.pool.cluster != nil
	if cluster && !connected && err != errLinkShutdown {
		// The node refuses connections: stateful requests wait for the
		// next map instead of dialing it again.
		s.markDown(HintUnreachable)
	}
	if i := slices.Index(s.pins, l); i >= 0 {
		s.pins = slices.Delete(s.pins, i, i+1)
	}
	if i := slices.Index(s.pinIdle, l); i >= 0 {
		s.pinIdle = slices.Delete(s.pinIdle, i, i+1)
	}
	if err == errAddressChanged {
		err = &pinLostError{server: s.name}
	}
	// In a cluster pool a node that died (not one closed by the proxy)
	// leaves what was written to it in doubt: EXEC and a blocking pop
	// may have run, and fail with the unknown-outcome error (never
	// replayed); a transaction whose EXEC was not written did not run.
	died := cluster && err != errLinkShutdown && !errors.As(err, new(*pinLostError))
	execSent := false
	for _, m := range pending {
		execSent = execSent || (m.exec && m.sentAt != 0)
	}
	if died && l.pin.kind == pinTxn && !execSent {
		err = &txnLostError{server: s.name}
	}
	for _, m := range pending {
		if m.client == nil && m.parent == nil {
			m.free()
			continue
		}
		if died && m.sentAt != 0 && (execSent || m.blockFor != 0) {
			if m.exec || m.blockFor != 0 {
				s.pool.stats.OutcomeUnknown.Add(1)
			}
			s.pool.fail(m, &outcomeError{server: s.name})
			continue
		}
		s.pool.fail(m, err)
	}
	if o := l.pin.owner; o != nil && !o.closed && o.rs != nil && o.rs.st != nil {
		o.rs.st.linkLost(o, l, err)
	}
}

// txnLostError fails the requests of a transaction whose node died
// before its EXEC was written (cluster pools): nothing of it ran; EXEC
// answers EXECABORT with it.
type txnLostError struct{ server string }

func (e *txnLostError) Error() string {
	return "nuthatch: server '" + e.server + "' lost the connection before EXEC; the transaction did not run, run it again"
}

// peerClosed reports whether an idle pinned link's server has closed it
// (a node killed a moment ago, its EOF not read yet): one peek, before
// the link is lent, so that a transaction is not begun on a dead node.
func (l *link) peerClosed() bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(l.fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return !isAgain(err) && err != unix.EINTR
	}
	return n == 0
}

// killPins closes every pinned link of s (its master moved, or the worker
// stops).
func (s *server) killPins(err error) {
	for _, l := range slices.Clone(s.pins) {
		l.kill(err)
	}
}

// expirePins applies the timeouts of s's pinned links: the pool's timeout
// to a transaction's requests, a blocking call's own timeout (plus the
// pool's, for the server to answer) to the call at the head of its link,
// and pinned_idle_timeout to idle links.
func (s *server) expirePins(now, timeout int64) {
	idle := int64(s.pool.cfg.PinnedIdleTimeout)
	for _, l := range slices.Clone(s.pins) {
		if l.dead {
			continue
		}
		if l.pin.owner == nil && !l.pin.giveBack {
			if idle > 0 && now-l.pin.idleSince > idle {
				l.kill(errLinkShutdown)
			}
			continue
		}
		if l.head >= len(l.inflight) {
			continue
		}
		head := l.inflight[l.head]
		switch {
		case head.blockFor < 0:
			// Blocks for as long as it takes.
		case head.blockFor > 0:
			since := max(head.sentAt, l.pin.headAt)
			if timeout > 0 && head.sentAt != 0 && now > since+head.blockFor+timeout {
				l.kill(ErrTimeout)
			}
		case timeout > 0 && l.late(now, timeout):
			l.kill(ErrTimeout)
		}
	}
}
