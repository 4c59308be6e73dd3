package memcache

import (
	"bytes"
	"fmt"
)

// Reply limits. No memcached reply line comes close to MaxReplyLineLen (keys
// are at most 250 bytes); MaxReplyValueLen bounds a declared value before the
// caller could size a buffer from it.
const (
	MaxReplyLineLen  = 8 << 10
	MaxReplyValueLen = 1 << 30
)

type replyKind uint8

const (
	rkBad      replyKind = iota
	rkError              // ERROR, CLIENT_ERROR, SERVER_ERROR
	rkStatus             // a fixed word, optionally followed by spaces
	rkNumber             // incr/decr result
	rkVersion            // VERSION <anything>
	rkMeta               // two-letter meta code, then flags
	rkMetaData           // VA <size> <flags>*, then a data block
	rkValue              // VALUE <key> <flags> <bytes> [<cas>], then a data block
	rkEnd                // END
	rkAny                // any single line (unsupported commands)
)

// classify maps the first word of a reply line to its kind for command c.
func classify(c Command, w []byte) replyKind {
	switch string(w) {
	case "ERROR", "CLIENT_ERROR", "SERVER_ERROR":
		return rkError
	}
	switch c {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		switch string(w) {
		case "VALUE":
			return rkValue
		case "END":
			return rkEnd
		}
	case CmdSet, CmdAdd, CmdReplace, CmdAppend, CmdPrepend, CmdCas:
		switch string(w) {
		case "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND":
			return rkStatus
		}
	case CmdDelete:
		switch string(w) {
		case "DELETED", "NOT_FOUND":
			return rkStatus
		}
	case CmdTouch:
		switch string(w) {
		case "TOUCHED", "NOT_FOUND":
			return rkStatus
		}
	case CmdIncr, CmdDecr:
		if string(w) == "NOT_FOUND" {
			return rkStatus
		}
		if _, ok := parseUint64(w); ok {
			return rkNumber
		}
	case CmdVersion:
		if string(w) == "VERSION" {
			return rkVersion
		}
	case CmdMetaGet:
		switch string(w) {
		case "VA":
			return rkMetaData
		case "HD", "EN":
			return rkMeta
		}
	case CmdMetaSet:
		switch string(w) {
		case "HD", "NS", "EX", "NF":
			return rkMeta
		}
	case CmdMetaDelete:
		switch string(w) {
		case "HD", "NF", "EX":
			return rkMeta
		}
	case CmdMetaArithmetic:
		switch string(w) {
		case "VA":
			return rkMetaData
		case "HD", "NF", "NS", "EX":
			return rkMeta
		}
	case CmdMetaDebug:
		switch string(w) {
		case "ME", "EN":
			return rkMeta
		}
	case CmdMetaNoop:
		if string(w) == "MN" {
			return rkMeta
		}
	case CmdUnsupported:
		if len(w) > 0 {
			return rkAny
		}
	}
	return rkBad
}

func badReply(c Command, format string, args ...any) error {
	return fmt.Errorf("%w for %s: %s", ErrBadReply, c, fmt.Sprintf(format, args...))
}

// replyLine returns the line starting at off without its CRLF and the offset
// just past it; next == 0 means the line is incomplete. Incomplete lines are
// still checked as far as they go (a stray CR, an unknown first word) so that
// garbage is reported at once and with the same verdict however it is split.
func replyLine(c Command, buf []byte, off int) (line []byte, next int, err error) {
	rest := buf[off:]
	window := rest
	if len(window) > MaxReplyLineLen+2 {
		window = window[:MaxReplyLineLen+2]
	}
	i := bytes.IndexByte(window, '\n')
	if i < 0 {
		if j := bytes.IndexByte(window, '\r'); j >= 0 && j+1 < len(window) {
			return nil, 0, badReply(c, "CR without LF")
		}
		if k := bytes.IndexAny(window, " \r"); k >= 0 && classify(c, window[:k]) == rkBad {
			return nil, 0, badReply(c, "unexpected %q", window[:k])
		}
		if len(rest) >= MaxReplyLineLen+2 {
			return nil, 0, fmt.Errorf("%w: line longer than %d bytes", ErrReplyTooLarge, MaxReplyLineLen)
		}
		return nil, 0, nil
	}
	if i == 0 || window[i-1] != '\r' {
		return nil, 0, badReply(c, "LF without CR")
	}
	line = window[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, badReply(c, "CR without LF")
	}
	return line, off + i + 1, nil
}

