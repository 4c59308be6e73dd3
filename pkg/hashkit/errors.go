package hashkit

import "errors"

// Sentinel errors; returned errors wrap them, so test with errors.Is.
var (
	// ErrUnknownHash reports a hash name twemproxy does not know.
	ErrUnknownHash = errors.New("hashkit: unknown hash")
	// ErrUnknownDistribution reports a distribution name twemproxy does
	// not know.
	ErrUnknownDistribution = errors.New("hashkit: unknown distribution")
	// ErrInvalidNodes reports a server list twemproxy would reject: no
	// servers, a weight below 1, or a live mask of the wrong length.
	ErrInvalidNodes = errors.New("hashkit: invalid nodes")
)
