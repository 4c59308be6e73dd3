package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/acl"
	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// Hand-over (issue #24): a draining engine passes each client connection,
// at a moment it waits for nothing, to another engine (the next
// generation's worker) with the client's session, instead of closing it.
// Nothing the client sent is read twice or lost: a client is passed only
// when its buffered input is empty and nothing is in flight, so every byte
// it sent since is still in the kernel's socket buffer, where the adopting
// engine reads it. How the descriptor travels is the caller's business.

// Handoff is one client connection leaving an engine: its descriptor and
// what the adopting engine checks and restores.
type Handoff struct {
	Pool     string `json:"pool"`
	Listen   string `json:"listen"`   // the pool's listen address it connected to
	Protocol string `json:"protocol"` // the pool's protocol
	// State is the protocol's session (redisSession.appendState); empty
	// for a client without one (memcached, or no request yet).
	State []byte `json:"state,omitempty"`
	// Accepted is when the client connected (unix ns), for CLIENT LIST.
	Accepted int64 `json:"accepted,omitempty"`
	// AuthTag fingerprints the redis_auth the client authenticated
	// against (authTag): a new password makes it authenticate again.
	AuthTag string `json:"auth_tag,omitempty"`
	FD      int    `json:"-"` // owned by whoever holds the Handoff
}

// HandoverReport counts what a hand-over did with the engine's clients.
type HandoverReport struct {
	HandedOver int
	// Closed counts the clients closed instead, by reason (the
	// handoverBlocker reasons, "busy" for those still busy at the end).
	Closed map[string]int
}

// Reasons a client is closed rather than handed over.
const (
	leaveClosing  = "closing"        // it sent EOF or asked to close
	leaveTooLarge = "session_large"  // its session is over maxSessionState
	leaveEpoll    = "epoll"          // its descriptor could not leave the loop
	leaveBusy     = "busy"           // still busy when worker_shutdown_timeout ended
	leaveNoTarget = "no_next_worker" // no engine to take it
	leaveTLS      = "tls"            // TLS: crypto/tls cannot export its session state
)

// Sentinel errors of Adopt, by which a caller counts refusals.
var (
	ErrPoolGone        = errors.New("proxy: the pool is gone from the configuration")
	ErrListenMoved     = errors.New("proxy: the pool's listen address changed")
	ErrProtocolChanged = errors.New("proxy: the pool's protocol changed")
	ErrPoolDraining    = errors.New("proxy: the pool is draining")
	ErrTooManyClients  = errors.New("proxy: client_connections reached")
	ErrBadState        = errors.New("proxy: the session state cannot be restored")
)

// handoverBlocker says why c cannot be handed over now, "" when it can.
// It is the one test of eligibility: a transport that cannot be moved
// (TLS, whose state the standard library cannot export) answers here.
// A busy client or one holding a pinned link is not drained() yet, so it
// never reaches this test but at a boundary.
func (c *clientConn) handoverBlocker() string {
	switch {
	case c.eof || c.hup || c.noMore || c.closing || c.quit:
		return leaveClosing
	case c.inFlight() > 0 || c.rb.len() > 0 || c.needMore || c.skip > 0:
		return leaveBusy
	case c.rs != nil && c.rs.st != nil && c.rs.st.holds(c):
		return "pinned"
	case c.tls != nil || c.handshaking:
		return leaveTLS
	case c.lp.give == nil:
		return leaveNoTarget
	}
	return ""
}

// leave ends a drained client: handed over when it can be, closed as
// before when not.
func (c *clientConn) leave() {
	why := c.handoverBlocker()
	if why == "" {
		if why = c.handOver(); why == "" {
			return
		}
	}
	if c.lp.give != nil {
		c.lp.hoClosed[why]++
	}
	c.linger = why == leaveTLS && !c.handshaking
	c.close()
}

// handOver takes c out of the loop and gives its descriptor and session
// away; it returns why not, "" when done.
func (c *clientConn) handOver() string {
	lp, p := c.lp, c.pool
	h := Handoff{Pool: p.cfg.Name, Listen: p.cfg.Listen.String(), Protocol: string(p.cfg.Protocol), Accepted: c.accepted}
	if c.rs != nil {
		st, ok := c.rs.appendState(nil)
		if !ok {
			return leaveTooLarge
		}
		h.State = st
		if c.rs.authed {
			h.AuthTag = sessionAuthTag(c.rs.user, p.cfg.RedisAuth)
		}
	}
	// Out of the epoll set explicitly: the socket stays open (in flight,
	// then in the next worker), so closing our descriptor would leave it
	// registered here, and this loop would see the next worker's events.
	if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, c.fd, nil); err != nil {
		return leaveEpoll
	}
	if c.rs != nil && c.rs.st != nil {
		c.rs.st.clientGone(c) // gives back links it no longer holds
	}
	c.closed = true
	if c.fd < len(lp.handlers) {
		lp.handlers[c.fd] = nil
	}
	lp.held -= c.held
	c.held = 0
	c.queue, c.qhead = nil, 0
	c.rb.release()
	p.removeClient(c)
	p.stats.ClientHandedOver.Add(1)
	lp.hoHanded++
	h.FD, c.fd = c.fd, -1
	lp.give(h)
	return ""
}

// HandOver drains the proxy as Shutdown does, except that each client
// that becomes idle (nothing in flight, no partial request buffered, no
// pinned link) is passed to give, with its descriptor, instead of being
// closed. give runs on the event loop and must not block; it owns the
// descriptor. Clients still busy when ctx ends are closed.
func (px *Proxy) HandOver(ctx context.Context, give func(Handoff)) (HandoverReport, error) {
	px.lp.do(func() {
		px.lp.give = give
		px.lp.hoClosed = map[string]int{}
	})
	return px.drainAll(ctx)
}

