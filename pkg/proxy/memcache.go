package proxy

import (
	"bytes"
	"errors"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/memcache"
)

type memcacheProto struct {
	pool     *pool
	lim      memcache.Limits
	coalesce bool // coalesce_gets

	memberStart int // placeBlocks' result
}

// maxRetrievalLine bounds a get/gets/gat/gats line. memcached has no such
// limit and libmemcached's mget sends every key of a call on one line
// (memcslap --test=mget: over 64 KiB); 2 MiB holds the codec's 10000 keys
// at 200 bytes each.
const maxRetrievalLine = 2 << 20

func newMemcacheProto(p *pool) *memcacheProto {
	lim := memcache.DefaultLimits()
	lim.MaxRetrievalLineLen = maxRetrievalLine
	return &memcacheProto{pool: p, lim: lim, coalesce: p.cfg.CoalesceGets}
}

func (mp *memcacheProto) maxRequest() int {
	return max(mp.lim.MaxItemSize, mp.lim.MaxRetrievalLineLen) + 64<<10
}

func (mp *memcacheProto) tooManyClients(dst []byte) []byte {
	return append(dst, "ERROR Too many open connections\r\n"...)
}

func (mp *memcacheProto) errorReply(dst []byte, err error) []byte {
	dst = append(dst, "SERVER_ERROR "...)
	dst = append(dst, errnoText(err)...)
	return append(dst, "\r\n"...)
}

func (mp *memcacheProto) handshake(*link) {}

// replyLen frames with the link's own scanner, so that a retrieval reply of
// many values arriving in many reads is scanned once.
func (mp *memcacheProto) replyLen(l *link, m *msg, buf []byte) (n, need int, isErr bool, err error) {
	cmd := memcache.Command(m.op)
	n, need, isErr, err = l.mscan.Scan(cmd, buf)
	if n > 0 && m.quiet {
		// The client set the meta q flag; the request was forwarded without
		// it so that every request has one reply, and a reply quiet mode
		// hides is dropped here.
		q := memcache.Request{Cmd: cmd, Noreply: true}
		m.silent = memcache.Suppressed(&q, buf[:n])
	}
	return n, need, isErr, err
}

func (mp *memcacheProto) localLine(c *clientConn, line string, closeAfter bool) {
	m := newMsg(c)
	m.reply = append(m.reply[:0], line...)
	m.closeAfter = closeAfter
	c.reply(m)
}

func (mp *memcacheProto) parse(c *clientConn, buf []byte) (int, int, error) {
	if c.skip > 0 {
		// Swallowing the rest of an oversized value so framing survives.
		k := min(c.skip, len(buf))
		c.skip -= k
		return k, 0, nil
	}
	if c.mp == nil {
		c.mp = memcache.NewRequestParser(mp.lim)
	}
	n, req, need, err := c.mp.Parse(buf)
	if err != nil {
		var e *memcache.Error
		if !errors.As(err, &e) {
			mp.localLine(c, "SERVER_ERROR "+err.Error()+"\r\n", true)
			return 0, 0, err
		}
		m := newMsg(c)
		m.reply = e.AppendReply(m.reply[:0])
		m.closeAfter = e.Close
		c.reply(m)
		if e.Close {
			mp.pool.log.WithField("reason", e.Msg).Info("closing memcache client")
			return 0, 0, err
		}
		skip := max(e.Skip, 1)
		if skip > len(buf) {
			c.skip = skip - len(buf)
			return len(buf), 0, nil
		}
		return skip, 0, nil
	}
	if n == 0 {
		return 0, need, nil
	}
	mp.dispatch(c, req, buf[:n])
	return n, 0, nil
}

func (mp *memcacheProto) dispatch(c *clientConn, req *memcache.Request, raw []byte) {
	p := mp.pool
	c.cmdName, c.cmdKey = req.Cmd.String(), nil
	if len(req.Keys) > 0 {
		c.cmdKey = req.Keys[0]
	}
	switch req.Cmd {
	case memcache.CmdQuit:
		m := newMsg(c)
		m.silent, m.closeAfter = true, true
		c.quit = true
		c.reply(m)
		return
	case memcache.CmdMetaNoop:
		mp.localLine(c, "MN\r\n", false)
		return
	case memcache.CmdVersion:
		// As twemproxy 0.5, which hashes the empty key to 0: the server
		// owning the start of the ring answers.
		var s *server
		if i := p.ring.Load().Pick(0); i >= 0 {
			s = p.servers[i]
		}
		mp.forward(c, req, raw, s)
		return
	case memcache.CmdUnsupported:
		// twemproxy closes the connection without a word; an error line keeps
		// the client in step (twemproxy#138). noreply asked for silence.
		line := ""
		if !req.Noreply {
			line = "SERVER_ERROR command '" + string(req.Name) + "' is not supported by nuthatch\r\n"
		}
		mp.localLine(c, line, false)
		return
	}
	if req.Cmd.IsRetrieval() && len(req.Keys) > 1 {
		mp.split(c, req, raw)
		return
	}
	mp.forward(c, req, raw, p.serverFor(req.RoutingKey(0)))
}