// cutWord splits a line at its first space.
func cutWord(line []byte) (word, rest []byte) {
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		return line[:i], line[i+1:]
	}
	return line, nil
}

func onlySpaces(b []byte) bool {
	for _, c := range b {
		if c != ' ' {
			return false
		}
	}
	return true
}

// nextField returns the next space-separated field of b and the remainder.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	b = b[i:]
	if j := bytes.IndexByte(b, ' '); j >= 0 {
		return b[:j], b[j:]
	}
	return b, nil
}

// ReplyLen frames one complete reply to a request of command c at the start
// of buf.
//
// It returns n > 0, the reply's length, when complete; isErr tells whether it
// is (or, for a retrieval, ends in) ERROR, CLIENT_ERROR or SERVER_ERROR.
// When incomplete it returns n == 0 and need, a lower bound on the total
// bytes required. A malformed reply returns an error wrapping ErrBadReply or
// ErrReplyTooLarge; the backend connection is then unusable.
//
// Retrievals take VALUE blocks up to END; mg and ma take one line plus a data
// block after VA; CmdUnsupported takes any single line; quit has no reply.
func ReplyLen(c Command, buf []byte) (n, need int, isErr bool, err error) {
	switch c {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		n, need, _, isErr, err = retrievalReplyLen(c, buf, 0)
		return n, need, isErr, err
	case CmdQuit, CmdInvalid:
		return 0, 0, false, fmt.Errorf("%w: %s", ErrNoReply, c)
	}
	if c > CmdUnsupported {
		return 0, 0, false, fmt.Errorf("%w: %s", ErrNoReply, c)
	}
	line, next, err := replyLine(c, buf, 0)
	if err != nil {
		return 0, 0, false, err
	}
	if next == 0 {
		return 0, len(buf) + 1, false, nil
	}
	word, rest := cutWord(line)
	switch classify(c, word) {
	case rkError:
		return next, 0, true, nil
	case rkStatus, rkNumber:
		if !onlySpaces(rest) {
			return 0, 0, false, badReply(c, "trailing data after %q", word)
		}
		return next, 0, false, nil
	case rkVersion, rkMeta, rkAny:
		return next, 0, false, nil
	case rkMetaData:
		sizeTok, _ := nextField(rest)
		size, ok := parseSize(sizeTok, MaxReplyValueLen)
		if !ok {
			return 0, 0, false, sizeError(c, sizeTok)
		}
		return dataBlock(c, buf, next, size, 0)
	}
	return 0, 0, false, badReply(c, "unexpected %q", word)
}

func sizeError(c Command, tok []byte) error {
	if _, ok := parseUint64(tok); ok {
		return fmt.Errorf("%w: value of %s bytes", ErrReplyTooLarge, tok)
	}
	return badReply(c, "bad value length %q", tok)
}

// dataBlock frames size bytes plus CRLF at off. trailer is a lower bound on
// what must follow the block, used for the need hint.
func dataBlock(c Command, buf []byte, off, size, trailer int) (n, need int, isErr bool, err error) {
	end := off + size + 2
	if len(buf) < end {
		return 0, end + trailer, false, nil
	}
	if buf[end-2] != '\r' || buf[end-1] != '\n' {
		return 0, 0, false, badReply(c, "data block not terminated by CRLF")
	}
	return end, 0, false, nil
}

