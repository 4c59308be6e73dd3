package proxy

import (
	"math/rand/v2"
	"strconv"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// More commands over the whole pool (issue #21), beside redis_scan.go's:
//
//   - PUBSUB CHANNELS [pattern] asks every live server and answers the
//     union. PUBSUB NUMSUB asks, for each channel, the server the channel
//     hashes to (where SUBSCRIBE through the proxy put its subscribers).
//     PUBSUB NUMPAT answers the largest of the servers' counts: the proxy
//     sends every PSUBSCRIBE to every server, so each server counts each
//     pattern subscribed through the proxy once, and the largest count is
//     the number of distinct patterns one redis would report (a pattern
//     subscribed on one server directly, past the proxy, is counted only
//     if that server holds the most).
//   - KEYS pattern, when the pool sets allow_keys: every live server's
//     keys, one array. It is O(N) on every server, so it is off by
//     default, with a refusal that says how to turn it on.
//   - FLUSHDB, FLUSHALL, CONFIG, DEBUG, when the pool sets
//     allow_admin_commands: sent to every configured server (an ejected
//     one too, so that a FLUSHDB never silently misses one); any server's
//     error is the reply, else the first server's (CONFIG GET: the first
//     server's values, the servers of a pool being configured alike).
//     DEBUG OBJECT key goes to its key's server.
//   - OBJECT, XINFO and XGROUP name their key after the subcommand; they
//     go to that key's server.
//   - RANDOMKEY asks every live server and answers one of the keys they
//     return, at random, so that it is nil only when every server is
//     empty, as on one redis.

// Fragment kinds of these commands (after redis_scan.go's).
const (
	opFirstReply uint8 = 48 + iota // any error, else the first server's reply
	opUnion                        // the arrays' elements, each once
	opConcat                       // the arrays' elements
	opNumSub                       // PUBSUB NUMSUB: pairs in the client's order
	opMaxInt                       // the largest integer
	opRandomKey                    // one of the non-nil replies, at random
)

// wholePoolMore takes the commands of this file; false leaves cmd refused.
func (r *redisProto) wholePoolMore(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) bool {
	p := r.pool
	switch cmd.Name {
	case "pubsub":
		return r.pubsubInfo(c, args, raw)
	case "keys":
		if !p.cfg.AllowKeys {
			c.localError("ERR command 'keys' is not supported by nuthatch: it walks every key of every server; set allow_keys = true in pool '" +
				p.cfg.Name + "' to enable it, or use SCAN")
			return true
		}
		r.broadcast(c, opConcat, args, raw)
	case "time":
		// Any server's clock: libraries use TIME for leases and rate
		// limits, and a pool's servers share one clock source or none.
		r.single(c, args, raw, nil)
	case "object", "xinfo", "xgroup":
		// OBJECT ENCODING key, XINFO STREAM key, XGROUP CREATE key ...:
		// the key follows the subcommand. HELP (or a missing key) goes to
		// any server, which answers as redis.
		if len(args) < 3 {
			r.single(c, args, raw, nil)
			return true
		}
		c.keys = append(c.keys[:0], 2)
		r.single(c, args, raw, c.keys)
	case "move":
		// MOVE key db, between the databases the pool lets clients select.
		if p.cfg.Databases == 0 {
			return false
		}
		if db, err := strconv.Atoi(string(args[2])); err != nil || db < 0 || db >= p.cfg.Databases {
			c.localError("ERR DB index is out of range")
			return true
		}
		c.keys = append(c.keys[:0], 1)
		r.single(c, args, raw, c.keys)
	case "flushdb", "flushall", "config", "debug":
		if !p.cfg.AllowAdminCommands {
			c.localError("ERR command '" + cmd.Name + "' is not supported by nuthatch: server command; set allow_admin_commands = true in pool '" +
				p.cfg.Name + "' to send it to every server")
			return true
		}
		if cmd.Name == "debug" && len(args) == 3 && lower(args[1]) == "object" {
			c.keys = append(c.keys[:0], 2)
			r.single(c, args, raw, c.keys)
			return true
		}
		r.fanOut(c, opFirstReply, p.servers, requestBuilder(args, raw))
	default:
		return false
	}
	return true
}

// pubsubInfo serves PUBSUB CHANNELS, NUMSUB, NUMPAT and HELP.
func (r *redisProto) pubsubInfo(c *clientConn, args [][]byte, raw []byte) bool {
	p := r.pool
	switch lower(args[1]) {
	case "channels":
		if len(args) > 3 {
			c.localError("ERR unknown subcommand or wrong number of arguments for '" + string(args[1]) + "'. Try PUBSUB HELP.")
			return true
		}
		r.broadcast(c, opUnion, args, raw)
	case "numpat":
		if len(args) != 2 {
			c.localWrongArgs("pubsub|numpat")
			return true
		}
		r.broadcast(c, opMaxInt, args, raw)
	case "numsub":
		if len(args) == 2 {
			// No channel: redis's empty reply, from any server.
			r.single(c, args, raw, nil)
			return true
		}
		nserv := p.groupKeys(c, 2, len(args), 1, func(i int) []byte { return args[i] })
		if nserv == 0 {
			m := newMsg(c)
			c.enqueue(m)
			p.fail(m, ErrNoServer)
			return true
		}
		parent := newMsg(c)
		parent.op = opNumSub
		parent.keyIdx = append(parent.keyIdx[:0], int32(len(args)-2))
		p.fragment(c, parent, nserv, func(dst []byte, keys []int32) []byte {
			dst = resp.AppendArrayHeader(dst, 2+len(keys))
			dst = resp.AppendBulk(dst, args[0])
			dst = resp.AppendBulk(dst, args[1])
			for _, ki := range keys {
				dst = resp.AppendBulk(dst, args[ki])
			}
			return dst
		})
	case "shardchannels", "shardnumsub":
		// Sharded channels are Redis Cluster's.
		return false
	default:
		// HELP, and redis's own error for an unknown subcommand.
		r.single(c, args, raw, nil)
	}
	return true
}

// mergeAdmin merges this file's fragments; mergeWhole has already made
// any server's error the reply.
func (r *redisProto) mergeAdmin(parent *msg) {
	invalid := func() { parent.reply = resp.AppendError(parent.reply[:0], "ERR Invalid argument") }
	switch parent.op {
	case opFirstReply:
		parent.reply = append(parent.reply[:0], parent.frags[0].reply...)
	case opUnion, opConcat:
		var elems [][]byte
		seen := map[string]bool{}
		for _, f := range parent.frags {
			err := resp.ArrayElems(f.reply, func(e []byte) bool {
				if parent.op == opUnion {
					if seen[string(e)] {
						return true
					}
					seen[string(e)] = true
				}
				elems = append(elems, e)
				return true
			})
			if err != nil {
				invalid()
				return
			}
		}
		out := resp.AppendArrayHeader(nil, len(elems))
		for _, e := range elems {
			out = append(out, e...)
		}
		parent.reply = append(parent.reply[:0], out...)
	case opRandomKey:
		var keys []*msg
		for _, f := range parent.frags {
			if !isNullReply(f.reply) {
				keys = append(keys, f)
			}
		}
		if len(keys) == 0 {
			parent.reply = append(parent.reply[:0], parent.frags[0].reply...)
			return
		}
		parent.reply = append(parent.reply[:0], keys[rand.IntN(len(keys))].reply...)
	case opMaxInt:
		var most int64
		for _, f := range parent.frags {
			v, ok := resp.ParseInt(f.reply)
			if !ok {
				invalid()
				return
			}
			most = max(most, v)
		}
		parent.reply = resp.AppendInt(parent.reply[:0], most)
	case opNumSub:
		n := int(parent.keyIdx[0])
		pairs := make([][]byte, 2*n)
		for _, f := range parent.frags {
			j := 0
			err := resp.ArrayElems(f.reply, func(e []byte) bool {
				if k := j / 2; k < len(f.keyIdx) {
					pairs[2*(int(f.keyIdx[k])-2)+j%2] = e
				}
				j++
				return true
			})
			if err != nil || j != 2*len(f.keyIdx) {
				invalid()
				return
			}
		}
		for _, e := range pairs {
			if e == nil {
				invalid()
				return
			}
		}
		out := resp.AppendArrayHeader(parent.reply[:0], len(pairs))
		for _, e := range pairs {
			out = append(out, e...)
		}
		parent.reply = out
	}
}

// isNullReply: a RESP2 nil bulk string or a RESP3 null.
func isNullReply(b []byte) bool {
	return string(b) == "$-1\r\n" || string(b) == "_\r\n"
}
