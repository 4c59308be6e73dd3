package resp

import "bytes"

// span locates an argument by offset so that a request can be resumed after
// the caller moved or grew its buffer.
type span struct{ off, n int }

const (
	stIdle   = iota // between requests
	stMulti         // inside a RESP array, after its count line
	stInline        // inline line without its '\n' yet
)

// argsPrealloc is the most argument slots reserved from a declared count,
// like redis's min(multibulklen, 1024); more grow as arguments arrive.
const argsPrealloc = 1024

// keepArgs is the argument capacity kept between requests; a parser that
// once saw a larger request drops its slices so one huge request does not
// pin memory for the connection's lifetime.
const keepArgs = 1 << 16

// RequestParser frames client requests. It is not safe for concurrent use;
// the engine keeps one per connection.
//
// An incomplete request is resumed, not re-parsed: after Parse returned
// n == 0, the next call must pass a buffer that starts at the same request
// and holds the bytes seen before (it may have been moved or grown). Call
// Reset before parsing unrelated data.
type RequestParser struct {
	lim     Limits
	unauth  bool // redis's limits before AUTH (SetUnauthenticated)
	args    [][]byte
	spans   []span
	scratch []byte // unescaped inline arguments
	inline  bool

	state   int
	first   byte // buf[0] of the request in progress, to catch misuse
	total   int  // declared argument count
	pos     int  // bytes of the request already parsed
	scanned int  // inline: bytes already searched for '\n'
}

// NewRequestParser returns a parser enforcing l (zero fields take defaults).
func NewRequestParser(l Limits) *RequestParser {
	return &RequestParser{lim: l.normalize()}
}

// Limits redis 7 puts on a client that has not authenticated where a
// password is required (networking.c): more arguments or a longer bulk
// string is a protocol error that closes the connection.
const (
	UnauthMaxArgs    = 10
	UnauthMaxBulkLen = 16384
)

// Protocol errors of a client that has not authenticated.
var (
	ErrUnauthMultibulkLen = &ProtocolError{"Protocol error: unauthenticated multibulk length"}
	ErrUnauthBulkLen      = &ProtocolError{"Protocol error: unauthenticated bulk length"}
)

// SetUnauthenticated applies (or lifts) the pre-authentication limits to
// the requests parsed from now on.
func (p *RequestParser) SetUnauthenticated(on bool) { p.unauth = on }

// Limits returns the limits in force, defaults filled in.
func (p *RequestParser) Limits() Limits { return p.lim }

// Reset drops any partially parsed request.
func (p *RequestParser) Reset() {
	p.state = stIdle
	p.pos = 0
	p.total = 0
	p.scanned = 0
	p.spans = p.spans[:0]
}

// Inline reports whether the last complete request was an inline command.
// The proxy re-encodes those with AppendCommand before forwarding.
func (p *RequestParser) Inline() bool { return p.inline }

// Parse parses one request at the start of buf.
//
// Complete: n > 0 is the number of bytes consumed and args are subslices of
// buf (of a parser-owned buffer for inline requests), valid until the next
// call or until buf changes. An empty inline line, "*0" and negative counts
// are consumed with zero args, as redis ignores them.
//
// Incomplete: n == 0 and err == nil; need > 0 is a lower bound of the total
// bytes buf must hold (set once a bulk header declared its length), 0 when
// unknown. need comes from the client: grow towards it in bounded steps.
//
// Malformed: err is a *ProtocolError with redis's text; the connection
// cannot be resynchronised.
func (p *RequestParser) Parse(buf []byte) (n int, args [][]byte, need int, err error) {
	if len(buf) == 0 {
		return 0, nil, 0, nil
	}
	if p.state != stIdle && (buf[0] != p.first || len(buf) < p.pos || len(buf) < p.scanned) {
		p.Reset() // the caller broke the resume contract; start over
	}
	if p.state == stIdle {
		if cap(p.args) > keepArgs {
			p.args, p.spans = nil, nil
		}
		p.first = buf[0]
		if buf[0] == '*' {
			n, err := p.countLine(buf)
			if n <= 0 || err != nil {
				return 0, nil, 0, err
			}
			if p.total == 0 {
				p.inline = false
				return n, p.args[:0], 0, nil
			}
		} else {
			p.state = stInline
		}
	}
	if p.state == stInline {
		return p.parseInline(buf)
	}
	return p.parseBulks(buf)
}

