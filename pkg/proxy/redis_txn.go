package proxy

import (
	"errors"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Stateful commands (issue #21): transactions here, blocking calls in
// redis_block.go, pub/sub in redis_pubsub.go, the whole-pool commands
// (SCAN, DBSIZE, ...) in redis_scan.go. resp's table still classes them
// KindUnsupported with their reason: dispatch offers them to stateful
// first, and what it does not take stays refused with that reason.

// statefulSession is the part of a Redis session that holds pinned
// links; nil until the client first uses a stateful command.
type statefulSession struct {
	txn    txnState
	blocks []*link // links lent for blocking calls
	sub    *subState
}

// txnState follows WATCH and MULTI ... EXEC. The first key (of WATCH or
// of the first queued command with a key) fixes the server and pins a
// link to it; MULTI is answered by the proxy and sent on that link then.
type txnState struct {
	multi bool // the client is in MULTI
	// dirty: the proxy refused a command at queue time (a key of another
	// server, a command it does not run in a transaction), as redis
	// flags a transaction with an error: EXEC aborts.
	dirty bool
	srv   *server
	link  *link
	// A cluster pool's transaction: the slot its first key fixed (the
	// link is to that slot's owner when it was pinned).
	slot    int32
	hasSlot bool
	broken  error    // the pinned link died: the transaction cannot go on
	queued  [][]byte // keyless requests queued before the server was fixed
	count   int      // commands queued, for CLIENT LIST's multi=
}

// stateful returns c's stateful session, making it.
func (c *clientConn) stateful() *statefulSession {
	rs := c.session()
	if rs.st == nil {
		rs.st = &statefulSession{}
	}
	return rs.st
}

// intercepts: every request of the client goes through the stateful
// dispatch (in MULTI, or subscribed in RESP2).
func (st *statefulSession) intercepts(c *clientConn) bool {
	return st.txn.multi || (st.sub.active() && !c.resp3())
}

// holds reports whether the client holds a pinned link or session state a
// drain must wait for.
func (st *statefulSession) holds(c *clientConn) bool {
	if st.txn.multi || st.txn.link != nil || st.sub.active() {
		return true
	}
	for _, l := range st.blocks {
		if l.blockedFor(c) {
			return true
		}
	}
	return false
}

// blockedFor: l is lent to c for a blocking call.
func (l *link) blockedFor(c *clientConn) bool {
	return l.pin != nil && l.pin.owner == c && l.pin.kind == pinBlock && !l.dead && !l.pin.doomed
}

// eofStateful: a client that went away while blocked in a call or
// subscribed waits for nothing it could still read; it closes now, as
// redis closes a client at EOF, and its links with it.
func (c *clientConn) eofStateful() {
	if c.rs == nil || c.rs.st == nil {
		return
	}
	st := c.rs.st
	blocked := st.sub.active()
	for _, l := range st.blocks {
		blocked = blocked || (l.blockedFor(c))
	}
	if blocked {
		c.close()
	}
}

// clientGone releases what a closed client held: a transaction's link
// gets DISCARD or UNWATCH and is reused; a link blocked in a call or
// subscribed is in an unknown state and is closed.
func (st *statefulSession) clientGone(c *clientConn) {
	st.releaseTxn(c)
	for _, l := range st.blocks {
		if l.blockedFor(c) {
			l.kill(errLinkShutdown)
		}
	}
	st.blocks = nil
	st.endSub(c)
}

// releaseTxn ends the transaction state, cleaning the server's side.
func (st *statefulSession) releaseTxn(c *clientConn) {
	t := &st.txn
	if l := t.link; l != nil && !l.dead && l.pin.owner == c {
		if l.pin.multi {
			l.sendInternal(appendDiscard)
		} else if l.pin.watching {
			l.sendInternal(appendUnwatch)
		}
		l.pin.multi, l.pin.watching = false, false
		l.unpin()
	}
	*t = txnState{}
}

// linkLost: a link lent to c died.
func (st *statefulSession) linkLost(c *clientConn, l *link, err error) {
	if st.txn.link == l {
		st.txn.link = nil
		st.txn.broken = err
	}
	if st.sub != nil && st.sub.lost(c, l) {
		return
	}
}

var (
	argsMulti   = [][]byte{[]byte("MULTI")}
	argsDiscard = [][]byte{[]byte("DISCARD")}
	argsUnwatch = [][]byte{[]byte("UNWATCH")}
	argsExec    = [][]byte{[]byte("EXEC")}
)

func appendMulti(dst []byte) []byte   { return resp.AppendCommand(dst, argsMulti) }
func appendDiscard(dst []byte) []byte { return resp.AppendCommand(dst, argsDiscard) }
func appendUnwatch(dst []byte) []byte { return resp.AppendCommand(dst, argsUnwatch) }
func appendExec(dst []byte) []byte    { return resp.AppendCommand(dst, argsExec) }

// requestBuilder encodes a request as the client sent it, or anew when
// it was inline.
func requestBuilder(args [][]byte, raw []byte) func(dst []byte) []byte {
	if raw != nil {
		return func(dst []byte) []byte { return append(dst, raw...) }
	}
	return func(dst []byte) []byte { return resp.AppendCommand(dst, args) }
}

// stateful takes the refused commands the proxy serves with pinned links
// or over every server; false leaves cmd refused.
func (r *redisProto) stateful(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) bool {
	switch cmd.Name {
	case "multi":
		st := c.stateful()
		st.txn.multi, st.txn.dirty = true, false
		if l := st.txn.link; l != nil {
			l.sendInternal(appendMulti)
			l.pin.multi = true
		}
		c.localOK()
	case "exec":
		c.localError("ERR EXEC without MULTI")
	case "discard":
		c.localError("ERR DISCARD without MULTI")
	case "watch":
		r.watch(c, args, raw)
	case "unwatch":
		st := c.stateful()
		l := st.txn.link
		if l == nil || l.dead {
			st.txn = txnState{}
			c.localOK()
			return true
		}
		m := newMsg(c)
		c.enqueue(m)
		r.pool.sendPinned(m, l, appendUnwatch)
		l.pin.watching = false
		l.unpin()
		st.txn = txnState{}
	default:
		if isBlocking(cmd.Name) {
			r.blocking(c, cmd, args, raw)
			return true
		}
		if r.pubsub(c, cmd, args, raw) {
			return true
		}
		return r.wholePool(c, cmd, args, raw)
	}
	return true
}

// watch pins the link of WATCH's keys, which must share a server (and
// that of an earlier WATCH).
func (r *redisProto) watch(c *clientConn, args [][]byte, raw []byte) {
	p := r.pool
	st := c.stateful()
	t := &st.txn
	if t.broken != nil {
		// The watched slot moved (or the link died): what was watched is
		// gone; a new WATCH starts over on the slot's owner.
		st.releaseTxn(c)
	}
	s := p.serverFor(args[1])
	if s == nil {
		m := newMsg(c)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	}
	if p.cluster != nil {
		slot := int32(hashkit.Slot(args[1]))
		for _, k := range args[2:] {
			if int32(hashkit.Slot(k)) != slot {
				c.localError(crossSlotText)
				return
			}
		}
		if t.hasSlot && t.slot != slot {
			c.localError(txnSlotError("watch"))
			return
		}
		if t.srv != nil {
			s = t.srv // the link pinned for the slot's first key
		}
		t.slot, t.hasSlot = slot, true
	}
	for _, k := range args[2:] {
		if p.serverFor(k) != s && p.cluster == nil {
			c.localError("ERR keys of 'watch' map to different servers; use a hash_tag to keep them together")
			return
		}
	}
	if t.link != nil && t.link.dead {
		t.link, t.srv = nil, nil
	}
	if t.srv != nil && t.srv != s {
		c.localError(txnServerError("watch"))
		return
	}
	if t.link == nil {
		l, err := p.pin(c, s, pinTxn)
		if err == errPinWait {
			return
		}
		if err != nil {
			m := newMsg(c)
			c.enqueue(m)
			p.fail(m, err)
			return
		}
		t.srv, t.link, t.broken = s, l, nil
	}
	m := newMsg(c)
	c.enqueue(m)
	p.sendPinned(m, t.link, requestBuilder(args, raw))
	t.link.pin.watching = true
}

// crossSlotText is Redis Cluster's refusal of a command whose keys are in
// two slots.
const crossSlotText = "CROSSSLOT Keys in request don't hash to the same slot"

// txnSlotError refuses, in a cluster pool, a key of a transaction in
// another slot than its first key's.
func txnSlotError(name string) string {
	return "CROSSSLOT nuthatch: the key of '" + name + "' is in another slot than the transaction's first key; keys of a transaction must share a hash tag ({...}) in a cluster pool"
}

func txnServerError(name string) string {
	return "ERR nuthatch: the key of '" + name + "' maps to another server than the transaction's first key; keys of a transaction must share a hash_tag"
}

// txnDispatch handles a request of a client in MULTI: EXEC, DISCARD and
// the commands redis runs at once; everything else is queued on the
// transaction's server, whose first key fixes it.
func (r *redisProto) txnDispatch(c *clientConn, st *statefulSession, args [][]byte, raw []byte) {
	t := &st.txn
	cmd := r.command(c, args)
	if cmd == nil {
		t.dirty = true // an error at queue time, as redis flags it
		return
	}
	switch cmd.Name {
	case "exec":
		r.exec(c, st)
		return
	case "discard":
		r.discard(c, st)
		return
	case "multi":
		c.localError("ERR MULTI calls can not be nested")
		return
	case "watch":
		c.localError("ERR WATCH inside MULTI is not allowed")
		return
	case "quit", "reset":
		r.local(c, cmd, args)
		return
	}
	if t.broken != nil {
		t.dirty = true
		c.localError("ERR " + errnoText(t.broken))
		return
	}
	var keys []int
	var err error
	switch {
	case cmd.Name == "ping" || cmd.Name == "echo" || cmd.Name == "unwatch":
	case cmd.Name == "publish":
		keys = append(c.keys[:0], 1)
	case isBlocking(cmd.Name):
		keys, _, err = blockingKeys(cmd, args, c.keys[:0])
	case cmd.Kind == resp.KindMultiKey:
		keys = c.keys[:0]
		for i := 1; i < len(args); i += max(cmd.Step, 1) {
			keys = append(keys, i)
		}
	case (cmd.Name == "object" || cmd.Name == "xinfo" || cmd.Name == "xgroup") && len(args) >= 3:
		keys = append(c.keys[:0], 2) // the key after the subcommand (redis_admin.go)
	case cmd.Kind == resp.KindSingleKey || cmd.Kind == resp.KindEval || r.pool.cluster != nil && slotBound[cmd.Name]:
		keys, err = resp.Keys(cmd, args, c.keys[:0])
		if errors.Is(err, resp.ErrNoKeys) {
			err = nil
		}
	default:
		t.dirty = true
		reason := cmd.Reason
		if reason == "" {
			reason = "not run in a transaction"
		}
		c.localError("ERR command '" + cmd.Name + "' is not supported by nuthatch inside MULTI: " + reason)
		return
	}
	c.keys = keys
	if err != nil {
		t.dirty = true
		c.localError("ERR " + err.Error())
		return
	}
	r.txnQueue(c, st, cmd, args, raw, keys)
}

// txnQueue queues one command of the transaction.
func (r *redisProto) txnQueue(c *clientConn, st *statefulSession, cmd *resp.Command, args [][]byte, raw []byte, keys []int) {
	p := r.pool
	t := &st.txn
	if len(keys) > 0 {
		c.cmdKey = args[keys[0]]
		s := p.serverFor(args[keys[0]])
		if s == nil {
			t.dirty = true
			m := newMsg(c)
			c.enqueue(m)
			p.fail(m, ErrNoServer)
			return
		}
		if p.cluster != nil {
			slot := int32(hashkit.Slot(args[keys[0]]))
			for _, k := range keys[1:] {
				if int32(hashkit.Slot(args[k])) != slot {
					t.dirty = true
					c.localError(crossSlotText)
					return
				}
			}
			if t.hasSlot && t.slot != slot {
				t.dirty = true
				c.localError(txnSlotError(cmd.Name))
				return
			}
			if t.srv != nil {
				s = t.srv // pinned to the slot's owner at the first key
			}
			t.slot, t.hasSlot = slot, true
		}
		for _, k := range keys[1:] {
			if p.cluster == nil && p.serverFor(args[k]) != s {
				t.dirty = true
				c.localError("ERR keys of '" + cmd.Name + "' map to different servers; use a hash_tag to keep them together")
				return
			}
		}
		if t.srv != nil && t.srv != s {
			t.dirty = true
			c.localError(txnServerError(cmd.Name))
			return
		}
		if t.link == nil && t.dirty && p.cluster != nil {
			// EXEC will abort it: no link (nor a wait for one, when its
			// node is down) for a transaction that cannot run.
			t.count++
			c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "QUEUED") })
			return
		}
		if t.link == nil {
			if err := r.txnPin(c, t, s); err == errPinWait {
				return
			} else if err != nil {
				t.dirty = true
				m := newMsg(c)
				c.enqueue(m)
				p.fail(m, err)
				return
			}
		}
	}
	if t.link == nil {
		// No server yet: the proxy queues it, as the server would.
		req := requestBuilder(args, raw)(nil)
		t.queued = append(t.queued, req)
		t.count++
		c.localReply(func(dst []byte) []byte { return resp.AppendStatus(dst, "QUEUED") })
		return
	}
	t.count++
	m := newMsg(c)
	c.enqueue(m)
	p.sendPinned(m, t.link, requestBuilder(args, raw))
}

