package memcache

import "errors"

// Sentinel errors returned (wrapped) by ReplyLen.
var (
	// ErrBadReply means the backend sent bytes that are not a valid reply
	// to the command; the backend connection is out of step and must be
	// closed.
	ErrBadReply = errors.New("memcache: malformed reply")
	// ErrReplyTooLarge means a reply declared a value larger than
	// MaxReplyValueLen or sent a line longer than MaxReplyLineLen.
	ErrReplyTooLarge = errors.New("memcache: reply too large")
	// ErrNoReply means the command never gets a reply (quit).
	ErrNoReply = errors.New("memcache: command has no reply")
)

// ErrorKind selects the reply line of a request error.
type ErrorKind uint8

const (
	// ErrKindNone: memcached sends nothing and closes the connection.
	ErrKindNone ErrorKind = iota
	// ErrKindError: "ERROR" (unknown command or wrong argument count).
	ErrKindError
	// ErrKindClient: "CLIENT_ERROR <Msg>".
	ErrKindClient
	// ErrKindServer: "SERVER_ERROR <Msg>".
	ErrKindServer
)

// Error is a request that memcached would refuse. Error() is the reply line
// memcached sends, without the trailing CRLF.
type Error struct {
	Kind ErrorKind
	// Msg is the text after CLIENT_ERROR/SERVER_ERROR, or the close reason
	// for ErrKindNone.
	Msg string
	// Skip is the number of bytes to discard to resynchronise. It may exceed
	// the bytes currently buffered (an oversized value is swallowed whole,
	// as memcached does); the caller must then discard incoming bytes too.
	Skip int
	// Close means the connection must be closed after the reply (if any).
	Close bool
	// Noreply means the client asked for noreply before memcached found the
	// error, so memcached sends nothing; the connection stays open.
	Noreply bool
}

func (e *Error) Error() string {
	switch e.Kind {
	case ErrKindError:
		return "ERROR"
	case ErrKindClient:
		return "CLIENT_ERROR " + e.Msg
	case ErrKindServer:
		return "SERVER_ERROR " + e.Msg
	}
	return "memcache: " + e.Msg
}

// AppendReply appends the reply memcached would send for e, CRLF included;
// nothing for ErrKindNone or when Noreply is set.
func (e *Error) AppendReply(dst []byte) []byte {
	if e.Noreply || e.Kind == ErrKindNone {
		return dst
	}
	switch e.Kind {
	case ErrKindError:
		dst = append(dst, "ERROR"...)
	case ErrKindClient:
		dst = append(dst, "CLIENT_ERROR "...)
		dst = append(dst, e.Msg...)
	case ErrKindServer:
		dst = append(dst, "SERVER_ERROR "...)
		dst = append(dst, e.Msg...)
	}
	return append(dst, "\r\n"...)
}

// Texts memcached 1.6.18 uses (proto_text.c).
const (
	msgBadFormat      = "bad command line format"
	msgBadDelete      = "bad command line format.  Usage: delete <key> [noreply]"
	msgBadDataChunk   = "bad data chunk"
	msgTooLarge       = "object too large for cache"
	msgBadExptime     = "invalid exptime argument"
	msgBadDelta       = "invalid numeric delta argument"
	msgGetOOM         = "out of memory writing get response"
	msgDupFlag        = "duplicate flag"
	msgInvalidFlag    = "invalid flag"
	msgBadToken       = "bad token in command line format"
	msgDecodeKey      = "error decoding key"
	msgMLength        = "incorrect length for M token"
	msgBadInitial     = "invalid numeric initial value"
	msgBadDeltaValue  = "invalid numeric delta value"
	msgOpaqueTooLong  = "opaque token too long"
	msgMgFlagsTooLong = "options flags are too long"
	msgFlagsTooLong   = "options flags too long"
	msgInvalidOrDup   = "invalid or duplicate flag"
	msgBadMsMode      = "invalid mode for ms M token"
	msgBadMaMode      = "invalid mode for ma M token"
	reasonBinary      = "binary protocol not supported"
	reasonLineTooLong = "line too long"
	reasonHTTP        = "HTTP request on memcached port"
)

func errUnknown(skip int) *Error { return &Error{Kind: ErrKindError, Skip: skip} }

func errClient(msg string, skip int, noreply bool) *Error {
	return &Error{Kind: ErrKindClient, Msg: msg, Skip: skip, Noreply: noreply}
}
