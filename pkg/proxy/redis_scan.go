package proxy

import (
	"bytes"
	"math"
	"strconv"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Commands over the whole pool (issue #21):
//
//   - SCAN walks every server in turn, in the order of the configuration.
//     The proxy's cursor is server_cursor × number_of_servers +
//     server_index: 0 starts at server 0, and when server i's own cursor
//     comes back 0 the proxy answers i+1 (server i+1 from its start), or 0
//     after the last server. It depends only on the list of servers, so
//     a cursor stays valid across a reload that keeps the list. MATCH,
//     COUNT and TYPE are passed to each server as they are.
//   - DBSIZE is the sum of every server's.
//   - RANDOMKEY: see redis_admin.go.
//   - SCRIPT LOAD, EXISTS and FLUSH go to every server, so that EVALSHA
//     works whatever server its key is on: LOAD answers the hash, EXISTS 1
//     for a script every server has, FLUSH +OK once all flushed.
//
// Servers off the ring (ejected) are left out of DBSIZE, RANDOMKEY and
// SCRIPT; SCAN asks each configured server, so that its cursor means the
// same thing whatever is ejected.

// Fragment kinds of these commands (beside redis.go's).
const (
	opScan uint8 = 32 + iota
	opScriptLoad
	opScriptExists
)

func (r *redisProto) wholePool(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) bool {
	switch cmd.Name {
	case "scan":
		r.scan(c, args)
	case "dbsize":
		r.broadcast(c, opSum, args, raw)
	case "randomkey":
		r.broadcast(c, opRandomKey, args, raw) // redis_admin.go
	case "script":
		switch lower(args[1]) {
		case "load":
			if len(args) != 3 {
				c.localWrongArgs("script|load")
				return true
			}
			r.broadcast(c, opScriptLoad, args, raw)
		case "exists":
			if len(args) < 3 {
				c.localWrongArgs("script|exists")
				return true
			}
			r.broadcast(c, opScriptExists, args, raw)
		case "flush":
			r.broadcast(c, opMSet, args, raw)
		default:
			return false
		}
	default:
		return r.wholePoolMore(c, cmd, args, raw) // redis_admin.go
	}
	return true
}

// liveServers are the servers on the ring; a cluster pool's masters.
func (r *redisProto) liveServers() []*server {
	if cs := r.pool.cluster; cs != nil {
		return cs.masterList
	}
	var live []*server
	for _, s := range r.pool.servers {
		if s.ejectedUntil.Load() == 0 {
			live = append(live, s)
		}
	}
	return live
}

// broadcast sends the request to every live server as the fragments of
// one msg; merge (mergeWhole, or redis.go's opSum/opMSet) answers.
func (r *redisProto) broadcast(c *clientConn, op uint8, args [][]byte, raw []byte) {
	r.fanOut(c, op, r.liveServers(), requestBuilder(args, raw))
}

func (r *redisProto) fanOut(c *clientConn, op uint8, servers []*server, build func(dst []byte) []byte) {
	p := r.pool
	if len(servers) == 0 {
		m := newMsg(c)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	}
	parent := newMsg(c)
	parent.op = op
	parent.pending = int32(len(servers))
	p.stats.Fragments.Add(uint64(len(servers)))
	for range servers {
		f := p.lp.newMsg(nil)
		f.parent, f.op = parent, op
		parent.frags = append(parent.frags, f)
	}
	c.enqueue(parent)
	for i, s := range servers {
		p.forward(parent.frags[i], s, build)
	}
}

// scan sends SCAN to the server the cursor names, with that server's
// cursor.
func (r *redisProto) scan(c *clientConn, args [][]byte) {
	p := r.pool
	cur, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		c.localError("ERR invalid cursor")
		return
	}
	servers := r.scanServers()
	n := uint64(len(servers))
	if n == 0 {
		m := newMsg(c)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	}
	idx, sc := cur%n, cur/n
	s := servers[idx]
	parent := newMsg(c)
	parent.op = opScan
	parent.pending = 1
	parent.keyIdx = append(parent.keyIdx[:0], int32(idx))
	f := p.lp.newMsg(nil)
	f.parent, f.op = parent, opScan
	parent.frags = append(parent.frags, f)
	c.enqueue(parent)
	scs := strconv.AppendUint(nil, sc, 10)
	p.forward(f, s, func(dst []byte) []byte {
		dst = resp.AppendArrayHeader(dst, len(args))
		dst = resp.AppendBulk(dst, args[0])
		dst = resp.AppendBulk(dst, scs)
		for _, a := range args[2:] {
			dst = resp.AppendBulk(dst, a)
		}
		return dst
	})
}

// mergeWhole merges the fragments of this file's commands; an error of
// any server is the reply.
func (r *redisProto) mergeWhole(parent *msg) {
	for _, f := range parent.frags {
		if f.err != nil || f.isErr || len(f.reply) == 0 {
			parent.reply = append(parent.reply[:0], f.reply...)
			return
		}
	}
	if parent.op >= opFirstReply {
		r.mergeAdmin(parent)
		return
	}
	invalid := func() { parent.reply = resp.AppendError(parent.reply[:0], "ERR Invalid argument") }
	switch parent.op {
	case opScan:
		f := parent.frags[0]
		var elems [][]byte
		if err := resp.ArrayElems(f.reply, func(e []byte) bool { elems = append(elems, e); return true }); err != nil || len(elems) != 2 {
			invalid()
			return
		}
		sc, ok := bulkUint(elems[0])
		n := uint64(len(r.scanServers()))
		idx := uint64(parent.keyIdx[0])
		if !ok || sc > (math.MaxUint64-idx)/n {
			invalid()
			return
		}
		next := sc*n + idx
		if sc == 0 {
			next = (idx + 1) % n
		}
		out := resp.AppendArrayHeader(parent.reply[:0], 2)
		out = resp.AppendBulk(out, strconv.AppendUint(nil, next, 10))
		parent.reply = append(out, elems[1]...)
	case opScriptLoad:
		parent.reply = append(parent.reply[:0], parent.frags[0].reply...)
	case opScriptExists:
		var all []bool
		for fi, f := range parent.frags {
			i := 0
			err := resp.ArrayElems(f.reply, func(e []byte) bool {
				v, _ := resp.ParseInt(e)
				if fi == 0 {
					all = append(all, v == 1)
				} else if i < len(all) {
					all[i] = all[i] && v == 1
				}
				i++
				return true
			})
			if err != nil || i != len(all) {
				invalid()
				return
			}
		}
		out := resp.AppendArrayHeader(parent.reply[:0], len(all))
		for _, ok := range all {
			v := int64(0)
			if ok {
				v = 1
			}
			out = resp.AppendInt(out, v)
		}
		parent.reply = out
	}
}

// scanServers are the servers SCAN walks: the configured servers, or a
// cluster pool's masters in the order of the slot map (CLUSTER SHARDS'
// order), so that a cursor names the same master while the cluster keeps
// its masters.
func (r *redisProto) scanServers() []*server {
	if cs := r.pool.cluster; cs != nil {
		return cs.masterList
	}
	return r.pool.servers
}

// bulkUint reads a bulk string holding an unsigned number.
func bulkUint(e []byte) (uint64, bool) {
	if len(e) < 4 || e[0] != '$' {
		return 0, false
	}
	i := bytes.Index(e, []byte("\r\n"))
	if i < 0 || len(e) < i+4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(e[i+2:len(e)-2]), 10, 64)
	return v, err == nil
}