// txnPin fixes the transaction's server: pins a link to it and sends
// MULTI and the keyless commands queued so far.
func (r *redisProto) txnPin(c *clientConn, t *txnState, s *server) error {
	l, err := r.pool.pin(c, s, pinTxn)
	if err != nil {
		return err
	}
	t.srv, t.link = s, l
	l.sendInternal(appendMulti)
	l.pin.multi = true
	for _, q := range t.queued {
		l.sendInternal(func(dst []byte) []byte { return append(dst, q...) })
	}
	t.queued = nil
	return nil
}

// exec ends the transaction: EXEC on its server, or the proxy's own
// answer when it flagged the transaction or no command named a key.
func (r *redisProto) exec(c *clientConn, st *statefulSession) {
	p := r.pool
	t := &st.txn
	switch {
	case t.broken != nil:
		err := t.broken
		st.releaseTxn(c)
		c.localError("EXECABORT Transaction discarded because of: " + errnoText(err))
		return
	case t.dirty:
		st.releaseTxn(c)
		c.localError("EXECABORT Transaction discarded because of previous errors.")
		return
	case t.link == nil && len(t.queued) == 0:
		st.releaseTxn(c)
		c.localReply(func(dst []byte) []byte { return resp.AppendArrayHeader(dst, 0) })
		return
	case t.link == nil:
		// Only keyless commands: any server runs them.
		s := p.anyServer()
		var err error
		if s == nil {
			err = ErrNoServer
		} else {
			err = r.txnPin(c, t, s)
		}
		if err == errPinWait {
			return
		}
		if err != nil {
			st.releaseTxn(c)
			m := newMsg(c)
			c.enqueue(m)
			p.fail(m, err)
			return
		}
	}
	l := t.link
	m := newMsg(c)
	m.exec = true
	c.enqueue(m)
	p.sendPinned(m, l, appendExec)
	l.pin.multi, l.pin.watching = false, false
	l.unpin()
	*t = txnState{}
}

func (r *redisProto) discard(c *clientConn, st *statefulSession) {
	t := &st.txn
	l := t.link
	if l == nil || l.dead || !l.pin.multi {
		st.releaseTxn(c)
		c.localOK()
		return
	}
	m := newMsg(c)
	c.enqueue(m)
	r.pool.sendPinned(m, l, appendDiscard)
	l.pin.multi, l.pin.watching = false, false
	l.unpin()
	*t = txnState{}
}
