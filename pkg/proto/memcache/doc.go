// Package memcache is the memcached ASCII protocol codec of the proxy: the
// classic text commands (get, set, delete, incr, ...) and the meta commands
// (mg, ms, md, ma, mn, me) as spoken by memcached 1.6.18.
//
// The package does no I/O. The engine keeps one read buffer per connection
// and hands it to the parsers:
//
//   - RequestParser.Parse frames and validates one client request at the
//     start of the buffer, zero-copy: keys, arguments and the value block are
//     subslices of the caller's buffer. Requests memcached would reject are
//     returned as *Error carrying the exact reply line memcached sends, the
//     number of bytes to discard to stay in sync (Skip) and whether memcached
//     would close the connection.
//   - ReplyLen frames one backend reply for a given command; a ReplyScanner,
//     one per server connection, does the same but resumes a retrieval reply
//     cut across reads at its first incomplete VALUE block.
//   - AppendRetrieval, AppendWithoutNoreply, Suppressed and StripEnd help the
//     engine split multi-key retrievals per server, keep exactly one reply per
//     forwarded request, and merge fragments.
//
// Validation is deliberately never looser than memcached's: a request this
// package accepts produces exactly one reply from memcached, so a backend
// connection cannot fall out of step. Where twemproxy's test suite rejects
// input that memcached tolerates (an unknown token in the noreply position,
// "version extra", a stray CR in a command line) the stricter behaviour is
// kept.
package memcache
