package load

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// Errors of the reply parsers.
var (
	// errIncomplete means the buffer ends inside a reply: read more.
	errIncomplete = errors.New("load: incomplete reply")
	// ErrProtocol means the server sent something that is not a reply.
	ErrProtocol = errors.New("load: protocol error")
)

// reply classifies one parsed reply.
type reply uint8

const (
	replyOK    reply = iota // a value, a status, a stored
	replyMiss               // a nil bulk, or END without a VALUE
	replyError              // -ERR, SERVER_ERROR, CLIENT_ERROR, ERROR
)

// appendKey appends prefix and the decimal key index, zero-padded to 12
// digits (redis-benchmark's __rand_int__ form, so both load generators
// address the same preloaded keys).
func appendKey(b []byte, prefix string, i int) []byte {
	b = append(b, prefix...)
	var d [20]byte
	s := strconv.AppendInt(d[:0], int64(i), 10)
	for n := len(s); n < 12; n++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// KeyName is the key of index i under prefix, as the generator sends it.
func KeyName(prefix string, i int) string { return string(appendKey(nil, prefix, i)) }

func appendBulkHeader(b []byte, n int) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

// appendRedis appends one RESP command whose first argument is cmd,
// followed by keys and, when value is not nil, the value.
func appendRedis(b []byte, cmd string, prefix string, keys []int, value []byte) []byte {
	n := 1 + len(keys)
	if value != nil {
		n++
	}
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, '\r', '\n')
	b = appendBulkHeader(b, len(cmd))
	b = append(b, cmd...)
	b = append(b, '\r', '\n')
	for _, k := range keys {
		b = appendBulkHeader(b, keyLen(prefix, k))
		b = appendKey(b, prefix, k)
		b = append(b, '\r', '\n')
	}
	if value != nil {
		b = appendBulkHeader(b, len(value))
		b = append(b, value...)
		b = append(b, '\r', '\n')
	}
	return b
}

// keyLen is len(KeyName(prefix, k)) without building it.
func keyLen(prefix string, k int) int {
	digits := 1
	for v := k; v >= 10; v /= 10 {
		digits++
	}
	return len(prefix) + max(digits, 12)
}

// appendMemcacheGet appends "get k1 k2 …\r\n".
func appendMemcacheGet(b []byte, prefix string, keys []int) []byte {
	b = append(b, "get"...)
	for _, k := range keys {
		b = append(b, ' ')
		b = appendKey(b, prefix, k)
	}
	return append(b, '\r', '\n')
}

// appendMemcacheSet appends "set k 0 0 n\r\n<value>\r\n".
func appendMemcacheSet(b []byte, prefix string, key int, value []byte) []byte {
	b = append(b, "set "...)
	b = appendKey(b, prefix, key)
	b = append(b, " 0 0 "...)
	b = strconv.AppendInt(b, int64(len(value)), 10)
	b = append(b, '\r', '\n')
	b = append(b, value...)
	return append(b, '\r', '\n')
}

// parseRedis parses one RESP2 or RESP3 reply at the start of b and
// returns its length. A reply counts as a miss when it is a null (a nil
// bulk or array, RESP3's "_") or an aggregate made only of nulls, and as an
// error when it is one ('-', RESP3's blob error '!') or holds one.
// Attributes ('|') before a reply are part of it. An out-of-band push ('>')
// is an error: it answers no request, and the generator subscribes to
// nothing and turns no client tracking on, so a server should send none.
func parseRedis(b []byte) (int, reply, error) {
	if len(b) > 0 && b[0] == '>' {
		return 0, 0, fmt.Errorf("%w: out-of-band push reply", ErrProtocol)
	}
	return parseElem(b)
}