func (mp *memcacheProto) forward(c *clientConn, req *memcache.Request, raw []byte, s *server) {
	p := mp.pool
	m := newMsg(c)
	m.op = uint8(req.Cmd)
	if req.Noreply {
		// Classic noreply hides every reply, the proxy's own errors included
		// (memcached and twemproxy send nothing); meta q hides only some
		// codes, decided when the reply arrives. Both are set before the
		// client's writer can see m.
		if req.Cmd.IsMeta() {
			m.quiet = true
		} else {
			m.silent = true
		}
	}
	c.enqueue(m)
	if s == nil {
		p.fail(m, ErrNoServer)
		return
	}
	if mp.coalescible(req.Cmd) {
		mp.forwardGet(m, s, len(req.Keys), func(i int) []byte { return req.Keys[i] })
		return
	}
	if req.Noreply {
		p.forward(m, s, func(dst []byte) []byte { return memcache.AppendWithoutNoreply(dst, req) })
		return
	}
	p.forward(m, s, func(dst []byte) []byte { return append(dst, raw...) })
}

// split sends a multi-key retrieval as one request per server; merge puts
// the hits back in request order under one END.
func (mp *memcacheProto) split(c *clientConn, req *memcache.Request, raw []byte) {
	p := mp.pool
	nserv := p.groupKeys(c, 0, len(req.Keys), 1, req.RoutingKey)
	switch nserv {
	case 0:
		m := newMsg(c)
		m.op = uint8(req.Cmd)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	case 1:
		mp.forward(c, req, raw, p.serverFor(req.RoutingKey(0)))
		return
	}
	parent := newMsg(c)
	parent.op = uint8(req.Cmd)
	parent.keyIdx = append(parent.keyIdx[:0], int32(len(req.Keys)))
	for _, k := range req.Keys {
		parent.keyOff = append(parent.keyOff, int32(len(parent.keys)))
		parent.keys = append(parent.keys, k...)
	}
	parent.keyOff = append(parent.keyOff, int32(len(parent.keys)))
	if mp.coalescible(req.Cmd) {
		p.fragmentWith(c, parent, nserv, func(f *msg, s *server, idx []int32) {
			mp.forwardGet(f, s, len(idx), func(i int) []byte { return parent.keyAt(int(idx[i])) })
		})
		return
	}
	p.fragment(c, parent, nserv, func(dst []byte, idx []int32) []byte {
		keys := p.keys[:0]
		for _, ki := range idx {
			keys = append(keys, req.Keys[ki])
		}
		p.keys = keys
		dst = memcache.AppendRetrieval(dst, req, keys)
		clear(keys)
		return dst
	})
}

// coalescible tells whether requests of cmd may share one retrieval on a
// link: get and gets, whose multi-key form answers each key as the
// single-key form would. gat and gats carry an exptime and are sent alone.
func (mp *memcacheProto) coalescible(cmd memcache.Command) bool {
	return mp.coalesce && (cmd == memcache.CmdGet || cmd == memcache.CmdGets)
}

// maxCoalescedLine bounds a coalesced get line. memcached takes longer get
// lines, but past 2048 bytes it reads them through a slower path (its
// limit for other command lines); a longer request is sent as it came.
const maxCoalescedLine = 2048

// forwardGet queues the retrieval m of n keys on server s. When the last
// request queued on the link is a retrieval of the same command that has
// not been written yet, m's keys are appended to its line and m becomes one
// more member of that carrier: memcached answers a get of k keys with one
// reply (one sendmsg) where k gets cost it k, and the keys of every client
// read in a round go out as one command per server.
func (mp *memcacheProto) forwardGet(m *msg, s *server, n int, key func(i int) []byte) {
	add := 0
	for i := range n {
		add += 1 + len(key(i))
	}
	mp.pool.forwardVia(m, s, func(l *link) bool {
		if t := l.unsentTail(); t != nil && len(t.members) > 0 && t.op == m.op && t.reqLen+add <= maxCoalescedLine {
			t.join(m, n, key)
			m.reqLen = l.extendTail(func(w []byte) []byte {
				return appendKeys(w[:len(w)-2], n, key) // over the line's CRLF
			})
			return true
		}
		carrier := mp.pool.lp.newMsg(nil)
		carrier.op = m.op
		carrier.server = s
		carrier.join(m, n, key)
		if !l.enqueueFunc(carrier, func(dst []byte) []byte {
			return appendKeys(append(dst, memcache.Command(m.op).String()...), n, key)
		}) {
			carrier.members = carrier.members[:0]
			carrier.free()
			return false
		}
		m.reqLen = carrier.reqLen
		return true
	})
}

// appendKeys appends " key" for each of n keys, then the CRLF ending a
// retrieval line.
func appendKeys(dst []byte, n int, key func(i int) []byte) []byte {
	for i := range n {
		dst = append(dst, ' ')
		dst = append(dst, key(i)...)
	}
	return append(dst, "\r\n"...)
}

