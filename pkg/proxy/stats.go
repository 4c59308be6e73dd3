package proxy

import "sync/atomic"

// PoolStats are a pool's counters, named as twemproxy's stats port names
// them. Gauges go up and down; everything else only grows.
type PoolStats struct {
	ClientEOF         atomic.Uint64
	ClientErr         atomic.Uint64
	ClientConnections atomic.Int64 // gauge
	ServerEjects      atomic.Uint64
	ForwardError      atomic.Uint64
	Fragments         atomic.Uint64
	// Not in twemproxy: requests refused by a limit, and total accepted.
	ClientRejected atomic.Uint64
	ClientAccepted atomic.Uint64
	AuthAttempts   atomic.Uint64
	// AuthFailures counts refused AUTH attempts (wrong or rate-limited).
	AuthFailures atomic.Uint64
	// ClientIdleClosed counts clients closed by client_idle_timeout.
	ClientIdleClosed atomic.Uint64
	// ClientOutputClosed counts clients closed by an output limit.
	ClientOutputClosed atomic.Uint64
	// PubSubOutputClosed counts the subscribers among them (closed by the
	// client_output_pubsub_* limits).
	PubSubOutputClosed atomic.Uint64
	// SlowRequests counts requests over slowlog_slower_than.
	SlowRequests atomic.Uint64
	// Replayed counts requests sent again to a server's new master;
	// OutcomeUnknown writes failed because their master's connection
	// died after they were written (retry.go).
	Replayed       atomic.Uint64
	OutcomeUnknown atomic.Uint64
	// Cluster pools: MOVED and ASK followed, TRYAGAIN/CLUSTERDOWN/LOADING
	// retried, requests that ran out of redirects or time.
	Moved, Asked, TryAgain, RedirectsExhausted atomic.Uint64
	// Pinned links (pinned.go): opened, lent again from the idle ones,
	// and pins refused over max_pinned_links.
	PinnedOpened  atomic.Uint64
	PinnedReused  atomic.Uint64
	PinnedRefused atomic.Uint64
	// ACL denials (NOPERM), by what was refused: the command, a key, a
	// channel.
	ACLDeniedCommand, ACLDeniedKey, ACLDeniedChannel atomic.Uint64
	// Hand-over (handover.go): clients passed to the next generation,
	// clients taken from the previous one, and those refused (closed).
	ClientHandedOver      atomic.Uint64
	ClientAdopted         atomic.Uint64
	ClientHandoverRefused atomic.Uint64
	// TLS: handshakes done, and failed or refused (client and server side).
	TLSHandshakes      atomic.Uint64
	TLSHandshakeFailed atomic.Uint64
}

// ServerStats are one backend's counters, as twemproxy names them.
type ServerStats struct {
	EOF           atomic.Uint64
	Err           atomic.Uint64
	Timedout      atomic.Uint64
	Connections   atomic.Int64 // gauge
	EjectedAt     atomic.Int64 // unix micros of the last ejection
	Requests      atomic.Uint64
	RequestBytes  atomic.Uint64
	Responses     atomic.Uint64
	ResponseBytes atomic.Uint64
	// Switches counts the master moves of a Sentinel server; SwitchedAt
	// is when the last one was seen (unix µs).
	Switches   atomic.Uint64
	SwitchedAt atomic.Int64
}

// Snapshot is a point-in-time copy of every counter of a proxy, the unit a
// worker reports and the master sums.
type Snapshot struct {
	Pools []PoolSnapshot `json:"pools"`
}

// PeerTotals is what the other workers of the process group counted for
// one pool, as the master last summed it: what a worker adds to its own
// counters to answer INFO for the whole proxy.
type PeerTotals struct {
	Pool        string `json:"pool"`
	Clients     int64  `json:"clients"`
	Accepted    uint64 `json:"accepted"`
	Rejected    uint64 `json:"rejected"`
	Commands    uint64 `json:"commands"`
	ClientError uint64 `json:"client_err"`
}

// PeerTotalsOf sums the pools of total less the pools of own (a worker's
// last snapshot), pool by pool.
func PeerTotalsOf(total, own Snapshot) []PeerTotals {
	mine := map[string]*PoolSnapshot{}
	for i := range own.Pools {
		mine[own.Pools[i].Name] = &own.Pools[i]
	}
	out := make([]PeerTotals, 0, len(total.Pools))
	for _, tp := range total.Pools {
		pt := PeerTotals{Pool: tp.Name, Clients: tp.ClientConnections, Accepted: tp.ClientAccepted,
			Rejected: tp.ClientRejected, Commands: sumCommands(tp.Commands), ClientError: tp.ClientErr}
		if op := mine[tp.Name]; op != nil {
			pt.Clients = max(0, pt.Clients-op.ClientConnections)
			pt.Accepted -= min(pt.Accepted, op.ClientAccepted)
			pt.Rejected -= min(pt.Rejected, op.ClientRejected)
			pt.Commands -= min(pt.Commands, sumCommands(op.Commands))
			pt.ClientError -= min(pt.ClientError, op.ClientErr)
		}
		out = append(out, pt)
	}
	return out
}