// Adopt takes over client connections that another engine handed over,
// each into the pool it names if that pool is still served at the same
// listen address, with the same protocol, and under its
// client_connections. Every Handoff is either adopted or its descriptor
// closed; errs[i] says why the i-th was refused (nil: adopted).
func (px *Proxy) Adopt(hs []Handoff) (errs []error) {
	errs = make([]error, len(hs))
	px.run()
	px.lp.do(func() {
		for i, h := range hs {
			errs[i] = px.adopt(h)
		}
	})
	return errs
}

func (px *Proxy) adopt(h Handoff) error {
	p, ok := px.pools[h.Pool]
	var err error
	switch {
	case !ok:
		err = ErrPoolGone
	case p.cfg.Listen.String() != h.Listen:
		err = ErrListenMoved
	case string(p.cfg.Protocol) != h.Protocol:
		err = ErrProtocolChanged
	case p.draining:
		err = ErrPoolDraining
	default:
		err = p.adopt(h)
	}
	if err != nil {
		EndClients([]int{h.FD})
		if ok {
			p.stats.ClientHandoverRefused.Add(1)
		}
	}
	return err
}

// adopt makes a client of a handed-over descriptor; on the loop.
func (p *pool) adopt(h Handoff) error {
	var rs *redisSession
	if len(h.State) > 0 {
		if p.cfg.Protocol != config.ProtocolRedis {
			return fmt.Errorf("%w: state for a %s pool", ErrBadState, p.cfg.Protocol)
		}
		rs = new(redisSession)
		if err := rs.decodeState(h.State); err != nil {
			return fmt.Errorf("%w: %w", ErrBadState, err)
		}
		if err := p.adoptUser(rs, h.AuthTag); err != nil {
			return err
		}
	}
	if !p.admit() {
		return ErrTooManyClients
	}
	sa, _ := unix.Getpeername(h.FD)
	var tcp bool
	switch sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		tcp = true
	}
	c := newClientConn(p, h.FD, sa, tcp)
	if h.Accepted > 0 && h.Accepted < c.accepted {
		c.accepted = h.Accepted
	}
	c.served = true
	if rs != nil {
		c.rs = rs
		c.setProto(rs.proto)
	}
	if err := p.lp.register(h.FD, c); err != nil {
		p.unadmit()
		return err
	}
	p.clients[c] = struct{}{}
	p.wg.Add(1)
	p.stats.ClientConnections.Add(1)
	p.stats.ClientAdopted.Add(1)
	// What the client sent meanwhile waits in the socket: read it now,
	// whether or not registering raised an edge.
	c.readable = true
	p.lp.markReady(c)
	return nil
}

// AdoptRefusal names why Adopt refused a client, for counts and logs.
func AdoptRefusal(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{{ErrPoolGone, "pool_gone"}, {ErrListenMoved, "listen_moved"}, {ErrProtocolChanged, "protocol_changed"},
		{ErrPoolDraining, "draining"}, {ErrTooManyClients, "client_connections"}, {ErrBadState, "bad_state"}} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "error"
}

// authTag fingerprints a pool's redis_auth for a hand-over, so that a
// client authenticated against an old password is not let in under a new
// one; "" for a pool without a password (where authenticated means
// nothing). Not the secret: a hash of it, on the master's channel only.
// sessionAuthTag is the AuthTag of a session logged in as u: the
// fingerprint of u's credentials, or of redis_auth for a session from a
// pool without users.
func sessionAuthTag(u *acl.User, redisAuth string) string {
	if u == nil {
		return authTag(redisAuth)
	}
	f := u.Fingerprint()
	return "u" + hex.EncodeToString(f[:8])
}

// ErrUserChanged refuses a client logged in as a user that the new
// configuration removed, disabled or gave other passwords: it would run
// with permissions that are no longer its own.
var ErrUserChanged = errors.New("proxy: the client's ACL user is gone or changed")

// adoptUser resolves a handed-over session's user in p. A client of the
// default user (or of a pool without users) that authenticated against
// another password, or none, must AUTH again, as a new client would; one
// of a named user that changed is refused.
func (p *pool) adoptUser(rs *redisSession, tag string) error {
	name := rs.userName
	rs.userName = ""
	if !rs.authed {
		return nil
	}
	if name == "" || name == acl.DefaultUser {
		d := p.cfg.DefaultUser
		want := authTag(p.cfg.RedisAuth)
		if name != "" && d != nil {
			want = sessionAuthTag(d, "")
		}
		if tag != want {
			rs.authed = false
			return nil
		}
		if name != "" {
			rs.user = d
		}
		return nil
	}
	u := p.cfg.Users[name]
	if u == nil || !u.Enabled() || sessionAuthTag(u, "") != tag {
		return ErrUserChanged
	}
	rs.user = u
	return nil
}

func authTag(secret string) string {
	if secret == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("nuthatch hand-over\x00" + secret))
	return hex.EncodeToString(sum[:8])
}

// EndClients closes client connections that cannot be handed over or
// adopted: a FIN first (shutdown), so that the client reads a clean end
// even when a request it sent meanwhile is still unread here and the
// close then resets the connection (the request is not run, as when a
// connection closes between requests).
func EndClients(fds []int) {
	for _, fd := range fds {
		unix.Shutdown(fd, unix.SHUT_WR)
		unix.Close(fd)
	}
}
