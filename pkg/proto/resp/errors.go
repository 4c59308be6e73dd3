package resp

import "errors"

// ProtocolError is a framing error. Error returns the text redis-server 7
// replies after "-ERR " for the same input (for example "Protocol error:
// invalid multibulk length"), so the engine can answer exactly like redis
// before it closes the connection.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return e.Msg }

// Protocol errors with a fixed text. They are shared values; compare with
// errors.Is or inspect Msg.
var (
	ErrInvalidMultibulkLen = &ProtocolError{"Protocol error: invalid multibulk length"}
	ErrInvalidBulkLen      = &ProtocolError{"Protocol error: invalid bulk length"}
	ErrTooBigInline        = &ProtocolError{"Protocol error: too big inline request"}
	ErrTooBigMbulkCount    = &ProtocolError{"Protocol error: too big mbulk count string"}
	ErrTooBigBulkCount     = &ProtocolError{"Protocol error: too big bulk count string"}
	ErrUnbalancedQuotes    = &ProtocolError{"Protocol error: unbalanced quotes in request"}
	// ErrBulkTerminator has no redis equivalent: redis skips the two bytes
	// after bulk data without checking them, the proxy requires CRLF.
	ErrBulkTerminator = &ProtocolError{"Protocol error: bulk data not terminated by CRLF"}
)

// expectedDollar builds redis's "expected '$', got '%c'" text. Redis maps CR
// and LF in error texts to spaces.
func expectedDollar(c byte) *ProtocolError {
	if c == '\r' || c == '\n' {
		c = ' '
	}
	return &ProtocolError{"Protocol error: expected '$', got '" + string([]byte{c}) + "'"}
}

// ErrBadReply reports a malformed server reply. Reply errors wrap it, so
// callers can test errors.Is(err, ErrBadReply).
var ErrBadReply = errors.New("resp: malformed reply")

// Errors of Keys for commands whose key count is an argument (EVAL, ZUNION,
// ...). Their texts are what redis answers, without "ERR ".
var (
	ErrNoKeys      = errors.New("resp: command has no key")
	ErrKeyCount    = errors.New("value is not an integer or out of range")
	ErrKeyCountBig = errors.New("Number of keys can't be greater than number of args")
	ErrKeyCountNeg = errors.New("Number of keys can't be negative")
)
