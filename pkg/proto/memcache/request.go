package memcache

import (
	"bytes"
	"math"
)

// Limits bounds what a client may send. Zero fields take the defaults of
// DefaultLimits.
type Limits struct {
	// MaxKeyLen is the longest key, in bytes as sent (memcached KEY_MAX_LENGTH).
	MaxKeyLen int
	// MaxItemSize is the largest value accepted (memcached -I). Larger values
	// get "SERVER_ERROR object too large for cache" and are swallowed.
	MaxItemSize int
	// MaxLineLen: a request line with no newline within this many bytes
	// closes the connection, as in memcached.
	MaxLineLen int
	// MaxRetrievalLineLen replaces MaxLineLen for get/gets/gat/gats lines,
	// which may carry many keys.
	MaxRetrievalLineLen int
	// MaxKeys is the most keys one retrieval may name.
	MaxKeys int
}

// Default limits, matching memcached 1.6.18 where it has one.
const (
	DefaultMaxKeyLen           = 250
	DefaultMaxItemSize         = 1 << 20
	DefaultMaxLineLen          = 2048
	DefaultMaxRetrievalLineLen = 64 << 10
	DefaultMaxKeys             = 10000
)

// DefaultLimits returns the default Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxKeyLen:           DefaultMaxKeyLen,
		MaxItemSize:         DefaultMaxItemSize,
		MaxLineLen:          DefaultMaxLineLen,
		MaxRetrievalLineLen: DefaultMaxRetrievalLineLen,
		MaxKeys:             DefaultMaxKeys,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxKeyLen <= 0 {
		l.MaxKeyLen = d.MaxKeyLen
	}
	if l.MaxItemSize <= 0 {
		l.MaxItemSize = d.MaxItemSize
	}
	if l.MaxLineLen <= 0 {
		l.MaxLineLen = d.MaxLineLen
	}
	if l.MaxRetrievalLineLen < l.MaxLineLen {
		l.MaxRetrievalLineLen = max(d.MaxRetrievalLineLen, l.MaxLineLen)
	}
	if l.MaxKeys <= 0 {
		l.MaxKeys = d.MaxKeys
	}
	return l
}

const (
	binaryMagic = 0x80
	// maxValueLen mirrors memcached's "vlen > INT_MAX - 2" check.
	maxValueLen = math.MaxInt32 - 2
	// maxMetaTokens: memcached refuses meta lines with ntokens > 20, its
	// ntokens counting a terminal empty token.
	maxMetaTokens = 19
	// maxOpaqueLen counts the 'O' itself, as memcached does.
	maxOpaqueLen = 32
	// argsKeepCap: an Args slice grown beyond this by a huge multi-get is
	// dropped on the next Parse so idle connections do not pin it.
	argsKeepCap = 1024
)

// Request is one parsed client request. Every byte slice points into the
// buffer passed to Parse and is valid until the next Parse call or until that
// buffer is modified.
type Request struct {
	Cmd Command
	// Name is the command word as sent (useful for CmdUnsupported).
	Name []byte
	// Args are all space-separated tokens of Line, Name included.
	Args [][]byte
	// Keys: one key, several for get/gets/gat/gats, none for version, quit,
	// mn and CmdUnsupported. Meta keys with the b flag are kept
	// base64-encoded as sent; see RoutingKey.
	Keys [][]byte
	// Noreply: classic "noreply" or the meta q flag.
	Noreply bool
	// Line is the command line without its line terminator.
	Line []byte
	// Data is the value block including its trailing CRLF (storage commands).
	Data []byte
	// ValueLen is the declared value length (storage commands).
	ValueLen int
	// Exptime is the exptime token of gat/gats.
	Exptime []byte
	// Flags are the meta flag tokens (after the key; after the datalen for ms).
	Flags [][]byte
	// Opaque is the value of the meta O flag, without the 'O'; nil if absent.
	Opaque []byte
	// Base64Key is set when a meta key is base64-encoded (b flag).
	Base64Key bool

	// dropArg is the index in Args of the noreply/q token, or -1.
	dropArg int
	// decoded holds the base64-decoded key; keyBuf is its storage.
	decoded []byte
	keyBuf  []byte
}

// RoutingKey returns key i as the backend hashes it: the base64-decoded key
// when the meta b flag is present, otherwise Keys[i].
func (r *Request) RoutingKey(i int) []byte {
	if r.Base64Key && i == 0 {
		return r.decoded
	}
	return r.Keys[i]
}

