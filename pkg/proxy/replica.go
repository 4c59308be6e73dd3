package proxy

import (
	"slices"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// Replica reads (read_from in a sentinel block). The topology source names
// each server's replicas fit for reads with its master (ServerAddress's
// Replicas, filtered by the watcher: not down, not disconnected, link to
// the master up). A client's read-only command goes to one of them, round
// robin, on links of its own; writes, and the proxy's own requests, go to
// the master. A replica that fails (the dial, the connection, or a reply
// that proves the read did not run: LOADING, MASTERDOWN) is skipped for
// replicaRetry, and its reads, which running twice cannot change, are
// sent again: to another replica or, with replica_preferred, the master,
// so that the client sees no error. With read_from = "replica" a read for
// a server that has no usable replica fails with noReplicaError.

// replicaRetry is how long a failed replica is skipped.
const replicaRetry = int64(1e9)

// noReplicaError fails a read of a read_from = "replica" pool when the
// server has no usable replica.
type noReplicaError struct{ server string }

func (e *noReplicaError) Error() string {
	return "nuthatch: server '" + e.server + "' has no usable replica"
}

// setReplicas applies the replica list of a topology message: links to
// replicas no longer named close (their reads are sent again).
func (s *server) setReplicas(addrs []string) {
	keep := s.replicas[:0:0]
	for _, r := range s.replicas {
		if slices.Contains(addrs, r.addr.Addr) {
			keep = append(keep, r)
			continue
		}
		s.pool.log.WithField("server", s.name).WithField("replica", r.addr.Addr).Info("replica no longer used for reads")
		r.eachConn(func(sc *serverConn) {
			if l := sc.current(); l != nil {
				l.kill(errAddressChanged)
			}
		})
	}
	for _, a := range addrs {
		if a == s.addr.Addr || slices.ContainsFunc(keep, func(r *server) bool { return r.addr.Addr == a }) {
			continue
		}
		r := &server{pool: s.pool, idx: s.idx, name: s.name, addr: config.Address{Network: "tcp", Addr: a},
			cfg: s.cfg, managed: true, primary: s}
		r.conns = newServerConns(r, len(s.conns), false)
		keep = append(keep, r)
		s.pool.log.WithField("server", s.name).WithField("replica", a).Info("replica used for reads")
	}
	s.replicas = keep
}

// pickReplica returns the next usable replica of s, or nil.
func (s *server) pickReplica(now int64) *server {
	n := len(s.replicas)
	for i := range n {
		r := s.replicas[(int(s.replRR)+i)%n]
		if now >= r.downUntil {
			s.replRR = uint32((int(s.replRR) + i + 1) % n)
			return r
		}
	}
	return nil
}

// replicaFailed skips the replica for replicaRetry.
func (r *server) replicaFailed(now int64) {
	if now >= r.downUntil {
		r.pool.log.WithField("server", r.name).WithField("replica", r.addr.Addr).Debug("replica failed, reads go elsewhere for 1s")
	}
	r.downUntil = now + replicaRetry
}

// replayReplica sends the reads of a replica's dead link again, through
// the primary's routing (another replica, or the master).
func (l *link) replayReplica(pending []*msg, err error) {
	r := l.sc.srv
	if err != errAddressChanged {
		r.replicaFailed(r.pool.lp.now)
	}
	s := r.primary
	for _, m := range pending {
		switch {
		case m.client == nil && m.parent == nil:
			m.free() // the link's own set-up
		case m.sentAt == 0:
			s.pool.retryOrFail(m, s, neverWritten)
		default:
			s.pool.retryOrFail(m, s, unknownOutcome)
		}
	}
	s.flushWaiting()
}

// replicaRefused reports whether a replica's error reply proves a read did
// not run: it is loading, or cut off from its master with
// replica-serve-stale-data no.
func replicaRefused(reply []byte) bool {
	return notRunError(reply)
}

// eachConnAndReplicas is eachConn over s and its replicas.
func (s *server) eachConnAndReplicas(fn func(sc *serverConn)) {
	s.eachConn(fn)
	for _, r := range s.replicas {
		r.eachConn(fn)
	}
}