// parseElem parses one element of a reply: the reply itself, or one
// element of an aggregate.
func parseElem(b []byte) (int, reply, error) {
	if len(b) == 0 {
		return 0, 0, errIncomplete
	}
	eol := bytes.Index(b, crlf)
	if eol < 0 {
		return 0, 0, errIncomplete
	}
	if eol == 0 {
		return 0, 0, fmt.Errorf("%w: empty reply line", ErrProtocol)
	}
	line := b[1:eol]
	switch b[0] {
	case '+', ':', '#', ',', '(':
		return eol + 2, replyOK, nil
	case '-':
		return eol + 2, replyError, nil
	case '_':
		if eol != 1 {
			return 0, 0, fmt.Errorf("%w: invalid null %q", ErrProtocol, b[:eol])
		}
		return eol + 2, replyMiss, nil
	case '$', '=', '!':
		n, err := atoi(line)
		if err != nil {
			return 0, 0, err
		}
		if n < 0 {
			if b[0] != '$' {
				return 0, 0, fmt.Errorf("%w: negative length %q", ErrProtocol, b[:eol])
			}
			return eol + 2, replyMiss, nil
		}
		end := eol + 2 + n + 2
		if len(b) < end {
			return 0, 0, errIncomplete
		}
		if b[0] == '!' {
			return end, replyError, nil
		}
		return end, replyOK, nil
	case '*', '~', '%', '>', '|':
		n, err := atoi(line)
		if err != nil {
			return 0, 0, err
		}
		off := eol + 2
		if n < 0 {
			if b[0] != '*' {
				return 0, 0, fmt.Errorf("%w: negative count %q", ErrProtocol, b[:eol])
			}
			return off, replyMiss, nil
		}
		if b[0] == '%' || b[0] == '|' {
			n *= 2 // pairs
		}
		kind := replyMiss
		for i := 0; i < n; i++ {
			m, r, err := parseElem(b[off:])
			if err != nil {
				return 0, 0, err
			}
			off += m
			switch {
			case r == replyError:
				kind = replyError
			case r == replyOK && kind == replyMiss:
				kind = replyOK
			}
		}
		if b[0] == '|' {
			// The attribute annotates the element after it, which is
			// what the reply is.
			m, r, err := parseElem(b[off:])
			if err != nil {
				return 0, 0, err
			}
			return off + m, r, nil
		}
		if n == 0 {
			kind = replyOK
		}
		return off, kind, nil
	}
	return 0, 0, fmt.Errorf("%w: reply starts with %q", ErrProtocol, b[0])
}

var crlf = []byte("\r\n")

// parseMemcache parses one memcached text reply at the start of b: a
// retrieval reply (VALUE blocks up to END) or a one-line reply.
func parseMemcache(b []byte) (int, reply, error) {
	off := 0
	values := 0
	for {
		eol := bytes.Index(b[off:], crlf)
		if eol < 0 {
			return 0, 0, errIncomplete
		}
		line := b[off : off+eol]
		next := off + eol + 2
		switch {
		case bytes.HasPrefix(line, []byte("VALUE ")):
			// VALUE <key> <flags> <bytes> [<cas>]
			f := bytes.Fields(line)
			if len(f) < 4 {
				return 0, 0, fmt.Errorf("%w: %q", ErrProtocol, line)
			}
			n, err := atoi(f[3])
			if err != nil || n < 0 {
				return 0, 0, fmt.Errorf("%w: %q", ErrProtocol, line)
			}
			next += n + 2
			if len(b) < next {
				return 0, 0, errIncomplete
			}
			values++
			off = next
			continue
		case bytes.Equal(line, []byte("END")):
			if values == 0 {
				return next, replyMiss, nil
			}
			return next, replyOK, nil
		case values > 0:
			return 0, 0, fmt.Errorf("%w: %q inside a retrieval reply", ErrProtocol, line)
		case bytes.HasPrefix(line, []byte("SERVER_ERROR")), bytes.HasPrefix(line, []byte("CLIENT_ERROR")),
			bytes.Equal(line, []byte("ERROR")):
			return next, replyError, nil
		case bytes.Equal(line, []byte("NOT_FOUND")):
			return next, replyMiss, nil
		default: // STORED, DELETED, TOUCHED, a version, a number…
			return next, replyOK, nil
		}
	}
}

// atoi parses a small signed decimal; the generator only ever reads
// lengths its own servers produced, but a bad one must not panic.
func atoi(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 18 {
		return 0, fmt.Errorf("%w: bad number %q", ErrProtocol, b)
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad number %q", ErrProtocol, b)
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}
