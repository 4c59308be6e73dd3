package proxy

import (
	"bytes"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/memcache"
)

// Large memcached values stream as Redis bulks do (stream.go): a VALUE
// block's data is the bulk. When the next element of a retrieval reply is
// a VALUE block of streamThreshold bytes or more whose data has not all
// arrived, the link hands what it has framed of the reply to the request
// it belongs to and streams that block to its client (pausing while the
// client does not read). After the block the rest of the reply (more
// VALUE blocks, END) is framed as usual, and may stream again; l.cont is
// the request, or the carrier of coalesced gets, it belongs to. For a
// carrier the blocks go to each member as matchValues places them: a
// member whose keys all came before the large block is answered at once,
// the member of the large block gets its blocks before it, the block, and
// what follows of its own. A retrieval split across servers (its
// fragments merged in key order) is framed whole, as before.

// stream: see above.
func (mp *memcacheProto) stream(l *link, head *msg, buf []byte) bool {
	if head == nil || !memcache.Command(head.op).IsRetrieval() {
		return false
	}
	cmd := memcache.Command(head.op)
	pos := l.mscan.Pending()
	if pos > len(buf) {
		return false
	}
	key, lineLen, size, ok := memcache.ValueHead(cmd, buf[pos:])
	total := pos + lineLen + size + 2
	if !ok || lineLen+size+2 < streamThreshold || total <= len(buf) {
		return false
	}
	target, start := head, 0
	if len(head.members) > 0 {
		j, mi := l.contKey, l.contMember
		if l.cont == nil {
			j, mi = 0, 0
		}
		// A dry run first: nothing is handed out unless the block can stream.
		tmi, _, ok := mp.placeBlocks(head, buf[:pos], key, j, mi, nil)
		if !ok || !streamable(head.members[tmi]) {
			return false
		}
		target = head.members[tmi]
	} else if !streamable(head) {
		return false
	}
	s := l.sc.srv
	if l.cont == nil {
		l.pop()
		s.stats.Responses.Add(uint64(max(1, len(head.members))))
		l.cont, l.contKey, l.contMember = head, 0, 0
		for _, m := range head.members {
			m.sentAt = head.sentAt
		}
	}
	if len(head.members) > 0 {
		var j int
		l.contMember, j, _ = mp.placeBlocks(head, buf[:pos], key, l.contKey, l.contMember, func(mi, from, to int) {
			l.finishMember(head.members[mi], buf[from:to], memcacheEnd)
		})
		l.contKey = j + 1
		start = mp.memberStart
		s.stats.ResponseBytes.Add(uint64(start))
		l.rb.consume(start)
	}
	if prev := l.stream; prev != nil && prev != target {
		prev.stream = nil
	}
	l.mscan = memcache.ReplyScanner{} // the link takes the reply over
	l.startStream(target, total-start)
	return true
}

var memcacheEnd = []byte("END\r\n")

// placeBlocks walks the whole VALUE blocks of b, the next part of the
// carrier c's reply, then the block of key (which begins after b),
// matching them to c's keys from key j and member mi on. For each member
// whose keys all come before key's block it calls done(member, from, to)
// with its blocks b[from:to] (done may be nil). It returns the member of
// key's block and its key index, and leaves in mp.memberStart where that
// member's blocks begin in b; ok is false when a block is not one of the
// keys asked for (the framing then reports the reply invalid).
func (mp *memcacheProto) placeBlocks(c *msg, b, key []byte, j, mi int, done func(mi, from, to int)) (int, int, bool) {
	n := len(c.keyOff) - 1
	start, off := 0, 0
	for {
		var k, blk []byte
		last := off == len(b)
		if last {
			k = key
		} else {
			var ok bool
			if k, blk, ok = nextValue(b[off:]); !ok {
				return 0, 0, false
			}
		}
		for j < n && !bytes.Equal(c.keyAt(j), k) {
			j++
		}
		if j == n {
			return 0, 0, false
		}
		for int(c.memberEnd[mi]) <= j {
			if done != nil {
				done(mi, start, off)
			}
			mi++
			start = off
		}
		if last {
			mp.memberStart = start
			return mi, j, true
		}
		off += len(blk)
		j++
	}
}

// finishMember answers m, a member of a carrier whose reply streamed in
// part, with its blocks and the reply's last line.
func (l *link) finishMember(m *msg, blocks, end []byte) {
	p := l.sc.srv.pool
	if m == l.stream {
		// The member that streamed: the rest follows what it was given.
		l.give(m, blocks)
		l.give(m, end)
		m.stream = nil
		l.stream = nil
		p.answered(m, false)
		return
	}
	m.reply = append(append(m.reply[:0], blocks...), end...)
	l.lp.copied += len(blocks) + len(end)
	p.answered(m, false)
}

// rest: the rest of a retrieval whose blocks streamed in part, in buf:
// zero or more VALUE blocks and its last line.
func (mp *memcacheProto) rest(l *link, buf []byte, isErr bool) {
	cont, target := l.cont, l.stream
	l.cont, l.paused, l.streamLeft = nil, false, 0
	s := l.sc.srv
	s.ok()
	if len(cont.members) == 0 {
		l.give(target, buf)
		target.stream, l.stream = nil, nil
		s.pool.answered(target, isErr)
		return
	}
	body := buf
	if isErr {
		for len(body) > 0 {
			_, blk, ok := nextValue(body)
			if !ok {
				break
			}
			body = body[len(blk):]
		}
		body = buf[:len(buf)-len(body)]
	} else {
		body = memcache.StripEnd(buf)
	}
	end := buf[len(body):]
	mi, j := l.contMember, l.contKey
	off, start := 0, 0
	members := cont.members
	for off < len(body) {
		k, blk, ok := nextValue(body[off:])
		for ok && j < len(cont.keyOff)-1 && !bytes.Equal(cont.keyAt(j), k) {
			j++
		}
		if !ok || j == len(cont.keyOff)-1 {
			s.pool.log.WithField("server", s.name).Warn("invalid reply from server: a VALUE for a key not asked for")
			// The member that streamed has part of its reply: it is
			// closed after it; the others get the error.
			if l.stream != nil && members[mi] == l.stream {
				t := l.stream
				t.stream, l.stream = nil, nil
				t.closeAfter = true
				s.pool.answered(t, true)
				mi++
			}
			for ; mi < len(members); mi++ {
				s.pool.fail(members[mi], ErrServerProtocol)
			}
			cont.free()
			return
		}
		for int(cont.memberEnd[mi]) <= j {
			l.finishMember(members[mi], body[start:off], end)
			mi++
			start = off
		}
		off += len(blk)
		j++
	}
	for ; mi < len(members); mi++ {
		l.finishMember(members[mi], body[start:], end)
		start = len(body)
	}
	if l.stream != nil {
		l.stream.stream, l.stream = nil, nil
	}
	cont.free()
}
