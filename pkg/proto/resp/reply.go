package resp

import (
	"bytes"
	"fmt"
)

// Reply type bytes of RESP2.
const (
	TypeStatus = '+' // +<line>\r\n
	TypeError  = '-' // -<line>\r\n
	TypeInt    = ':' // :<int64>\r\n
	TypeBulk   = '$' // $<len>\r\n<bytes>\r\n, $-1\r\n is null
	TypeArray  = '*' // *<count>\r\n<elements>, *-1\r\n is null
)

// Reply type bytes RESP3 adds. Redis never sends the streamed forms ("$?",
// "*?", ';' chunks, '.' ends); the scanner rejects them.
const (
	TypeNull      = '_' // _\r\n
	TypeBool      = '#' // #t\r\n or #f\r\n
	TypeDouble    = ',' // ,<double>\r\n: 1.5, 1e+300, inf, -inf, nan
	TypeBigNumber = '(' // (<integer of any size>\r\n
	TypeVerbatim  = '=' // =<len>\r\n<3-byte format>:<bytes>\r\n, len >= 4
	TypeBlobError = '!' // !<len>\r\n<bytes>\r\n
	TypeMap       = '%' // %<pairs>\r\n<key><value>...
	TypeSet       = '~' // ~<count>\r\n<elements>
	TypePush      = '>' // ><count>\r\n<elements>, out of band
	// TypeAttribute is a map of <pairs> that precedes the reply (or the
	// element of an aggregate) it annotates and is part of its bytes.
	TypeAttribute = '|' // |<pairs>\r\n<key><value>...<annotated reply>
)

// maxDoubleLen bounds the line of a double: redis's MAX_LONG_DOUBLE_CHARS,
// the longest long double a module can make it print.
const maxDoubleLen = 5 << 10

// inlineDepth is the aggregate nesting a ReplyScanner tracks without
// allocating; deeper replies (up to MaxDepth) move the stack to the heap
// once. Keeping it small keeps ReplyLen's zeroing of a fresh scanner cheap.
const inlineDepth = 32

// ReplyScanner frames server replies, RESP2 and RESP3. Like RequestParser it
// resumes an incomplete reply: after Scan returned n == 0, call it again with
// a buffer that starts at the same reply and holds the bytes seen before. It
// resets itself after a complete reply or an error; call Reset before
// scanning unrelated data. The zero value uses DefaultLimits.
//
// A reply is one element, and attributes ('|') before it are part of it:
// "|1\r\n+key\r\n:1\r\n+OK\r\n" is one reply of 21 bytes whose type
// (ReplyType) is '+'. Out-of-band pushes ('>') are replies of their own;
// IsPush tells them apart.
type ReplyScanner struct {
	lim      Limits
	limSet   bool
	pos      int                // bytes of the reply already validated
	lineFrom int                // resume point of a line scan ('+', '-', ',', '(')
	first    byte               // buf[0] of the reply in progress, to catch misuse
	depth    int                // open aggregates
	stack    [inlineDepth]int32 // elements left in each open aggregate, negated for attributes
	deep     []int32            // replaces stack beyond inlineDepth
}

// NewReplyScanner returns a scanner enforcing l (zero fields take defaults).
func NewReplyScanner(l Limits) *ReplyScanner {
	s := &ReplyScanner{}
	s.setLimits(l)
	return s
}

func (s *ReplyScanner) setLimits(l Limits) {
	s.lim = l.normalize()
	s.limSet = true
}

// Reset drops any partially scanned reply.
func (s *ReplyScanner) Reset() {
	s.pos, s.lineFrom, s.depth = 0, 0, 0
}

// ReplyLen returns the length of the complete reply at the start of buf,
// RESP2 or RESP3, attributes before it included. While the reply is
// incomplete it returns n == 0 and need, a lower bound of the bytes buf must
// hold (0 when unknown). A malformed reply returns an error wrapping
// ErrBadReply. ReplyType gives the reply's type.
//
// ReplyLen starts from scratch on every call; the engine should keep a
// ReplyScanner per server connection so that large replies arriving in many
// reads are scanned once.
func ReplyLen(buf []byte, lim Limits) (n int, need int, err error) {
	var s ReplyScanner
	s.setLimits(lim)
	return s.Scan(buf)
}