// retrievalReplyLen frames a retrieval reply, starting its scan at from, the
// start of a VALUE block already known to follow whole blocks. While the
// reply is incomplete, resume is where its first incomplete element starts:
// everything before it has been validated.
func retrievalReplyLen(c Command, buf []byte, from int) (n, need, resume int, isErr bool, err error) {
	off := from
	for {
		line, next, err := replyLine(c, buf, off)
		if err != nil {
			return 0, 0, 0, false, err
		}
		if next == 0 {
			return 0, len(buf) + 1, off, false, nil
		}
		word, rest := cutWord(line)
		switch classify(c, word) {
		case rkEnd:
			if !onlySpaces(rest) {
				return 0, 0, 0, false, badReply(c, "trailing data after END")
			}
			return next, 0, 0, false, nil
		case rkError:
			return next, 0, 0, true, nil
		case rkValue:
			size, err := parseValueLine(c, rest)
			if err != nil {
				return 0, 0, 0, false, err
			}
			end, need, _, err := dataBlock(c, buf, next, size, len(endLine))
			if err != nil {
				return 0, 0, 0, false, err
			}
			if end == 0 {
				return 0, need, off, false, nil
			}
			off = end
		default:
			return 0, 0, 0, false, badReply(c, "unexpected %q", word)
		}
	}
}

// ReplyScanner frames the replies of one server connection as ReplyLen
// does, but a retrieval reply arriving over many reads resumes at its first
// incomplete VALUE block instead of being scanned again from its start: a
// get of thousands of small values would otherwise cost time quadratic in
// its size. The zero value is ready to use.
type ReplyScanner struct {
	pos int     // whole VALUE blocks of the retrieval in progress, validated
	cmd Command // the command pos belongs to
}

// Scan is ReplyLen for the reply at the start of buf, which must be the one
// scanned by the previous call until that call returned it complete or an
// error. A buffer that cannot be that reply (another command, shorter than
// what was validated) is scanned from its start.
func (s *ReplyScanner) Scan(c Command, buf []byte) (n, need int, isErr bool, err error) {
	if !c.IsRetrieval() {
		s.pos = 0
		return ReplyLen(c, buf)
	}
	from := s.pos
	if from > 0 && (c != s.cmd || len(buf) < from || !bytes.HasPrefix(buf, valuePrefix)) {
		from = 0
	}
	n, need, resume, isErr, err := retrievalReplyLen(c, buf, from)
	s.pos, s.cmd = resume, c
	return n, need, isErr, err
}

var valuePrefix = []byte("VALUE ")

// parseValueLine checks "<key> <flags> <bytes> [<cas>]" and returns bytes.
func parseValueLine(c Command, rest []byte) (int, error) {
	key, rest := nextField(rest)
	flags, rest := nextField(rest)
	size, rest := nextField(rest)
	cas, rest := nextField(rest)
	if len(key) == 0 || !onlySpaces(rest) {
		return 0, badReply(c, "bad VALUE line")
	}
	if _, ok := parseUint32(flags); !ok {
		return 0, badReply(c, "bad VALUE flags %q", flags)
	}
	if len(cas) > 0 {
		if _, ok := parseUint64(cas); !ok {
			return 0, badReply(c, "bad VALUE cas %q", cas)
		}
	}
	n, ok := parseSize(size, MaxReplyValueLen)
	if !ok {
		return 0, sizeError(c, size)
	}
	return n, nil
}

// Pending returns where the first incomplete element of the retrieval
// reply last scanned starts (its whole VALUE blocks before it are
// validated), after a Scan of a retrieval that returned it incomplete.
func (s *ReplyScanner) Pending() int { return s.pos }

// ValueHead parses the VALUE line at the start of buf, a retrieval reply's
// next element: it returns the line's length with its CRLF, the key and
// the declared size of the data block that follows. ok is false when buf
// does not start with a whole, valid VALUE line.
func ValueHead(c Command, buf []byte) (key []byte, lineLen, size int, ok bool) {
	if !c.IsRetrieval() || !bytes.HasPrefix(buf, valuePrefix) {
		return nil, 0, 0, false
	}
	line, next, err := replyLine(c, buf, 0)
	if err != nil || next == 0 {
		return nil, 0, 0, false
	}
	_, rest := cutWord(line)
	size, err = parseValueLine(c, rest)
	if err != nil {
		return nil, 0, 0, false
	}
	key, _ = nextField(rest)
	return key, next, size, true
}