func sumCommands(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// PoolSnapshot is one pool's counters.
type PoolSnapshot struct {
	Name               string `json:"name"`
	ClientEOF          uint64 `json:"client_eof"`
	ClientErr          uint64 `json:"client_err"`
	ClientConnections  int64  `json:"client_connections"`
	ServerEjects       uint64 `json:"server_ejects"`
	ForwardError       uint64 `json:"forward_error"`
	Fragments          uint64 `json:"fragments"`
	ClientAccepted     uint64 `json:"client_accepted"`
	ClientRejected     uint64 `json:"client_rejected"`
	AuthAttempts       uint64 `json:"auth_attempts"`
	AuthFailures       uint64 `json:"auth_failures"`
	ClientIdleClosed   uint64 `json:"client_idle_closed"`
	ClientOutputClosed uint64 `json:"client_output_closed"`
	SlowRequests       uint64 `json:"slow_requests"`
	Replayed           uint64 `json:"replayed,omitempty"`
	// A Sentinel pool's sentinels, and how many answered last; filled by
	// the master, which talks to them.
	SentinelsKnown     int64  `json:"sentinels_known,omitempty"`
	SentinelsReachable int64  `json:"sentinels_reachable,omitempty"`
	OutcomeUnknown     uint64 `json:"outcome_unknown,omitempty"`
	Moved              uint64 `json:"moved,omitempty"`
	Asked              uint64 `json:"asked,omitempty"`
	TryAgain           uint64 `json:"try_again,omitempty"`
	RedirectsExhausted uint64 `json:"redirects_exhausted,omitempty"`
	PinnedOpened       uint64 `json:"pinned_opened,omitempty"`
	PinnedReused       uint64 `json:"pinned_reused,omitempty"`
	PinnedRefused      uint64 `json:"pinned_refused,omitempty"`
	// PinnedLent (gauge) is the pinned links lent to clients now, of
	// PinnedOpen open.
	PinnedLent         int64  `json:"pinned_lent"`
	PinnedOpen         int64  `json:"pinned_open"`
	PubSubOutputClosed uint64 `json:"pubsub_output_closed,omitempty"`
	ACLDeniedCommand   uint64 `json:"acl_denied_command,omitempty"`
	ACLDeniedKey       uint64 `json:"acl_denied_key,omitempty"`
	ACLDeniedChannel   uint64 `json:"acl_denied_channel,omitempty"`
	ClientHandedOver   uint64 `json:"client_handed_over,omitempty"`
	ClientAdopted      uint64 `json:"client_adopted,omitempty"`
	HandoverRefused    uint64 `json:"client_handover_refused,omitempty"`
	TLSHandshakes      uint64 `json:"tls_handshakes,omitempty"`
	TLSHandshakeFailed uint64 `json:"tls_handshake_failed,omitempty"`
	// TLSCertNotAfter is when the listener's certificate expires (unix
	// seconds), 0 without TLS.
	TLSCertNotAfter int64             `json:"tls_cert_not_after,omitempty"`
	RequestLatency  HistogramSnapshot `json:"request_latency"`
	// Commands counts requests by command name (lowercase).
	Commands map[string]uint64 `json:"commands,omitempty"`
	Servers  []ServerSnapshot  `json:"servers"`
}

// ServerSnapshot is one backend's counters.
type ServerSnapshot struct {
	Name              string            `json:"name"`
	ServerEOF         uint64            `json:"server_eof"`
	ServerErr         uint64            `json:"server_err"`
	ServerTimedout    uint64            `json:"server_timedout"`
	ServerConnections int64             `json:"server_connections"`
	ServerEjectedAt   int64             `json:"server_ejected_at"`
	Requests          uint64            `json:"requests"`
	RequestBytes      uint64            `json:"request_bytes"`
	Responses         uint64            `json:"responses"`
	ResponseBytes     uint64            `json:"response_bytes"`
	InQueue           int64             `json:"in_queue"`
	InQueueBytes      int64             `json:"in_queue_bytes"`
	OutQueue          int64             `json:"out_queue"`
	ServerLatency     HistogramSnapshot `json:"server_latency"`
	// A Sentinel server's current master and how often it moved.
	Address    string `json:"address,omitempty"`
	Switches   uint64 `json:"switches,omitempty"`
	SwitchedAt int64  `json:"switched_at,omitempty"`
	Waiting    int64  `json:"waiting,omitempty"`
	// A cluster pool's node: "master" (named by the last slot map),
	// "replica" (a master's replica, used with read_from), or "node" (a
	// former master, or one a MOVED named before the map did); the slots
	// it owns; a replica's master.
	Role      string `json:"role,omitempty"`
	Slots     int64  `json:"slots,omitempty"`
	ReplicaOf string `json:"replica_of,omitempty"`
}