// Scan is ReplyLen resuming the reply scanned by the previous call.
func (s *ReplyScanner) Scan(buf []byte) (n int, need int, err error) {
	if !s.limSet {
		s.setLimits(Limits{})
	}
	if len(buf) == 0 {
		return 0, 0, nil
	}
	if (s.pos > 0 || s.lineFrom > 0) && (buf[0] != s.first || len(buf) < s.pos || len(buf) < s.lineFrom) {
		s.Reset()
	}
	if s.pos == 0 {
		s.first = buf[0]
		s.depth = 0
	}
	for {
		pos := s.pos
		if pos >= len(buf) {
			return 0, 0, nil
		}
		var next int
		switch buf[pos] {
		case TypeStatus, TypeError:
			from := max(pos+1, s.lineFrom)
			limit := min(len(buf), pos+1+int(s.lim.MaxBulkLen)+1)
			i := bytes.IndexByte(buf[from:limit], '\r')
			if i < 0 {
				if len(buf)-pos-1 > int(s.lim.MaxBulkLen) {
					return s.fail(pos, "line too long")
				}
				s.lineFrom = len(buf)
				return 0, 0, nil
			}
			cr := from + i
			if cr+1 >= len(buf) {
				s.lineFrom = cr
				return 0, 0, nil
			}
			if buf[cr+1] != '\n' {
				return s.fail(cr+1, "expected LF after CR")
			}
			next = cr + 2
		case TypeInt:
			_, end, ok, err := s.number(buf, pos)
			if !ok || err != nil {
				return 0, 0, err
			}
			next = end
		case TypeBulk:
			v, end, ok, err := s.number(buf, pos)
			if !ok || err != nil {
				return 0, 0, err
			}
			switch {
			case v == -1:
				next = end
			case v < 0 || v > s.lim.MaxBulkLen:
				return s.fail(pos, "invalid bulk length")
			default:
				data := end + int(v)
				if data+2 > len(buf) {
					if data < len(buf) && buf[data] != '\r' {
						return s.fail(data, "bulk data not terminated by CRLF")
					}
					return 0, data + 2, nil
				}
				if buf[data] != '\r' || buf[data+1] != '\n' {
					return s.fail(data, "bulk data not terminated by CRLF")
				}
				next = data + 2
			}
		case TypeArray:
			v, end, ok, err := s.number(buf, pos)
			if !ok || err != nil {
				return 0, 0, err
			}
			switch {
			case v == -1 || v == 0:
				next = end
			case v < 0 || v > s.lim.MaxArrayLen:
				return s.fail(pos, "invalid array length")
			default:
				if s.depth >= s.lim.MaxDepth {
					return s.fail(pos, "aggregates nested too deeply")
				}
				s.push(v)
				s.pos = end
				continue
			}
		default:
			// RESP3 types, out of the way of the RESP2 ones.
			end, st, need, err := s.scan3(buf, pos)
			switch st {
			case incomplete:
				return 0, need, err
			case opened:
				s.pos = end
				continue
			}
			next = end
		}
		// One element is complete; close the aggregates it completes.
		s.pos, s.lineFrom = next, 0
		if s.pop() {
			s.Reset()
			return next, 0, nil
		}
	}
}

// States of scan3.
const (
	incomplete = iota // more bytes needed, or an error
	complete          // an element ends at the returned offset
	opened            // an aggregate or attribute header ends there
)

