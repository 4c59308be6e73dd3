package resp

import (
	"bytes"
	"fmt"
)

// Reply type bytes (RESP2).
const (
	TypeStatus = '+' // +<line>\r\n
	TypeError  = '-' // -<line>\r\n
	TypeInt    = ':' // :<int64>\r\n
	TypeBulk   = '$' // $<len>\r\n<bytes>\r\n, $-1\r\n is null
	TypeArray  = '*' // *<count>\r\n<elements>, *-1\r\n is null
)

// inlineDepth is the array nesting a ReplyScanner tracks without allocating;
// deeper replies (up to MaxDepth) move the stack to the heap once. Keeping
// it small keeps ReplyLen's zeroing of a fresh scanner cheap.
const inlineDepth = 32

// ReplyScanner frames server replies. Like RequestParser it resumes an
// incomplete reply: after Scan returned n == 0, call it again with a buffer
// that starts at the same reply and holds the bytes seen before. It resets
// itself after a complete reply or an error; call Reset before scanning
// unrelated data. The zero value uses DefaultLimits.
type ReplyScanner struct {
	lim      Limits
	limSet   bool
	pos      int                // bytes of the reply already validated
	lineFrom int                // resume point of a '\r' search in a status or error line
	first    byte               // buf[0] of the reply in progress, to catch misuse
	depth    int                // open arrays
	stack    [inlineDepth]int32 // elements left in each open array
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

// ReplyLen returns the length of the complete reply at the start of buf.
// While the reply is incomplete it returns n == 0 and need, a lower bound of
// the bytes buf must hold (0 when unknown). A malformed reply returns an
// error wrapping ErrBadReply. The reply's type is buf[0].
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
					return s.fail(pos, "arrays nested too deeply")
				}
				s.push(v)
				s.pos = end
				continue
			}
		default:
			return s.fail(pos, "invalid type byte")
		}
		// One element is complete; close the arrays it completes.
		s.pos, s.lineFrom = next, 0
		if s.pop() {
			s.Reset()
			return next, 0, nil
		}
	}
}

// number parses the integer line of a ':', '$' or '*' element at pos and
// returns it with the offset after its CRLF; ok is false while incomplete.
// Like twemproxy it rejects the line at the first byte that is not part of
// a number, so "$0\n" fails instead of waiting for a CR.
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
			_, _, err = s.fail(i, "invalid number")
			return 0, 0, false, err
		}
		return 0, 0, false, nil
	}
	v, okNum := parseLL(buf[pos+1 : i])
	if !okNum || buf[i] != '\r' || buf[i+1] != '\n' {
		_, _, err = s.fail(pos, "invalid number")
		return 0, 0, false, err
	}
	return v, i + 2, true, nil
}

// push opens an array of v > 0 elements; v <= MaxArrayLen <= MaxInt32.
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
// is complete.
func (s *ReplyScanner) pop() bool {
	st := s.stack[:]
	if s.deep != nil {
		st = s.deep
	}
	for s.depth > 0 {
		st[s.depth-1]--
		if st[s.depth-1] > 0 {
			return false
		}
		s.depth--
	}
	return true
}

func (s *ReplyScanner) fail(off int, what string) (int, int, error) {
	s.Reset()
	return 0, 0, fmt.Errorf("%w: %s at offset %d", ErrBadReply, what, off)
}

// ArrayElems calls fn with each element of the complete array reply, every
// element as its full encoding (for example "$3\r\nfoo\r\n"), until fn
// returns false. A null array ("*-1") has no elements. It does not allocate.
func ArrayElems(reply []byte, fn func(elem []byte) bool) error {
	if len(reply) == 0 || reply[0] != TypeArray {
		return fmt.Errorf("%w: not an array", ErrBadReply)
	}
	var s ReplyScanner
	s.setLimits(unlimited)
	count, off, ok, err := s.number(reply, 0)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: truncated array", ErrBadReply)
	}
	if count < -1 {
		return fmt.Errorf("%w: invalid array length", ErrBadReply)
	}
	for ; count > 0; count-- {
		s.Reset()
		n, _, err := s.Scan(reply[off:])
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: truncated array", ErrBadReply)
		}
		if !fn(reply[off : off+n]) {
			return nil
		}
		off += n
	}
	return nil
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