// RequestParser parses client requests. It is reusable and not safe for
// concurrent use; one per connection.
type RequestParser struct {
	lim Limits
	req Request
}

// NewRequestParser returns a parser enforcing l.
func NewRequestParser(l Limits) *RequestParser {
	p := &RequestParser{lim: l.withDefaults()}
	p.req.keyBuf = make([]byte, p.lim.MaxKeyLen)
	return p
}

// Parse parses one request at the start of buf.
//
// A complete request gives n > 0 (bytes consumed) and req. An incomplete one
// gives n == 0, err == nil and need, a lower bound on the total number of
// bytes required. A refused request gives an *Error: reply with
// Error.AppendReply, discard Error.Skip bytes, and close if Error.Close.
func (p *RequestParser) Parse(buf []byte) (n int, req *Request, need int, err error) {
	if len(buf) == 0 {
		return 0, nil, 1, nil
	}
	if buf[0] == binaryMagic {
		return 0, nil, 0, &Error{Kind: ErrKindNone, Msg: reasonBinary, Close: true}
	}
	line, lineLen, need, e := p.frameLine(buf)
	if e != nil {
		return 0, nil, 0, e
	}
	if lineLen == 0 {
		return 0, nil, need, nil
	}
	if bytes.IndexByte(line, 0) >= 0 {
		// memcached would cut the line at the NUL; refuse rather than
		// route on a key the backend never sees.
		return 0, nil, 0, errClient(msgBadFormat, lineLen, false)
	}

	r := &p.req
	r.reset()
	if cap(r.Args) > argsKeepCap {
		r.Args = nil
	}
	r.Line = line
	if !p.tokenize(line) {
		if lookupCommand(r.Args[0]).IsRetrieval() {
			return 0, nil, 0, &Error{Kind: ErrKindServer, Msg: msgGetOOM, Skip: lineLen}
		}
		return 0, nil, 0, errUnknown(lineLen)
	}
	args := r.Args
	if len(args) == 0 || len(args[0]) < 2 {
		return 0, nil, 0, errUnknown(lineLen)
	}
	r.Name = args[0]
	r.Cmd = lookupCommand(args[0])

	var perr *Error
	switch r.Cmd {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		perr = p.parseRetrieval(lineLen)
	case CmdSet, CmdAdd, CmdReplace, CmdAppend, CmdPrepend, CmdCas:
		return p.parseStorage(buf, lineLen)
	case CmdDelete:
		perr = p.parseDelete(lineLen)
	case CmdIncr, CmdDecr:
		perr = p.parseArith(lineLen)
	case CmdTouch:
		perr = p.parseTouch(lineLen)
	case CmdVersion:
		// memcached ignores extra tokens; twemproxy (test_all.c) refuses.
		if len(args) != 1 {
			perr = errUnknown(lineLen)
		}
	case CmdQuit, CmdMetaNoop:
	case CmdMetaGet, CmdMetaDelete, CmdMetaArithmetic:
		perr = p.parseMeta(lineLen)
	case CmdMetaSet:
		return p.parseMetaSet(buf, lineLen)
	case CmdMetaDebug:
		perr = p.parseMetaDebug(lineLen)
	case CmdUnsupported:
		if len(args) > 1 && string(args[len(args)-1]) == "noreply" {
			r.Noreply = true
			r.dropArg = len(args) - 1
		}
	default:
		perr = p.unknown(lineLen)
	}
	if perr != nil {
		return 0, nil, 0, perr
	}
	return lineLen, r, 0, nil
}

func (r *Request) reset() {
	keyBuf, args := r.keyBuf, r.Args
	*r = Request{dropArg: -1, keyBuf: keyBuf, Args: args[:0]}
}