// scan3 scans the RESP3 element at pos (any type but the RESP2 ones).
func (s *ReplyScanner) scan3(buf []byte, pos int) (end, state, need int, err error) {
	t := buf[pos]
	switch t {
	case TypeVerbatim, TypeBlobError:
		v, end, ok, err := s.number(buf, pos)
		if !ok || err != nil {
			return 0, incomplete, 0, err
		}
		switch {
		case v < 0 || v > s.lim.MaxBulkLen:
			return s.fail3(pos, "invalid "+typeName(t)+" length")
		case t == TypeVerbatim && v < 4:
			return s.fail3(pos, "verbatim string shorter than its format")
		case t == TypeVerbatim && end+3 < len(buf) && buf[end+3] != ':':
			return s.fail3(end+3, "verbatim string format not followed by ':'")
		}
		data := end + int(v)
		if data+2 > len(buf) {
			if data < len(buf) && buf[data] != '\r' {
				return s.fail3(data, typeName(t)+" data not terminated by CRLF")
			}
			return 0, incomplete, data + 2, nil
		}
		if buf[data] != '\r' || buf[data+1] != '\n' {
			return s.fail3(data, typeName(t)+" data not terminated by CRLF")
		}
		return data + 2, complete, 0, nil
	case TypeSet, TypePush, TypeMap, TypeAttribute:
		v, end, ok, err := s.number(buf, pos)
		if !ok || err != nil {
			return 0, incomplete, 0, err
		}
		switch {
		case v == 0 && t == TypeAttribute:
			return end, opened, 0, nil // annotates the element that follows
		case v == 0:
			return end, complete, 0, nil
		case v < 0 || v > s.lim.MaxArrayLen:
			return s.fail3(pos, "invalid "+typeName(t)+" length")
		}
		if t == TypeMap || t == TypeAttribute {
			if v > s.lim.MaxArrayLen/2 { // 2v elements, without overflow
				return s.fail3(pos, "invalid "+typeName(t)+" length")
			}
			v *= 2
		}
		if s.depth >= s.lim.MaxDepth {
			return s.fail3(pos, "aggregates nested too deeply")
		}
		if t == TypeAttribute {
			v = -v
		}
		s.push(v)
		return end, opened, 0, nil
	case TypeNull:
		ok, err := s.literal(buf, pos+1, "\r\n", "invalid null")
		if !ok || err != nil {
			return 0, incomplete, 0, err
		}
		return pos + 3, complete, 0, nil
	case TypeBool:
		if pos+1 < len(buf) && buf[pos+1] != 't' && buf[pos+1] != 'f' {
			return s.fail3(pos+1, "invalid boolean")
		}
		ok, err := s.literal(buf, pos+2, "\r\n", "invalid boolean")
		if !ok || err != nil {
			return 0, incomplete, 0, err
		}
		return pos + 4, complete, 0, nil
	case TypeDouble, TypeBigNumber:
		end, ok, err := s.token(buf, pos)
		if !ok || err != nil {
			return 0, incomplete, 0, err
		}
		return end, complete, 0, nil
	case ';', '.':
		return s.fail3(pos, fmt.Sprintf("streamed RESP3 reply part %q is not supported (redis does not send it)", t))
	}
	return s.fail3(pos, fmt.Sprintf("invalid type byte %q", t))
}

func (s *ReplyScanner) fail3(off int, what string) (end, state, need int, err error) {
	_, _, err = s.fail(off, what)
	return 0, incomplete, 0, err
}

// typeName names a type byte in error texts.
func typeName(t byte) string {
	switch t {
	case TypeBulk:
		return "bulk"
	case TypeVerbatim:
		return "verbatim string"
	case TypeBlobError:
		return "blob error"
	case TypeArray:
		return "array"
	case TypeSet:
		return "set"
	case TypePush:
		return "push"
	case TypeMap:
		return "map"
	case TypeAttribute:
		return "attribute"
	case TypeDouble:
		return "double"
	case TypeBigNumber:
		return "big number"
	}
	return string(t)
}

// number parses the integer line of a ':', '$', '*' or other counted element
// at pos and returns it with the offset after its CRLF; ok is false while
// incomplete. Like twemproxy it rejects the line at the first byte that is
// not part of a number, so "$0\n" fails instead of waiting for a CR.
func (s *ReplyScanner) number(buf []byte, pos int) (v int64, end int, ok bool, err error) {
	i := pos + 1
	for ; i < len(buf); i++ {
		c := buf[i]
		if (c < '0' || c > '9') && !(c == '-' && i == pos+1) {
			break
		}
		if i-pos > maxNumLen {
			_, _, err = s.fail(pos, "number too long")
			return 0, 0, false, err
		}
	}
	if i+1 >= len(buf) {
		if i < len(buf) && buf[i] != '\r' {
			_, _, err = s.badNumber(buf, pos, i)
			return 0, 0, false, err
		}
		return 0, 0, false, nil
	}
	v, okNum := parseLL(buf[pos+1 : i])
	if !okNum || buf[i] != '\r' || buf[i+1] != '\n' {
		_, _, err = s.badNumber(buf, pos, i)
		return 0, 0, false, err
	}
	return v, i + 2, true, nil
}

