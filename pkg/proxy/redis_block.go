package proxy

import (
	"bytes"
	"math"
	"strconv"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Blocking commands (issue #21): each call goes on a link pinned to the
// client for the call, with the command's own timeout (the pool's
// timeout is not applied while it blocks: expirePins). Every key must
// live on one server. A client's blocking calls to one server that
// follow each other share its link, queued as redis would run them on
// one connection. A client that disconnects while blocked closes that
// link: the server is in the middle of the command.

// isBlocking names the commands that may block.
func isBlocking(name string) bool {
	switch name {
	case "blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop", "xread", "xreadgroup":
		return true
	}
	return false
}

// blockingKeys returns the key positions of a blocking command and its
// timeout in nanoseconds: -1 for none (0 seconds), 0 when the call does
// not block (XREAD without BLOCK) or the timeout is not one redis takes
// (then the server answers at once with its error).
func blockingKeys(cmd *resp.Command, args [][]byte, dst []int) ([]int, int64, error) {
	switch cmd.Name {
	case "xread", "xreadgroup":
		var block int64
		for i := 1; i < len(args); i++ {
			switch {
			case bytes.EqualFold(args[i], []byte("streams")):
				rest := len(args) - i - 1
				if rest == 0 || rest%2 != 0 {
					return dst, block, nil // the server says what is wrong
				}
				for k := i + 1; k <= i+rest/2; k++ {
					dst = append(dst, k)
				}
				return dst, block, nil
			case bytes.EqualFold(args[i], []byte("block")) && i+1 < len(args):
				ms, err := strconv.ParseInt(string(args[i+1]), 10, 64)
				switch {
				case err != nil || ms < 0:
				case ms == 0:
					block = -1
				default:
					block = ms * 1e6
				}
				i++
			case bytes.EqualFold(args[i], []byte("group")) && i+2 < len(args):
				i += 2
			case bytes.EqualFold(args[i], []byte("count")) && i+1 < len(args):
				i++
			}
		}
		return dst, block, nil
	}
	keys, err := resp.Keys(cmd, args, dst)
	if err != nil {
		return keys, 0, err
	}
	ti := len(args) - 1
	switch cmd.Name {
	case "blmpop", "bzmpop":
		ti = 1
	}
	return keys, secondsTimeout(args[ti]), nil
}

// secondsTimeout reads a blocking command's timeout in seconds.
func secondsTimeout(b []byte) int64 {
	f, err := strconv.ParseFloat(string(b), 64)
	switch {
	case err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0):
		return 0
	case f == 0:
		return -1
	}
	return int64(f * 1e9)
}

// blocking sends a blocking call on a pinned link.
func (r *redisProto) blocking(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) {
	p := r.pool
	keys, timeout, err := blockingKeys(cmd, args, c.keys[:0])
	c.keys = keys
	if err != nil {
		c.localError("ERR " + err.Error())
		return
	}
	if len(keys) == 0 || timeout == 0 && (cmd.Name == "xread" || cmd.Name == "xreadgroup") {
		// It does not block (or is malformed, which its server answers).
		r.single(c, args, raw, keys)
		return
	}
	c.cmdKey = args[keys[0]]
	s := p.serverFor(args[keys[0]])
	if s == nil {
		m := newMsg(c)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	}
	for _, k := range keys[1:] {
		if p.cluster != nil && hashkit.Slot(args[k]) != hashkit.Slot(args[keys[0]]) {
			c.localError(crossSlotText)
			return
		}
		if p.serverFor(args[k]) != s {
			c.localError("ERR keys of '" + cmd.Name + "' map to different servers; use a hash_tag to keep them together")
			return
		}
	}
	m := newMsg(c)
	m.blockFor = timeout
	c.enqueue(m)
	if p.cluster != nil {
		// Kept, for a MOVED to send it to the slot's new owner
		// (pinnedRedirect).
		m.slot, m.hasSlot = int32(hashkit.Slot(args[keys[0]])), true
		m.req = requestBuilder(args, raw)(m.req[:0])
	}
	p.sendBlocking(c, m, s, requestBuilder(args, raw), false)
}

// sendBlocking sends the blocking call m on c's link to s, pinning one
// when c has none there.
// asking sends ASKING first (the call follows an ASK to s).
func (p *pool) sendBlocking(c *clientConn, m *msg, s *server, build func(dst []byte) []byte, asking bool) {
	st := c.stateful()
	var l *link
	keep := st.blocks[:0]
	for _, b := range st.blocks {
		if !b.blockedFor(c) {
			continue
		}
		keep = append(keep, b)
		if b.sc.srv == s && b.sc.dbSel == c.linkClass>>1 {
			l = b
		}
	}
	clear(st.blocks[len(keep):])
	st.blocks = keep
	if l == nil {
		var err error
		l, err = p.pin(c, s, pinBlock)
		if err == errPinWait {
			return // m is dropped with the unconsumed request (redisProto.parse)
		}
		if err != nil {
			p.fail(m, err)
			return
		}
		st.blocks = append(st.blocks, l)
	}
	if asking {
		l.sendInternal(appendAsking)
	}
	p.sendPinned(m, l, build)
	l.unpin()
}
