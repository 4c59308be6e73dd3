package proxy

import (
	"bytes"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// The retry rule, in one place. A request that did not get its reply from
// a server whose address moves is in one of three classes:
//
//   - never written: not a byte of it reached the server;
//   - provably not run: the server refused it before running it
//     (READONLY, MASTERDOWN, LOADING, NOREPLICAS);
//   - unknown outcome: it was written and the connection failed before
//     the reply, so the server may have run it.
//
// The first two are replayed on the server's (new) master. An unknown
// outcome is replayed only for a command that running twice leaves as
// running once: a read-only one, or an overwrite (replaySafe's list); any
// other write fails with an error saying its outcome is unknown, since
// replaying it could apply it twice and answering anything else could lie. Servers of fixed address are never replayed (twemproxy's
// behaviour: the client sees the connection error).
type retryClass uint8

const (
	neverWritten retryClass = iota
	notRun
	unknownOutcome
)

// replayable is the rule.
func replayable(class retryClass, m *msg) bool {
	return class != unknownOutcome || m.replaySafe
}

// overwrites are writes whose effect does not depend on how often they
// ran: they set a value (or remove it) rather than change it.
var overwrites = map[string]bool{
	"set": true, "setex": true, "psetex": true, "mset": true, "hset": true, "hmset": true,
	"del": true, "unlink": true, "hdel": true, "sadd": true, "srem": true, "zrem": true,
	"expireat": true, "pexpireat": true, "persist": true,
}

// replaySafe reports whether a request may be replayed after an unknown
// outcome. SET with NX, XX or GET answers differently the second time;
// relative EXPIRE, INCR, LPUSH and the like change what they find.
func replaySafe(cmd *resp.Command, args [][]byte) bool {
	if cmd.ReadOnly {
		return true
	}
	if !overwrites[cmd.Name] {
		return false
	}
	if cmd.Name == "set" {
		if len(args) < 3 {
			return false
		}
		for _, a := range args[3:] {
			switch string(bytes.ToUpper(a)) {
			case "NX", "XX", "GET":
				return false
			}
		}
	}
	return true
}

// retryOrFail replays m on s, or fails it, by its class.
func (p *pool) retryOrFail(m *msg, s *server, class retryClass) {
	if replayable(class, m) {
		p.stats.Replayed.Add(1)
		s.park(m)
		return
	}
	p.stats.OutcomeUnknown.Add(1)
	p.fail(m, &outcomeError{server: s.name})
}