func (s *ReplyScanner) badNumber(buf []byte, pos, i int) (int, int, error) {
	if i == pos+1 && buf[i] == '?' && buf[pos] != TypeInt {
		return s.fail(pos, "streamed RESP3 "+typeName(buf[pos])+" is not supported (redis does not send it)")
	}
	if i < len(buf) && buf[i] != '\r' {
		return s.fail(i, "invalid number")
	}
	return s.fail(pos, "invalid number")
}

// literal checks that lit follows at off, as far as buf goes; ok is false
// while incomplete.
func (s *ReplyScanner) literal(buf []byte, off int, lit, what string) (ok bool, err error) {
	for i := 0; i < len(lit); i++ {
		if off+i >= len(buf) {
			return false, nil
		}
		if buf[off+i] != lit[i] {
			_, _, err = s.fail(off+i, what)
			return false, err
		}
	}
	return true, nil
}

// token scans the line of a double (',') or big number ('(') at pos, byte by
// byte from where the previous call stopped, and returns the offset after its
// CRLF; ok is false while incomplete. A double is bounded by maxDoubleLen, a
// big number like a status line by MaxBulkLen.
func (s *ReplyScanner) token(buf []byte, pos int) (end int, ok bool, err error) {
	double := buf[pos] == TypeDouble
	limit := int(s.lim.MaxBulkLen)
	if double {
		limit = min(limit, maxDoubleLen)
	}
	i := max(pos+1, s.lineFrom)
	for ; i < len(buf) && buf[i] != '\r'; i++ {
		c := buf[i]
		if i-pos > limit {
			_, _, err = s.fail(pos, typeName(buf[pos])+" too long")
			return 0, false, err
		}
		if double && !isDoubleByte(c) || !double && (c < '0' || c > '9') && !(c == '-' && i == pos+1) {
			_, _, err = s.fail(i, "invalid "+typeName(buf[pos]))
			return 0, false, err
		}
	}
	if i+1 >= len(buf) {
		s.lineFrom = i
		return 0, false, nil
	}
	if buf[i+1] != '\n' {
		_, _, err = s.fail(i+1, "expected LF after CR")
		return 0, false, err
	}
	tok := buf[pos+1 : i]
	if double && !validDouble(tok) || !double && !validBigNumber(tok) {
		_, _, err = s.fail(pos, "invalid "+typeName(buf[pos]))
		return 0, false, err
	}
	return i + 2, true, nil
}

// isDoubleByte reports whether c can appear in a double: a decimal or
// exponent form, or inf and nan.
func isDoubleByte(c byte) bool {
	switch {
	case c >= '0' && c <= '9':
		return true
	case c == '-', c == '+', c == '.', c == 'e', c == 'E', c == 'i', c == 'n', c == 'f', c == 'a':
		return true
	}
	return false
}

// validDouble accepts an optionally signed inf or nan (what C's printf
// writes for them, "-nan" included), or bytes of [0-9+-.eE] with a digit.
func validDouble(tok []byte) bool {
	w := tok
	if len(w) > 0 && (w[0] == '-' || w[0] == '+') {
		w = w[1:]
	}
	if string(w) == "inf" || string(w) == "nan" {
		return true
	}
	digit := false
	for _, c := range tok {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c == '-', c == '+', c == '.', c == 'e', c == 'E':
		default:
			return false
		}
	}
	return digit
}

// validBigNumber accepts an optional '-' and at least one digit (the bytes
// were checked while scanning).
func validBigNumber(tok []byte) bool {
	return len(tok) > 0 && !(len(tok) == 1 && tok[0] == '-')
}

// push opens an aggregate of |v| > 0 elements, v < 0 for an attribute;
// |v| <= MaxArrayLen <= MaxInt32.
func (s *ReplyScanner) push(v int64) {
	if s.depth < inlineDepth && s.deep == nil {
		s.stack[s.depth] = int32(v)
	} else {
		if s.deep == nil {
			s.deep = make([]int32, inlineDepth, 2*inlineDepth)
			copy(s.deep, s.stack[:])
		}
		s.deep = append(s.deep[:s.depth], int32(v))
	}
	s.depth++
}

// pop accounts for one complete element and reports whether the whole reply
// is complete. A complete aggregate is an element of its parent; a complete
// attribute is not, the element it annotates follows.
func (s *ReplyScanner) pop() bool {
	st := s.stack[:]
	if s.deep != nil {
		st = s.deep
	}
	for s.depth > 0 {
		c := st[s.depth-1]
		if c > 1 {
			st[s.depth-1] = c - 1
			return false
		}
		if c < -1 {
			st[s.depth-1] = c + 1
			return false
		}
		s.depth--
		if c < 0 {
			return false
		}
	}
	return true
}

