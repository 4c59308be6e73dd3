package proxy

import (
	"bytes"
	"errors"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/memcache"
)

type memcacheProto struct {
	pool *pool
	lim  memcache.Limits
}

// maxRetrievalLine bounds a get/gets/gat/gats line. memcached has no such
// limit and libmemcached's mget sends every key of a call on one line
// (memcslap --test=mget: over 64 KiB); 2 MiB holds the codec's 10000 keys
// at 200 bytes each.
const maxRetrievalLine = 2 << 20

func newMemcacheProto(p *pool) *memcacheProto {
	lim := memcache.DefaultLimits()
	lim.MaxRetrievalLineLen = maxRetrievalLine
	return &memcacheProto{pool: p, lim: lim}
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
		body := memcache.StripEnd(f.reply)
		j := 0
		for len(body) > 0 {
			key, blk, ok := nextValue(body)
			// Hits come back in the fragment's key order, misses are absent.
			for ok && j < len(f.keyIdx) && !bytes.Equal(parent.keyAt(int(f.keyIdx[j])), key) {
				j++
			}
			if !ok || j == len(f.keyIdx) {
				parent.reply = append(parent.reply[:0], "SERVER_ERROR invalid reply from server\r\n"...)
				parent.closeAfter = true
				return
			}
			blocks[f.keyIdx[j]] = blk
			j++
			body = body[len(blk):]
		}
	}
	out := parent.reply[:0]
	for _, b := range blocks {
		out = append(out, b...)
	}
	clear(blocks)
	parent.reply = append(out, "END\r\n"...)
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
