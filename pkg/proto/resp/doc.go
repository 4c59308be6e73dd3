// Package resp is the Redis RESP2 and RESP3 codec and command table of the
// proxy.
//
// It does no I/O. The engine keeps one read buffer per connection and calls
// the parsers on it:
//
//   - RequestParser frames client requests (RESP arrays and inline commands)
//     in place. Arguments are subslices of the caller's buffer (inline
//     arguments live in a parser-owned scratch buffer) and nothing is
//     allocated per request. An incomplete request is resumed on the next call
//     instead of being re-parsed, so slow or fragmented clients cost O(n).
//   - ReplyScanner and ReplyLen frame server replies, RESP2 and RESP3,
//     without copying them, so they can be forwarded byte for byte.
//     Attributes ('|') are part of the reply they precede; ReplyType,
//     IsErrorReply and IsPush classify a complete reply (pushes are
//     out-of-band and answer no request), ArrayElems walks an aggregate.
//     Streamed RESP3 ("$?", "*?") is refused: redis never sends it.
//   - The Append* functions encode replies and commands onto a caller-owned
//     slice; the *For ones write RESP2 or RESP3 after the protocol the
//     client chose with HELLO.
//   - Lookup classifies a command for routing (single key, split multi-key,
//     EVAL-like, answered locally, or unsupported).
//
// Protocol errors mirror redis-server 7: a *ProtocolError's text is what
// redis replies after "-ERR ", e.g. "Protocol error: invalid bulk length".
// Limits are checked before anything is sized from a length the client
// declared. Where redis is lenient about framing (it skips the two bytes after
// a bulk or a count line without looking at them) this package is strict like
// twemproxy, so every request it accepts is canonical RESP and can be
// forwarded byte for byte.
package resp
