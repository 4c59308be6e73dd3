package memcache

import "bytes"

// AppendRetrieval appends a retrieval of keys with req's command (and
// exptime, for gat/gats): "get k1 k5\r\n", "gat 100 k1 k5\r\n". It is used to
// build one fragment per server from a multi-key request.
func AppendRetrieval(dst []byte, req *Request, keys [][]byte) []byte {
	dst = append(dst, req.Cmd.String()...)
	if req.Cmd == CmdGat || req.Cmd == CmdGats {
		dst = append(dst, ' ')
		dst = append(dst, req.Exptime...)
	}
	for _, k := range keys {
		dst = append(dst, ' ')
		dst = append(dst, k...)
	}
	return append(dst, "\r\n"...)
}

// AppendWithoutNoreply appends req as it should be forwarded: the command
// line without the classic noreply token or the meta q flag, so the backend
// answers every request, followed by the value block. A request without
// noreply is appended unchanged (its line terminator normalised to CRLF).
func AppendWithoutNoreply(dst []byte, req *Request) []byte {
	if req.dropArg < 0 {
		dst = append(dst, req.Line...)
	} else {
		first := true
		for i, a := range req.Args {
			if i == req.dropArg {
				continue
			}
			if !first {
				dst = append(dst, ' ')
			}
			dst = append(dst, a...)
			first = false
		}
	}
	dst = append(dst, "\r\n"...)
	return append(dst, req.Data...)
}

// Suppressed reports whether a client that asked for noreply (or meta quiet
// mode) would not have received reply, so the proxy must drop it.
//
// Classic noreply hides every reply, errors included, as memcached's
// out_string does. Meta q (memcached 1.6.18) hides EN for mg, HD for ms and
// md, and HD or VA for ma (a successful delta; memcached still answers when
// the item was auto-created, which the reply does not reveal). Meta errors
// and other codes are always returned.
func Suppressed(req *Request, reply []byte) bool {
	if !req.Noreply {
		return false
	}
	switch req.Cmd {
	case CmdMetaGet:
		return metaCode(reply, "EN")
	case CmdMetaSet, CmdMetaDelete:
		return metaCode(reply, "HD")
	case CmdMetaArithmetic:
		return metaCode(reply, "HD") || metaCode(reply, "VA")
	case CmdMetaDebug, CmdMetaNoop:
		return false
	}
	return true
}

// metaCode reports whether reply starts with the two-letter code followed by
// a space or CRLF.
func metaCode(reply []byte, code string) bool {
	if len(reply) < 3 || string(reply[:2]) != code {
		return false
	}
	return reply[2] == ' ' || reply[2] == '\r'
}

var endLine = []byte("END\r\n")

// StripEnd returns a retrieval reply without its trailing "END\r\n", leaving
// the VALUE blocks to be concatenated with those of other fragments. A reply
// that does not end in END (an error) is returned unchanged.
func StripEnd(reply []byte) []byte {
	if bytes.HasSuffix(reply, endLine) {
		return reply[:len(reply)-len(endLine)]
	}
	// ReplyLen also accepts an END line with trailing spaces or a bare LF:
	// the END line is what follows the last line break before the final
	// one (a data block ends with CRLF, so its bytes never reach past it).
	if len(reply) == 0 || reply[len(reply)-1] != '\n' {
		return reply
	}
	start := bytes.LastIndexByte(reply[:len(reply)-1], '\n') + 1
	if bytes.HasPrefix(reply[start:], endLine[:3]) {
		return reply[:start]
	}
	return reply
}