// frameLine finds the command line at the start of buf. It returns the line
// without its terminator and the length including the terminator; lineLen
// == 0 means more bytes are needed.
//
// Every decision depends only on the first limit+1 bytes, so the outcome is
// the same however the stream is split into reads.
func (p *RequestParser) frameLine(buf []byte) (line []byte, lineLen, need int, err *Error) {
	limit := p.lim.MaxLineLen
	if len(buf) > limit && isRetrievalPrefix(buf) {
		limit = p.lim.MaxRetrievalLineLen
	}
	window := buf
	if len(window) > limit+1 {
		window = window[:limit+1]
	}
	i := bytes.IndexByte(window, '\n')
	if i < 0 {
		// A CR followed by anything but LF can never end well; twemproxy
		// refuses it too ("get key\r\r").
		if j := bytes.IndexByte(window, '\r'); j >= 0 && j+1 < len(window) {
			return nil, 0, 0, &Error{Kind: ErrKindClient, Msg: msgBadFormat, Close: true}
		}
		if len(buf) > limit {
			return nil, 0, 0, &Error{Kind: ErrKindNone, Msg: reasonLineTooLong, Close: true}
		}
		return nil, 0, len(buf) + 1, nil
	}
	line = window[:i:i]
	if i > 0 && line[i-1] == '\r' {
		line = line[: i-1 : i-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, 0, &Error{Kind: ErrKindClient, Msg: msgBadFormat, Close: true}
	}
	return line, i + 1, 0, nil
}

// isRetrievalPrefix mirrors memcached's exemption of long multi-get lines
// from the line limit: at most 100 leading spaces, then "get " or "gets "
// (gat and gats added).
func isRetrievalPrefix(buf []byte) bool {
	i := 0
	for i < len(buf) && buf[i] == ' ' {
		i++
	}
	if i > 100 {
		return false
	}
	b := buf[i:]
	return bytes.HasPrefix(b, []byte("get ")) || bytes.HasPrefix(b, []byte("gets ")) ||
		bytes.HasPrefix(b, []byte("gat ")) || bytes.HasPrefix(b, []byte("gats "))
}

// tokenize splits line on spaces into r.Args, like memcached's
// tokenize_command. It reports false when there are more tokens than any
// command may carry.
func (p *RequestParser) tokenize(line []byte) bool {
	maxTokens := max(p.lim.MaxKeys+2, p.lim.MaxLineLen/2+1)
	args := p.req.Args[:0]
	ok := true
	for i := 0; i < len(line); {
		if line[i] == ' ' {
			i++
			continue
		}
		j := i + 1
		for j < len(line) && line[j] != ' ' {
			j++
		}
		if len(args) == maxTokens {
			ok = false
			break
		}
		args = append(args, line[i:j:j])
		i = j
	}
	p.req.Args = args
	return ok
}

// unknown answers a command memcached does not know: ERROR, except that
// memcached hangs up on what looks like an HTTP request line. Commands whose
// first letter memcached dispatches on directly never reach the HTTP check.
func (p *RequestParser) unknown(lineLen int) *Error {
	args := p.req.Args
	switch args[0][0] {
	case 'g', 's', 'a', 'c', 'i', 'd', 't':
		return errUnknown(lineLen)
	case 'm':
		if len(args[0]) == 2 {
			return errUnknown(lineLen)
		}
	}
	if bytes.HasPrefix(args[len(args)-1], []byte("HTTP/")) {
		return &Error{Kind: ErrKindNone, Msg: reasonHTTP, Close: true}
	}
	return errUnknown(lineLen)
}

func (p *RequestParser) parseRetrieval(lineLen int) *Error {
	r := &p.req
	args := r.Args
	if len(args) < 2 {
		return errUnknown(lineLen)
	}
	first := 1
	if r.Cmd == CmdGat || r.Cmd == CmdGats {
		if _, ok := parseInt32(args[1]); !ok {
			return errClient(msgBadExptime, lineLen, false)
		}
		r.Exptime = args[1]
		first = 2
		// memcached answers a bare "gat <exptime>" with END; refuse it so
		// that every forwarded retrieval has a key to route on.
		if len(args) == 2 {
			return errUnknown(lineLen)
		}
	}
	keys := args[first:]
	if len(keys) > p.lim.MaxKeys {
		return &Error{Kind: ErrKindServer, Msg: msgGetOOM, Skip: lineLen}
	}
	for _, k := range keys {
		if len(k) > p.lim.MaxKeyLen {
			return errClient(msgBadFormat, lineLen, false)
		}
	}
	r.Keys = keys
	return nil
}

// classicNoreply applies memcached's set_noreply_maybe (the last token is
// "noreply") and, going beyond memcached as twemproxy does, refuses any other
// word in the optional last position. It returns the error to send, if any.
func (p *RequestParser) classicNoreply(optional bool, lineLen int) *Error {
	r := &p.req
	last := len(r.Args) - 1
	if string(r.Args[last]) == "noreply" {
		r.Noreply = true
		r.dropArg = last
	} else if optional {
		return errClient(msgBadFormat, lineLen, false)
	}
	return nil
}

func (p *RequestParser) parseStorage(buf []byte, lineLen int) (int, *Request, int, error) {
	r := &p.req
	args := r.Args
	want := 5
	if r.Cmd == CmdCas {
		want = 6
	}
	if len(args) != want && len(args) != want+1 {
		return 0, nil, 0, errUnknown(lineLen)
	}
	if e := p.classicNoreply(len(args) == want+1, lineLen); e != nil {
		return 0, nil, 0, e
	}
	nr := r.Noreply
	if len(args[1]) > p.lim.MaxKeyLen {
		return 0, nil, 0, errClient(msgBadFormat, lineLen, nr)
	}
	_, okFlags := parseUint32(args[2])
	_, okExp := parseInt32(args[3])
	vlen, okLen := parseInt32(args[4])
	if !okFlags || !okExp || !okLen {
		return 0, nil, 0, errClient(msgBadFormat, lineLen, nr)
	}
	if r.Cmd == CmdCas {
		if _, ok := parseUint64(args[5]); !ok {
			return 0, nil, 0, errClient(msgBadFormat, lineLen, nr)
		}
	}
	if vlen < 0 || vlen > maxValueLen {
		return 0, nil, 0, errClient(msgBadFormat, lineLen, nr)
	}
	r.Keys = args[1:2]
	return p.finishValue(buf, lineLen, int(vlen), nr)
}

// finishValue checks the declared value size and frames the value block.
func (p *RequestParser) finishValue(buf []byte, lineLen, vlen int, noreply bool) (int, *Request, int, error) {
	r := &p.req
	total := lineLen + vlen + 2
	if r.Cmd == CmdMetaSet {
		// Meta errors are always sent (memcached's out_errstring).
		noreply = false
	}
	if vlen > p.lim.MaxItemSize {
		return 0, nil, 0, &Error{Kind: ErrKindServer, Msg: msgTooLarge, Skip: total, Noreply: noreply}
	}
	if len(buf) < total {
		return 0, nil, total, nil
	}
	if buf[total-2] != '\r' || buf[total-1] != '\n' {
		return 0, nil, 0, errClient(msgBadDataChunk, total, noreply)
	}
	r.ValueLen = vlen
	r.Data = buf[lineLen:total:total]
	return total, r, 0, nil
}

func (p *RequestParser) parseDelete(lineLen int) *Error {
	r := &p.req
	args := r.Args
	if len(args) < 2 || len(args) > 4 {
		return errUnknown(lineLen)
	}
	if len(args) > 2 {
		hold0 := string(args[2]) == "0"
		noreply := string(args[len(args)-1]) == "noreply"
		if noreply {
			r.Noreply = true
			r.dropArg = len(args) - 1
		}
		valid := (len(args) == 3 && (hold0 || noreply)) || (len(args) == 4 && hold0 && noreply)
		if !valid {
			return errClient(msgBadDelete, lineLen, noreply)
		}
	}
	if len(args[1]) > p.lim.MaxKeyLen {
		return errClient(msgBadFormat, lineLen, r.Noreply)
	}
	r.Keys = args[1:2]
	return nil
}

func (p *RequestParser) parseArith(lineLen int) *Error {
	r := &p.req
	args := r.Args
	if len(args) != 3 && len(args) != 4 {
		return errUnknown(lineLen)
	}
	if e := p.classicNoreply(len(args) == 4, lineLen); e != nil {
		return e
	}
	if len(args[1]) > p.lim.MaxKeyLen {
		return errClient(msgBadFormat, lineLen, r.Noreply)
	}
	if _, ok := parseUint64(args[2]); !ok {
		return errClient(msgBadDelta, lineLen, r.Noreply)
	}
	r.Keys = args[1:2]
	return nil
}

func (p *RequestParser) parseTouch(lineLen int) *Error {
	r := &p.req
	args := r.Args
	if len(args) != 3 && len(args) != 4 {
		return errUnknown(lineLen)
	}
	if e := p.classicNoreply(len(args) == 4, lineLen); e != nil {
		return e
	}
	if len(args[1]) > p.lim.MaxKeyLen {
		return errClient(msgBadFormat, lineLen, r.Noreply)
	}
	if _, ok := parseInt32(args[2]); !ok {
		return errClient(msgBadExptime, lineLen, r.Noreply)
	}
	r.Keys = args[1:2]
	return nil
}