func (s *ReplyScanner) fail(off int, what string) (int, int, error) {
	s.Reset()
	return 0, 0, fmt.Errorf("%w: %s at offset %d", ErrBadReply, what, off)
}

// ArrayElems calls fn with each element of the complete aggregate reply, an
// array ('*'), set ('~'), push ('>') or map ('%', keys and values in turn),
// until fn returns false. Every element is its full encoding (for example
// "$3\r\nfoo\r\n"), attributes before it included. Attributes before the
// reply itself are skipped. A null array ("*-1") has no elements. It does
// not allocate.
func ArrayElems(reply []byte, fn func(elem []byte) bool) error {
	var s ReplyScanner
	s.setLimits(unlimited)
	off, err := s.skipAttributes(reply)
	if err != nil {
		return err
	}
	if off >= len(reply) {
		return fmt.Errorf("%w: not an aggregate", ErrBadReply)
	}
	t := reply[off]
	per := 1
	switch t {
	case TypeArray, TypeSet, TypePush:
	case TypeMap:
		per = 2
	default:
		return fmt.Errorf("%w: not an aggregate", ErrBadReply)
	}
	count, off, ok, err := s.number(reply, off)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: truncated %s", ErrBadReply, typeName(t))
	}
	if count < -1 || count == -1 && t != TypeArray {
		return fmt.Errorf("%w: invalid %s length", ErrBadReply, typeName(t))
	}
	for ; count > 0; count-- {
		for range per {
			n, err := s.elem(reply[off:])
			if err != nil {
				return err
			}
			if !fn(reply[off : off+n]) {
				return nil
			}
			off += n
		}
	}
	return nil
}

// elem frames the element at the start of buf, which must be complete.
func (s *ReplyScanner) elem(buf []byte) (int, error) {
	s.Reset()
	n, _, err := s.Scan(buf)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: truncated aggregate", ErrBadReply)
	}
	return n, nil
}

// skipAttributes returns the offset of the reply proper after the
// attributes at the start of reply.
func (s *ReplyScanner) skipAttributes(reply []byte) (int, error) {
	off := 0
	for off < len(reply) && reply[off] == TypeAttribute {
		pairs, end, ok, err := s.number(reply, off)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("%w: truncated attribute", ErrBadReply)
		}
		if pairs < 0 {
			return 0, fmt.Errorf("%w: invalid attribute length", ErrBadReply)
		}
		off = end
		for ; pairs > 0; pairs-- {
			for range 2 {
				n, err := s.elem(reply[off:])
				if err != nil {
					return 0, err
				}
				off += n
			}
		}
	}
	return off, nil
}

// ReplyType returns the type byte of a complete reply (as framed by
// ReplyScanner), attributes before it skipped: TypeStatus, TypeMap, ... It
// returns 0 for an empty or malformed reply. It does not allocate.
func ReplyType(reply []byte) byte {
	if len(reply) > 0 && reply[0] != TypeAttribute {
		return reply[0]
	}
	var s ReplyScanner
	s.setLimits(unlimited)
	off, err := s.skipAttributes(reply)
	if err != nil || off >= len(reply) {
		return 0
	}
	return reply[off]
}

// IsErrorReply reports whether a complete reply is an error, simple ('-')
// or blob ('!'), attributes before it skipped.
func IsErrorReply(reply []byte) bool {
	t := ReplyType(reply)
	return t == TypeError || t == TypeBlobError
}

// IsPush reports whether a complete reply is an out-of-band RESP3 push
// ('>'): pub/sub messages, client-side caching invalidations. They answer
// no request; on a shared server link the engine drops them.
func IsPush(reply []byte) bool {
	return ReplyType(reply) == TypePush
}

// unlimited is for replies that were already validated.
var unlimited = Limits{MaxBulkLen: 1 << 62, MaxDepth: 1 << 30}

// ParseInt returns the value of an integer reply (":<n>\r\n").
func ParseInt(reply []byte) (int64, bool) {
	if len(reply) < 4 || reply[0] != TypeInt || reply[len(reply)-2] != '\r' || reply[len(reply)-1] != '\n' {
		return 0, false
	}
	return parseLL(reply[1 : len(reply)-2])
}
