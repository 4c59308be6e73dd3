package resp

import "math"

// Default limits. They follow redis-server 7 (proto-max-bulk-len,
// PROTO_INLINE_MAX_SIZE) except for MaxArgs: redis accepts up to INT_MAX
// arguments, which lets one request header promise 2^31 arguments. The proxy
// caps it at 1,048,576 (an MSET of 524,288 pairs), the same order of
// magnitude as Envoy's 2,000,000 cap.
const (
	DefaultMaxBulkLen   = 512 << 20 // proto-max-bulk-len
	DefaultMaxArgs      = 1 << 20
	DefaultMaxInlineLen = 64 << 10 // PROTO_INLINE_MAX_SIZE
	DefaultMaxDepth     = 128      // nesting of reply arrays
	DefaultMaxArrayLen  = math.MaxInt32
)

// maxBulkCap is the largest MaxBulkLen honoured.
const maxBulkCap = min(1<<32, math.MaxInt/2)

// Limits bounds what the parsers accept. A zero or negative field means the
// default.
type Limits struct {
	// MaxBulkLen is the largest bulk string accepted, in requests and
	// replies. It also bounds simple-string and error lines in replies.
	MaxBulkLen int64
	// MaxArgs is the largest argument count of a request.
	MaxArgs int
	// MaxInlineLen bounds an inline request line and the count lines
	// ("*<n>", "$<n>") of a RESP request, like PROTO_INLINE_MAX_SIZE.
	MaxInlineLen int
	// MaxDepth is the deepest nesting of arrays accepted in a reply.
	MaxDepth int
	// MaxArrayLen is the largest element count of an array in a reply.
	// Replies come from trusted servers and nothing is sized from it, so
	// the default is as large as redis can produce.
	MaxArrayLen int64
}

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{
		MaxBulkLen:   DefaultMaxBulkLen,
		MaxArgs:      DefaultMaxArgs,
		MaxInlineLen: DefaultMaxInlineLen,
		MaxDepth:     DefaultMaxDepth,
		MaxArrayLen:  DefaultMaxArrayLen,
	}
}

// normalize fills zero fields with defaults and clamps values that would
// overflow the parsers' arithmetic.
func (l Limits) normalize() Limits {
	d := DefaultLimits()
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = d.MaxBulkLen
	}
	// Offsets are ints; keep offset plus bulk length far from overflow,
	// also where int has 32 bits.
	if l.MaxBulkLen > maxBulkCap {
		l.MaxBulkLen = maxBulkCap
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = d.MaxArgs
	}
	if l.MaxArgs > math.MaxInt32 { // redis: ll > INT_MAX is invalid
		l.MaxArgs = math.MaxInt32
	}
	if l.MaxInlineLen <= 0 {
		l.MaxInlineLen = d.MaxInlineLen
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxArrayLen <= 0 || l.MaxArrayLen > math.MaxInt32 {
		l.MaxArrayLen = d.MaxArrayLen
	}
	return l
}
