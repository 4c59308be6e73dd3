package proxy

import (
	"errors"
	"slices"
	"strconv"
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
	switch {
	case errors.As(err, &pe):
		return pe.Error(), true
	case errors.As(err, &pl):
		return pl.Error(), true
	}
	return "", false
}

// pin lends c a link to s for a stateful command of the given kind: an
// idle one of c's protocol version, or a new one.
func (p *pool) pin(c *clientConn, s *server, kind uint8) (*link, error) {
	if s.managed && !s.hasMaster() {
		return nil, &noMasterError{server: s.name}
	}
	resp3, dbSel := c.linkClass&linkRESP3 != 0, c.linkClass>>1
	for i := len(s.pinIdle) - 1; i >= 0; i-- {
		l := s.pinIdle[i]
		if l.sc.resp3 != resp3 || l.sc.dbSel != dbSel || l.dead {
			continue
		}
		s.pinIdle = slices.Delete(s.pinIdle, i, i+1)
		l.pin.owner, l.pin.kind = c, kind
		p.stats.PinnedReused.Add(1)
		return l, nil
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
	l.pin = &pinState{owner: c, kind: kind}
	s.pins = append(s.pins, l)
	p.stats.PinnedOpened.Add(1)
	return l, nil
}

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
func (l *link) pinKilled(pending []*msg, err error) {
	s := l.sc.srv
	if i := slices.Index(s.pins, l); i >= 0 {
		s.pins = slices.Delete(s.pins, i, i+1)
	}
	if i := slices.Index(s.pinIdle, l); i >= 0 {
		s.pinIdle = slices.Delete(s.pinIdle, i, i+1)
	}
	if err == errAddressChanged {
		err = &pinLostError{server: s.name}
	}
	for _, m := range pending {
		if m.client == nil && m.parent == nil {
			m.free()
			continue
		}
		s.pool.fail(m, err)
	}
	if o := l.pin.owner; o != nil && !o.closed && o.rs != nil && o.rs.st != nil {
		o.rs.st.linkLost(o, l, err)
	}
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
