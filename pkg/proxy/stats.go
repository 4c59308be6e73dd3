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
}

// authAttempt counts AUTH attempts (a hook for rate limiting later).
func (s *PoolStats) authAttempt() { s.AuthAttempts.Add(1) }