// countLine parses "*<count>\r\n". It returns 0 while incomplete.
func (p *RequestParser) countLine(buf []byte) (int, error) {
	cr, err := p.findCR(buf, 0, ErrTooBigMbulkCount)
	if cr < 0 || err != nil {
		return 0, err
	}
	ll, ok := parseLL(buf[1:cr])
	if !ok || ll > int64(p.lim.MaxArgs) || buf[cr+1] != '\n' {
		p.Reset()
		return 0, ErrInvalidMultibulkLen
	}
	if p.unauth && ll > UnauthMaxArgs {
		p.Reset()
		return 0, ErrUnauthMultibulkLen
	}
	n := cr + 2
	if ll <= 0 {
		p.Reset()
		return n, nil
	}
	p.state = stMulti
	p.total = int(ll)
	p.pos = n
	p.spans = p.spans[:0]
	if want := min(p.total, argsPrealloc); cap(p.spans) < want {
		p.spans = make([]span, 0, want)
	}
	return n, nil
}

// findCR finds the '\r' ending the count line that starts at from and checks
// the byte after it is buffered. It returns -1 while incomplete. Like redis it
// fails with tooBig only when more than MaxInlineLen bytes are buffered
// without a '\r'; the search window makes the answer independent of how the
// bytes were split across reads.
func (p *RequestParser) findCR(buf []byte, from int, tooBig *ProtocolError) (int, error) {
	if from >= len(buf) {
		return -1, nil
	}
	end := min(len(buf), from+p.lim.MaxInlineLen+1)
	i := bytes.IndexByte(buf[from:end], '\r')
	if i < 0 {
		if len(buf)-from > p.lim.MaxInlineLen {
			p.Reset()
			return -1, tooBig
		}
		return -1, nil
	}
	cr := from + i
	if cr+1 >= len(buf) {
		return -1, nil
	}
	return cr, nil
}

// parseBulks parses the "$<len>\r\n<data>\r\n" arguments of a RESP array.
func (p *RequestParser) parseBulks(buf []byte) (int, [][]byte, int, error) {
	for len(p.spans) < p.total {
		pos := p.pos
		cr, err := p.findCR(buf, pos, ErrTooBigBulkCount)
		if err != nil {
			return 0, nil, 0, err
		}
		if cr < 0 {
			return 0, nil, 0, nil
		}
		if buf[pos] != '$' {
			p.Reset()
			return 0, nil, 0, expectedDollar(buf[pos])
		}
		ll, ok := parseLL(buf[pos+1 : cr])
		if !ok || ll < 0 || ll > p.lim.MaxBulkLen || buf[cr+1] != '\n' {
			p.Reset()
			return 0, nil, 0, ErrInvalidBulkLen
		}
		if p.unauth && ll > UnauthMaxBulkLen {
			p.Reset()
			return 0, nil, 0, ErrUnauthBulkLen
		}
		data := cr + 2
		end := data + int(ll)
		if end+2 > len(buf) {
			if end < len(buf) && buf[end] != '\r' {
				p.Reset()
				return 0, nil, 0, ErrBulkTerminator
			}
			return 0, nil, end + 2, nil
		}
		if buf[end] != '\r' || buf[end+1] != '\n' {
			p.Reset()
			return 0, nil, 0, ErrBulkTerminator
		}
		p.spans = append(p.spans, span{data, int(ll)})
		p.pos = end + 2
	}
	n := p.pos
	p.args = p.args[:0]
	for _, s := range p.spans {
		p.args = append(p.args, buf[s.off:s.off+s.n:s.off+s.n])
	}
	p.inline = false
	p.Reset()
	return n, p.args, 0, nil
}

// parseInline parses one inline command line with redis's quoting rules.
func (p *RequestParser) parseInline(buf []byte) (int, [][]byte, int, error) {
	end := min(len(buf), p.lim.MaxInlineLen+1)
	from := min(p.scanned, end)
	i := bytes.IndexByte(buf[from:end], '\n')
	if i < 0 {
		if len(buf) > p.lim.MaxInlineLen {
			p.Reset()
			return 0, nil, 0, ErrTooBigInline
		}
		p.scanned = len(buf)
		return 0, nil, 0, nil
	}
	nl := from + i
	line := buf[:nl]
	if nl > 0 && line[nl-1] == '\r' {
		line = line[:nl-1]
	}
	p.Reset()
	if cap(p.scratch) < len(line) {
		p.scratch = make([]byte, 0, len(line))
	}
	var ok bool
	p.scratch, p.spans, ok = splitArgs(line, p.scratch[:0], p.spans[:0])
	if !ok {
		p.spans = p.spans[:0]
		return 0, nil, 0, ErrUnbalancedQuotes
	}
	p.args = p.args[:0]
	for _, s := range p.spans {
		p.args = append(p.args, p.scratch[s.off:s.off+s.n:s.off+s.n])
	}
	p.spans = p.spans[:0]
	p.inline = true
	return nl + 1, p.args, 0, nil
}
