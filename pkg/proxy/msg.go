package proxy

// msg is one request in flight and, once done, its reply. It belongs to
// the loop that read it: no field needs to be atomic.
//
// A client's msgs are written back strictly in the order they were read. A
// request that spans several servers is a parent msg whose fragments travel to
// the servers; the last fragment to finish merges the replies into the parent.
type msg struct {
	lp     *loop       // whose free list m returns to
	client *clientConn // nil for the proxy's own handshake requests

	// reply is what the client receives; it is set before done.
	reply []byte
	err   error // set instead of reply when the server failed

	done bool
	// closeAfter closes the client once this reply is written (QUIT, protocol
	// errors).
	closeAfter bool
	// silent msgs produce no bytes for the client (memcached noreply).
	silent bool
	// quiet requests were forwarded without noreply/q; replies the client
	// did not ask for become silent.
	quiet bool

	// Fragments of a multi-key request.
	parent  *msg
	frags   []*msg
	pending int32 // fragments not yet finished
	// keyIdx maps the position of each key of a fragment to the position in
	// the parent's request, for merges that restore key order.
	keyIdx []int32
	// keys holds a copy of a split request's keys, key i at
	// keys[keyOff[i]:keyOff[i+1]].
	keys   []byte
	keyOff []int32

	// A carrier is one retrieval on the wire holding the keys of several
	// requests (memcached gets coalesced on a link): members are those
	// requests, member i's keys end at memberEnd[i] in keys/keyOff.
	members   []*msg
	memberEnd []int32

	// req is a copy of the request for a server whose address moves, so
	// that it can be replayed; replaySafe says an unknown outcome may be
	// (retry.go); readOnly lets it go to a master whose writes wait.
	req        []byte
	readOnly   bool
	replaySafe bool
	// A cluster pool's request: its slot, the redirects it followed, and
	// when to try again after TRYAGAIN or CLUSTERDOWN (cluster.go).
	slot      int32
	hasSlot   bool
	redirects uint8
	retryAt   int64
	// replicaOK: a client's read-only command, which read_from may send
	// to a replica (replica.go).
	replicaOK bool
	// exec: a transaction's EXEC, whose outcome is unknown when its link
	// dies after it was written (pinned.go).
	exec bool

	server *server // set for forwarded requests
	// cmd names the request for the slow log (a static string); key is a
	// copy of its first key, kept only when slowlog_log_keys is on.
	cmd    string
	key    []byte
	op     uint8 // protocol-specific request kind used to frame the reply
	sentAt int64 // unix nanos the request was written to the server, 0 before
	start  int64 // unix nanos the request was read from the client
	isErr  bool  // the server answered with an error reply
	// uncounted requests are the proxy's own (COMMAND on a new link):
	// their replies are left out of the server's stats.
	uncounted bool
	reqLen    int // request bytes forwarded, for stats
	// blockFor is a blocking call's own timeout on a pinned link (nanos,
	// < 0 for none), during which the pool's timeout does not apply.
	blockFor int64
	pinned   bool // sent on a pinned link: never replayed elsewhere

	// A large reply streams (stream.go): stream is the link it arrives on,
	// until it is complete; reply holds the part not yet written, flushed
	// counts what was written and dropped from it.
	stream   *link
	streamed bool // the reply streamed: its bytes were counted as they came
	flushed  int
}

// newMsg returns a msg for a request of client c.
func newMsg(c *clientConn) *msg { return c.lp.newMsg(c) }

// newMsg returns a recycled msg. msgs are made and freed only on their
// loop's goroutine, so a plain free list does what sync.Pool did without
// its per-P pinning and atomics (about 4 % of a 16-deep profile).
func (lp *loop) newMsg(c *clientConn) *msg {
	var m *msg
	if n := len(lp.freeMsgs); n > 0 {
		m = lp.freeMsgs[n-1]
		lp.freeMsgs[n-1] = nil
		lp.freeMsgs = lp.freeMsgs[:n-1]
		lp.freeBytes -= m.buffered()
	} else {
		m = new(msg)
	}
	m.lp, m.client = lp, c
	return m
}

// maxFreeMsgs and maxFreeBytes bound a loop's free list: beyond them, msgs
// (or their buffers) freed after a burst go to the garbage collector, so
// that a burst of large replies does not stay pinned, as sync.Pool's
// contents would not have across garbage collections.
const (
	maxFreeMsgs  = 8192
	maxFreeBytes = 16 << 20
)

// buffered is the capacity of the buffers m keeps when recycled, in bytes.
func (m *msg) buffered() int {
	return cap(m.reply) + cap(m.keys) + cap(m.key) + cap(m.req) + 4*(cap(m.keyIdx)+cap(m.keyOff)+cap(m.memberEnd)) +
		8*(cap(m.frags)+cap(m.members))
}

// maxPooledReply bounds the reply buffer a recycled msg keeps, so that one
// huge value does not pin memory for the life of the process.
const maxPooledReply = 64 << 10

// free returns m to its loop's free list. The caller must be the last
// owner.
func (m *msg) free() {
	r := m.reply[:0]
	if cap(r) > maxPooledReply {
		r = nil
	}
	k := m.keyIdx[:0]
	ks, ko, sk, rq := m.keys[:0], m.keyOff[:0], m.key[:0], m.req[:0]
	if cap(rq) > maxPooledReply {
		rq = nil
	}
	f := m.frags[:0]
	for i := range f[:cap(f)] {
		f[:cap(f)][i] = nil
	}
	mb, me := m.members[:0], m.memberEnd[:0]
	clear(mb[:cap(mb)])
	lp := m.lp
	*m = msg{}
	if lp == nil || len(lp.freeMsgs) >= maxFreeMsgs {
		return
	}
	m.reply, m.keyIdx, m.frags, m.keys, m.keyOff, m.key, m.req = r, k, f, ks, ko, sk, rq
	m.members, m.memberEnd = mb, me
	if b := m.buffered(); lp.freeBytes+b > maxFreeBytes {
		// Keep the msg, not its buffers.
		m.reply, m.keyIdx, m.frags, m.keys, m.keyOff, m.key, m.req = nil, nil, nil, nil, nil, nil, nil
		m.members, m.memberEnd = nil, nil
	} else {
		lp.freeBytes += b
	}
	lp.freeMsgs = append(lp.freeMsgs, m)
}

// out is what the client receives for m.
func (m *msg) out() []byte {
	if m.silent {
		return nil
	}
	return m.reply
}

func (m *msg) keyAt(i int) []byte { return m.keys[m.keyOff[i]:m.keyOff[i+1]] }

// started is when m's request (or its parent's) was read from the client.
func (m *msg) started() int64 {
	if m.parent != nil {
		return m.parent.start
	}
	return m.start
}

// owner is the client m (or its parent) answers, nil for internal requests.
func (m *msg) owner() *clientConn {
	if m.parent != nil {
		return m.parent.client
	}
	return m.client
}
