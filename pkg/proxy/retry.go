package proxy

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
// outcome is replayed only for a read-only command, which running twice
// cannot change; a write fails with an error saying its outcome is
// unknown, since replaying it could apply it twice and answering anything
// else could lie. Servers of fixed address are never replayed (twemproxy's
// behaviour: the client sees the connection error).
type retryClass uint8

const (
	neverWritten retryClass = iota
	notRun
	unknownOutcome
)

// replayable is the rule.
func replayable(class retryClass, m *msg) bool {
	return class != unknownOutcome || m.readOnly
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