// scatter splits a carrier's reply among its members: each gets the VALUE
// blocks of its own keys, in its order, and an END. An error reply reaches
// every member as its error line.
func (mp *memcacheProto) scatter(carrier *msg, reply []byte, isErr bool) {
	p := mp.pool
	for _, m := range carrier.members {
		m.sentAt = carrier.sentAt
	}
	if len(carrier.members) == 1 {
		p.complete(carrier.members[0], reply, isErr)
		return
	}
	if isErr {
		line := reply
		for len(line) > 0 {
			_, blk, ok := nextValue(line)
			if !ok {
				break
			}
			line = line[len(blk):]
		}
		for _, m := range carrier.members {
			p.complete(m, line, true)
		}
		return
	}
	for _, m := range carrier.members {
		m.reply = m.reply[:0]
	}
	mi := 0 // the member of key j
	if !matchValues(reply, len(carrier.keyOff)-1, carrier.keyAt, func(j int, blk []byte) {
		for int(carrier.memberEnd[mi]) <= j {
			mi++
		}
		carrier.members[mi].reply = append(carrier.members[mi].reply, blk...)
		p.lp.copied += len(blk)
	}) {
		p.log.WithField("server", carrier.server.name).Warn("invalid reply from server: a VALUE for a key not asked for")
		for _, m := range carrier.members {
			p.fail(m, ErrServerProtocol)
		}
		return
	}
	for _, m := range carrier.members {
		m.reply = append(m.reply, "END\r\n"...)
		p.answered(m, false)
	}
}

// join adds m, a retrieval of n keys, to the carrier c.
func (c *msg) join(m *msg, n int, key func(i int) []byte) {
	if len(c.keyOff) == 0 {
		c.keyOff = append(c.keyOff, 0)
	}
	for i := range n {
		c.keys = append(c.keys, key(i)...)
		c.keyOff = append(c.keyOff, int32(len(c.keys)))
	}
	c.members = append(c.members, m)
	c.memberEnd = append(c.memberEnd, int32(len(c.keyOff)-1))
}

// merge interleaves the VALUE blocks of every fragment in the order the
// client asked for the keys. A failed fragment fails the request and closes
// the client, as twemproxy does.
func (mp *memcacheProto) merge(parent *msg) {
	for _, f := range parent.frags {
		if f.err != nil || f.isErr {
			parent.reply = append(parent.reply[:0], f.reply...)
			parent.closeAfter = true
			return
		}
	}
	nkeys := int(parent.keyIdx[0])
	blocks := mp.pool.mergeScratch(nkeys)
	for _, f := range parent.frags {
		if !matchValues(f.reply, len(f.keyIdx), func(j int) []byte { return parent.keyAt(int(f.keyIdx[j])) },
			func(j int, blk []byte) { blocks[f.keyIdx[j]] = blk }) {
			parent.reply = append(parent.reply[:0], "SERVER_ERROR invalid reply from server\r\n"...)
			parent.closeAfter = true
			return
		}
	}
	out := parent.reply[:0]
	for _, b := range blocks {
		out = append(out, b...)
		mp.pool.lp.copied += len(b)
	}
	clear(blocks)
	parent.reply = append(out, "END\r\n"...)
}

// matchValues walks the VALUE blocks of reply, a retrieval of n keys
// (keyAt(j) is key j): hits come back in key order and misses are absent,
// so each block belongs to the next key with its name, and hit gets that
// key's position and the block. It reports false for a block it cannot
// parse or place.
func matchValues(reply []byte, n int, keyAt func(j int) []byte, hit func(j int, blk []byte)) bool {
	body := memcache.StripEnd(reply)
	for j := 0; len(body) > 0; j++ {
		key, blk, ok := nextValue(body)
		for ok && j < n && !bytes.Equal(keyAt(j), key) {
			j++
		}
		if !ok || j == n {
			return false
		}
		hit(j, blk)
		body = body[len(blk):]
	}
	return true
}

// nextValue returns the key and the whole block of the VALUE line at the
// start of b: "VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n".
func nextValue(b []byte) (key, block []byte, ok bool) {
	eol := bytes.Index(b, []byte("\r\n"))
	if eol < 0 || !bytes.HasPrefix(b, []byte("VALUE ")) {
		return nil, nil, false
	}
	line := b[6:eol]
	var fields [3][]byte
	for i := range fields {
		line = bytes.TrimLeft(line, " ")
		end := bytes.IndexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		if end == 0 {
			return nil, nil, false
		}
		fields[i], line = line[:end], line[end:]
	}
	n := 0
	for _, ch := range fields[2] {
		if ch < '0' || ch > '9' {
			return nil, nil, false
		}
		n = n*10 + int(ch-'0')
		if n > 1<<30 {
			return nil, nil, false
		}
	}
	end := eol + 2 + n + 2
	if end > len(b) {
		return nil, nil, false
	}
	return fields[0], b[:end], true
}
