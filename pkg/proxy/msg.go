package proxy

import "sync"

// msg is one request in flight and, once done, its reply. It belongs to
// the loop that read it: no field needs to be atomic.
//
// A client's msgs are written back strictly in the order they were read. A
// request that spans several servers is a parent msg whose fragments travel to
// the servers; the last fragment to finish merges the replies into the parent.
type msg struct {
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

	server *server // set for forwarded requests
	// cmd names the request for the slow log (a static string); key is a
	// copy of its first key, kept only when slowlog_log_keys is on.
	cmd    string
	key    []byte
	op     uint8 // protocol-specific request kind used to frame the reply
	sentAt int64 // unix nanos the request was written to the server, 0 before
	start  int64 // unix nanos the request was read from the client
	isErr  bool  // the server answered with an error reply
	reqLen int   // request bytes forwarded, for stats
}

var msgPool = sync.Pool{New: func() any { return new(msg) }}

func newMsg(c *clientConn) *msg {
	m := msgPool.Get().(*msg)
	m.client = c
	return m
}

// maxPooledReply bounds the reply buffer a pooled msg keeps, so that one huge
// value does not pin memory for the life of the process.
const maxPooledReply = 64 << 10

// free returns m to the pool. The caller must be the last owner.
func (m *msg) free() {
	r := m.reply[:0]
	if cap(r) > maxPooledReply {
		r = nil
	}
	k := m.keyIdx[:0]
	ks, ko, sk := m.keys[:0], m.keyOff[:0], m.key[:0]
	f := m.frags[:0]
	for i := range f[:cap(f)] {
		f[:cap(f)][i] = nil
	}
	mb, me := m.members[:0], m.memberEnd[:0]
	clear(mb[:cap(mb)])
	*m = msg{}
	m.reply, m.keyIdx, m.frags, m.keys, m.keyOff, m.key = r, k, f, ks, ko, sk
	m.members, m.memberEnd = mb, me
	msgPool.Put(m)
}

// out is what the client receives for m.
func (m *msg) out() []byte {
	if m.silent {
		return nil
	}
	return m.reply
}

func (m *msg) keyAt(i int) []byte { return m.keys[m.keyOff[i]:m.keyOff[i+1]] }

// owner is the client m (or its parent) answers, nil for internal requests.
func (m *msg) owner() *clientConn {
	if m.parent != nil {
		return m.parent.client
	}
	return m.client
}
