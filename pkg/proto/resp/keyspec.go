package resp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// This file learns commands from a server's own COMMAND (or COMMAND INFO)
// reply: redis 7's key specifications say where each command's keys are,
// so a command newer than the built-in table (HGETEX, HSETEX, HEXPIRE,
// ...) can be routed by its key. The reply comes from a backend and is
// treated as untrusted: every size is bounded, malformed entries are
// skipped and counted, nothing panics.

// Bounds of a COMMAND reply the parser accepts.
const (
	maxCommandReply  = 8 << 20 // bytes
	maxCommandValues = 1 << 20 // RESP values in the whole reply
	maxCommandDepth  = 12      // nesting: reply, entry, specs, spec, begin_search, spec, subcommands, ...
	maxLearnedName   = 64      // bytes of a command name
	maxKeySpecs      = 32      // key specs of one command
	maxSpecIndex     = 1 << 20 // |index|, |startfrom|, |lastkey|, keystep, limit, ...
	maxKeyword       = 64      // bytes of a begin_search keyword
)

// CmdFlags are the COMMAND flags the proxy's policy looks at.
type CmdFlags uint32

// Command flags, as redis names them in COMMAND.
const (
	CmdWrite CmdFlags = 1 << iota
	CmdReadonly
	CmdAdmin
	CmdPubSub
	CmdNoScript
	CmdBlocking
	CmdMovableKeys
	CmdNoMulti
	CmdProtected
	CmdModule
	CmdNoMandatoryKeys
	CmdFast
	CmdAsking
	CmdNoAuth
	// ACL categories, from the entry's seventh field.
	CatTransaction
	CatConnection
)

var learnedFlagNames = map[string]CmdFlags{
	"write": CmdWrite, "readonly": CmdReadonly, "admin": CmdAdmin, "pubsub": CmdPubSub,
	"noscript": CmdNoScript, "blocking": CmdBlocking, "movablekeys": CmdMovableKeys,
	"no_multi": CmdNoMulti, "protected": CmdProtected, "module": CmdModule,
	"no_mandatory_keys": CmdNoMandatoryKeys, "fast": CmdFast, "asking": CmdAsking, "no_auth": CmdNoAuth,
	"@transaction": CatTransaction, "@connection": CatConnection,
}

// KeySpecFlags are the flags of one key spec the proxy needs.
type KeySpecFlags uint16

// Key spec flags.
const (
	// KeyNotKey: the argument is not a key (a channel, a name); redis's
	// own key extraction skips such specs.
	KeyNotKey KeySpecFlags = 1 << iota
	// KeyIncomplete: the spec may miss keys (SORT's BY, GET and STORE).
	KeyIncomplete
	KeyRO
	KeyRW
	KeyOW
	KeyRM
	// What the command does with the key, which ACL key patterns
	// (%R~, %W~) are checked against: access reads, insert, delete and
	// update write. VariableFlags: the flags depend on the arguments
	// (SET ... GET, BITFIELD's subcommands).
	KeyAccess
	KeyInsert
	KeyDelete
	KeyUpdate
	KeyVariableFlags
)

var keySpecFlagNames = map[string]KeySpecFlags{
	"not_key": KeyNotKey, "incomplete": KeyIncomplete,
	"ro": KeyRO, "rw": KeyRW, "ow": KeyOW, "rm": KeyRM,
	"access": KeyAccess, "insert": KeyInsert, "delete": KeyDelete, "update": KeyUpdate,
	"variable_flags": KeyVariableFlags,
}

// Begin-search and find-keys types of a key spec.
const (
	SearchUnknown uint8 = iota
	SearchIndex
	SearchKeyword
)

// Find-keys types of a key spec.
const (
	FindUnknown uint8 = iota
	FindRange
	FindKeynum
)

// KeySpec is one of redis 7's key specifications.
type KeySpec struct {
	Flags KeySpecFlags
	// Begin search: SearchIndex starts at argument Index; SearchKeyword
	// at the argument after Keyword, searched from StartFrom (negative:
	// from the end, backwards).
	Search    uint8
	Index     int
	Keyword   string
	StartFrom int
	// Find keys: FindRange takes keys up to LastKey after the start
	// (negative: from the end; with Limit > 0 and LastKey -1, a 1/Limit
	// share of the rest), every KeyStep; FindKeynum reads the key count at
	// start+KeyNumIdx, and the keys start at start+FirstKey, every
	// KeyStep.
	Find                      uint8
	LastKey, KeyStep, Limit   int
	KeyNumIdx, FirstKeyOffset int
}

// LearnedCommand is a command as a server described it in COMMAND.
type LearnedCommand struct {
	Name  string // lowercase
	Arity int
	Flags CmdFlags
	// FirstKey, LastKey, Step are the legacy key range, for reference.
	FirstKey, LastKey, Step int
	Specs                   []KeySpec
	Subcommands             int // how many subcommands the entry lists
	// Categories are the entry's ACL categories, lowercase without '@'.
	Categories []string
	// Subs are the entry's subcommands, named "container|sub" as redis
	// names them; only a top-level entry has them.
	Subs []*LearnedCommand
}

// KeySpecTable is what a COMMAND reply taught: name → command.
type KeySpecTable struct {
	learned  map[string]*LearnedCommand
	commands map[string]*Command // Classify of each
	// Skipped counts malformed entries; Errors keeps the first few reasons.
	Skipped int
	Errors  []error
}

// ErrCommandReply reports a COMMAND reply that is not an array of entries.
var ErrCommandReply = errors.New("resp: malformed COMMAND reply")

// ParseCommandReply parses a whole COMMAND or COMMAND INFO reply, RESP2 or
// RESP3 (maps and sets are read like arrays). Entries it cannot read are
// skipped and counted in Skipped; null entries (COMMAND INFO of an
// unknown name) are ignored. It fails only when the reply itself is
// malformed or is not an array.
func ParseCommandReply(reply []byte) (*KeySpecTable, error) {
	if len(reply) > maxCommandReply {
		return nil, fmt.Errorf("%w: %d bytes", ErrCommandReply, len(reply))
	}
	d := valueDecoder{buf: reply, budget: maxCommandValues}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(reply) {
		return nil, fmt.Errorf("%w: %d bytes after the reply", ErrCommandReply, len(reply)-d.pos)
	}
	if v.typ == TypeError {
		return nil, fmt.Errorf("%w: error reply %q", ErrCommandReply, v.str)
	}
	if !v.isList() {
		return nil, fmt.Errorf("%w: not an array", ErrCommandReply)
	}
	t := &KeySpecTable{learned: map[string]*LearnedCommand{}, commands: map[string]*Command{}}
	for _, e := range v.elems {
		if e.typ == TypeNull || (e.typ == TypeArray && e.elems == nil) {
			continue
		}
		lc, err := parseEntry(e)
		if err != nil {
			t.Skipped++
			if len(t.Errors) < 8 {
				t.Errors = append(t.Errors, err)
			}
			continue
		}
		if _, dup := t.learned[lc.Name]; dup {
			t.Skipped++
			continue
		}
		t.learned[lc.Name] = lc
		t.commands[lc.Name] = Classify(lc)
	}
	return t, nil
}

// Len is the number of commands learned.
func (t *KeySpecTable) Len() int {
	if t == nil {
		return 0
	}
	return len(t.learned)
}

// Learned returns the command named name (lowercase) as the server
// described it.
func (t *KeySpecTable) Learned(name string) (*LearnedCommand, bool) {
	if t == nil {
		return nil, false
	}
	lc, ok := t.learned[name]
	return lc, ok
}

// Each calls fn for every learned command, in no particular order.
func (t *KeySpecTable) Each(fn func(*LearnedCommand)) {
	if t == nil {
		return
	}
	for _, lc := range t.learned {
		fn(lc)
	}
}

// Lookup finds the routing decision for a learned command by name,
// case-insensitively, without allocating.
func (t *KeySpecTable) Lookup(name []byte) (*Command, bool) {
	if t == nil || len(name) > maxLearnedName {
		return nil, false
	}
	var b [maxLearnedName]byte
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	c, ok := t.commands[string(b[:len(name)])]
	return c, ok
}

// ReasonKeysUnknown refuses learned commands whose key specs the proxy
// cannot follow (an unknown or incomplete spec).
const ReasonKeysUnknown = "keys not known to nuthatch"

// Classify is the proxy's policy for a learned command, the same rules as
// the built-in table's defaults: admin, blocking and pub/sub commands,
// commands that cannot run in a script or a transaction (they change the
// connection: WATCH, SUBSCRIBE, ...), container commands and commands
// without keys are refused with the built-in reasons; commands whose keys
// the specs cannot find are refused with ReasonKeysUnknown. The rest are
// KindSingleKey, with CrossKey when the specs can name several keys (all
// must then live on one server). The Command's Learned field makes Keys
// use the key specs.
func Classify(lc *LearnedCommand) *Command {
	c := &Command{Name: lc.Name, Arity: lc.Arity, Kind: KindUnsupported,
		FirstKey: lc.FirstKey, LastKey: lc.LastKey, Step: lc.Step, Learned: lc}
	keys, multi, known := 0, false, true
	for i := range lc.Specs {
		s := &lc.Specs[i]
		if s.Flags&KeyNotKey != 0 {
			continue
		}
		keys++
		if s.Search == SearchUnknown || s.Find == FindUnknown || s.Flags&KeyIncomplete != 0 {
			known = false
		}
		if s.Find == FindKeynum || s.Find == FindRange && (s.LastKey != 0 || s.Limit != 0) {
			multi = true
		}
	}
	switch {
	case lc.Flags&(CmdAdmin|CmdProtected) != 0:
		c.Reason = ReasonServer
	case lc.Flags&CmdBlocking != 0:
		c.Reason = ReasonBlocking
	case lc.Flags&CmdPubSub != 0:
		c.Reason = ReasonPubSub
	case lc.Flags&CatTransaction != 0:
		c.Reason = ReasonTransaction
	case lc.Flags&CatConnection != 0:
		c.Reason = ReasonConnection
	case lc.Flags&CmdAsking != 0:
		c.Reason = ReasonCluster
	case lc.Subcommands > 0:
		c.Reason = ReasonSubcommand
	case keys == 0:
		c.Reason = ReasonServer
	case !known:
		c.Reason = ReasonKeysUnknown
	default:
		c.Kind = KindSingleKey
		c.CrossKey = multi || keys > 1
	}
	return c
}

// Keys appends to dst the indexes of lc's keys in args, following redis's
// getKeysUsingKeySpecs (src/db.c): specs in order, NOT_KEY specs skipped,
// a keyword not found names no key. A key count that is not a number
// fails with ErrKeyCount, a negative one with ErrKeyCountNeg, keys past
// the arguments with ErrKeyCountBig; a spec of unknown type is skipped
// (redis's GET_KEYSPEC_RETURN_PARTIAL). No keys at all is ErrNoKeys. It does not allocate when dst
// has room.
func (lc *LearnedCommand) Keys(args [][]byte, dst []int) ([]int, error) {
	start := len(dst)
	argc := len(args)
	for i := range lc.Specs {
		s := &lc.Specs[i]
		if s.Flags&KeyNotKey != 0 {
			continue
		}
		first := 0
		switch s.Search {
		case SearchIndex:
			first = s.Index
		case SearchKeyword:
			from, end := s.StartFrom, 1
			if from > 0 {
				end = argc - 1
			} else {
				from += argc
			}
			for j := from; j != end; {
				if j >= argc || j < 1 {
					break
				}
				if len(args[j]) == len(s.Keyword) && bytes.EqualFold(args[j], []byte(s.Keyword)) {
					first = j + 1
					break
				}
				if from <= end {
					j++
				} else {
					j--
				}
			}
			if first == 0 {
				continue
			}
		default:
			continue // unknown: Classify refuses such commands
		}
		var last, step int
		switch s.Find {
		case FindRange:
			switch {
			case s.LastKey >= 0:
				last = first + s.LastKey
			case s.Limit == 0:
				last = argc + s.LastKey
			default:
				last = first + ((argc-first)/s.Limit + s.LastKey)
			}
			step = s.KeyStep
		case FindKeynum:
			at := first + s.KeyNumIdx
			if at < 1 || at >= argc {
				return dst[:start], ErrKeyCount
			}
			n, ok := parseLL(args[at])
			switch {
			case !ok:
				return dst[:start], ErrKeyCount
			case n < 0:
				return dst[:start], ErrKeyCountNeg
			case n > int64(argc) || int64(first+s.FirstKeyOffset)+(n-1)*int64(s.KeyStep) >= int64(argc):
				return dst[:start], ErrKeyCountBig
			}
			first += s.FirstKeyOffset
			step = s.KeyStep
			last = first + (int(n)-1)*step
			if n == 0 {
				continue
			}
		default:
			continue
		}
		if first < 1 || first >= argc || last < first {
			// redis: a syntax error the command reports itself.
			continue
		}
		if last >= argc {
			return dst[:start], ErrKeyCountBig
		}
		for j := first; j <= last; j += max(step, 1) {
			dst = append(dst, j)
		}
	}
	if len(dst) == start {
		return dst, ErrNoKeys
	}
	return dst, nil
}

// parseEntry reads one COMMAND entry: name, arity, flags, first key, last
// key, step, ACL categories, tips, key specs, subcommands (the last four
// since redis 6 and 7; an older entry has no key specs).
func parseEntry(e rvalue) (*LearnedCommand, error) { return parseEntryDepth(e, 0) }

func parseEntryDepth(e rvalue, depth int) (*LearnedCommand, error) {
	if !e.isList() || len(e.elems) < 6 {
		return nil, fmt.Errorf("%w: entry is not an array of 6 or more", ErrCommandReply)
	}
	el := e.elems
	name, ok := el[0].text()
	if !ok || len(name) == 0 || len(name) > maxLearnedName {
		return nil, fmt.Errorf("%w: bad command name", ErrCommandReply)
	}
	lc := &LearnedCommand{Name: string(bytes.ToLower(name))}
	ints := [4]*int{&lc.Arity, &lc.FirstKey, &lc.LastKey, &lc.Step}
	for i, j := range [4]int{1, 3, 4, 5} {
		n, ok := el[j].integer()
		if !ok {
			return nil, fmt.Errorf("%w: %s: field %d is not a small integer", ErrCommandReply, lc.Name, j)
		}
		*ints[i] = n
	}
	if !el[2].isList() {
		return nil, fmt.Errorf("%w: %s: flags are not an array", ErrCommandReply, lc.Name)
	}
	for _, f := range el[2].elems {
		if s, ok := f.text(); ok {
			lc.Flags |= learnedFlagNames[string(bytes.ToLower(s))]
		}
	}
	if len(el) > 6 && el[6].isList() {
		for _, f := range el[6].elems {
			if s, ok := f.text(); ok && len(s) > 1 && s[0] == '@' && len(s) <= maxKeyword {
				cat := string(bytes.ToLower(s))
				lc.Flags |= learnedFlagNames[cat]
				lc.Categories = append(lc.Categories, cat[1:])
			}
		}
	}
	if len(el) > 8 {
		if !el[8].isList() {
			return nil, fmt.Errorf("%w: %s: key specs are not an array", ErrCommandReply, lc.Name)
		}
		if len(el[8].elems) > maxKeySpecs {
			return nil, fmt.Errorf("%w: %s: %d key specs", ErrCommandReply, lc.Name, len(el[8].elems))
		}
		for _, sv := range el[8].elems {
			spec, err := parseKeySpec(sv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", lc.Name, err)
			}
			lc.Specs = append(lc.Specs, spec)
		}
	}
	if len(el) > 9 && el[9].isList() {
		lc.Subcommands = len(el[9].elems)
		if depth == 0 {
			for _, sv := range el[9].elems {
				// A subcommand that cannot be read is left out; its
				// container still routes as before.
				if sub, err := parseEntryDepth(sv, 1); err == nil {
					lc.Subs = append(lc.Subs, sub)
				}
			}
		}
	}
	return lc, nil
}

// parseKeySpec reads one key spec, a map (or, in RESP2, an array of
// alternating keys and values). An unknown or malformed begin_search or
// find_keys leaves its type unknown: the command is then refused, not
// skipped, so that its name still gets a clear reason.
func parseKeySpec(v rvalue) (KeySpec, error) {
	var s KeySpec
	m, ok := v.fields()
	if !ok {
		return s, fmt.Errorf("%w: key spec is not a map", ErrCommandReply)
	}
	if fl, ok := m["flags"]; ok && fl.isList() {
		for _, f := range fl.elems {
			if t, ok := f.text(); ok {
				s.Flags |= keySpecFlagNames[string(bytes.ToLower(t))]
			}
		}
	}
	if bs, ok := m["begin_search"].fields(); ok {
		typ, _ := bs["type"].text()
		spec, _ := bs["spec"].fields()
		switch string(typ) {
		case "index":
			if n, ok := spec["index"].bounded(); ok && n > 0 {
				s.Search, s.Index = SearchIndex, n
			}
		case "keyword":
			kw, ok1 := spec["keyword"].text()
			from, ok2 := spec["startfrom"].bounded()
			if ok1 && ok2 && len(kw) > 0 && len(kw) <= maxKeyword && from != 0 {
				s.Search, s.Keyword, s.StartFrom = SearchKeyword, string(kw), from
			}
		}
	}
	if fk, ok := m["find_keys"].fields(); ok {
		typ, _ := fk["type"].text()
		spec, _ := fk["spec"].fields()
		switch string(typ) {
		case "range":
			last, ok1 := spec["lastkey"].bounded()
			step, ok2 := spec["keystep"].bounded()
			limit, ok3 := spec["limit"].bounded()
			// redis asserts that a limit comes with lastkey -1.
			if ok1 && ok2 && ok3 && step > 0 && limit >= 0 && (limit == 0 || last == -1) {
				s.Find, s.LastKey, s.KeyStep, s.Limit = FindRange, last, step, limit
			}
		case "keynum":
			idx, ok1 := spec["keynumidx"].bounded()
			first, ok2 := spec["firstkey"].bounded()
			step, ok3 := spec["keystep"].bounded()
			if ok1 && ok2 && ok3 && idx >= 0 && first > idx && step > 0 {
				s.Find, s.KeyNumIdx, s.FirstKeyOffset, s.KeyStep = FindKeynum, idx, first, step
			}
		}
	}
	return s, nil
}

// rvalue is a decoded RESP value: typ is its type byte; str holds
// simple, bulk and error strings, num integers; elems arrays, sets,
// pushes and maps (keys and values in turn). A null array has nil elems.
type rvalue struct {
	typ   byte
	str   []byte
	num   int64
	elems []rvalue
}

func (v rvalue) isList() bool {
	return (v.typ == TypeArray || v.typ == TypeSet || v.typ == TypeMap) && v.elems != nil
}

func (v rvalue) text() ([]byte, bool) {
	if v.typ == TypeStatus || v.typ == TypeBulk && v.str != nil {
		return v.str, true
	}
	return nil, false
}

func (v rvalue) integer() (int, bool) {
	if v.typ != TypeInt || v.num < -maxSpecIndex || v.num > maxSpecIndex {
		return 0, false
	}
	return int(v.num), true
}

func (v rvalue) bounded() (int, bool) { return v.integer() }

// fields reads a map, or an array of alternating names and values.
func (v rvalue) fields() (map[string]rvalue, bool) {
	if !v.isList() || len(v.elems)%2 != 0 {
		return nil, false
	}
	m := make(map[string]rvalue, len(v.elems)/2)
	for i := 0; i < len(v.elems); i += 2 {
		k, ok := v.elems[i].text()
		if !ok {
			return nil, false
		}
		m[string(k)] = v.elems[i+1]
	}
	return m, true
}

// valueDecoder decodes one RESP2 or RESP3 value with a budget of values
// and a depth limit, so that a hostile reply cannot make it allocate
// beyond its own size or recurse without bound.
type valueDecoder struct {
	buf    []byte
	pos    int
	budget int
}

func (d *valueDecoder) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrCommandReply, what, d.pos)
}

func (d *valueDecoder) line() ([]byte, error) {
	i := bytes.Index(d.buf[d.pos:], []byte("\r\n"))
	if i < 0 {
		return nil, d.fail("unterminated line")
	}
	l := d.buf[d.pos : d.pos+i]
	d.pos += i + 2
	return l, nil
}

func (d *valueDecoder) value(depth int) (rvalue, error) {
	if depth > maxCommandDepth {
		return rvalue{}, d.fail("nested too deep")
	}
	if d.budget--; d.budget < 0 {
		return rvalue{}, d.fail("too many values")
	}
	if d.pos >= len(d.buf) {
		return rvalue{}, d.fail("truncated")
	}
	typ := d.buf[d.pos]
	d.pos++
	l, err := d.line()
	if err != nil {
		return rvalue{}, err
	}
	v := rvalue{typ: typ}
	switch typ {
	case TypeStatus, TypeError, TypeDouble, TypeBigNumber:
		v.str = l
	case TypeNull:
	case TypeBool:
		v.num = 0
		if len(l) == 1 && l[0] == 't' {
			v.num = 1
		}
	case TypeInt:
		n, err := strconv.ParseInt(string(l), 10, 64)
		if err != nil {
			return rvalue{}, d.fail("bad integer")
		}
		v.num = n
	case TypeBulk, TypeVerbatim, TypeBlobError:
		n, err := strconv.Atoi(string(l))
		if err != nil || n < -1 {
			return rvalue{}, d.fail("bad length")
		}
		if n == -1 {
			return v, nil
		}
		if n > len(d.buf)-d.pos-2 {
			return rvalue{}, d.fail("truncated string")
		}
		v.str = d.buf[d.pos : d.pos+n : d.pos+n]
		d.pos += n
		if d.buf[d.pos] != '\r' || d.buf[d.pos+1] != '\n' {
			return rvalue{}, d.fail("string not terminated by CRLF")
		}
		d.pos += 2
		if typ == TypeVerbatim && len(v.str) >= 4 {
			v.typ, v.str = TypeBulk, v.str[4:]
		}
	case TypeArray, TypeSet, TypePush, TypeMap, TypeAttribute:
		n, err := strconv.Atoi(string(l))
		if err != nil || n < -1 {
			return rvalue{}, d.fail("bad count")
		}
		if n == -1 {
			return v, nil
		}
		if typ == TypeMap || typ == TypeAttribute {
			if n > maxCommandValues/2 {
				return rvalue{}, d.fail("bad count")
			}
			n *= 2
		}
		// Each element takes at least 3 bytes: bound the allocation by
		// what the buffer can hold.
		if n > d.budget || n > (len(d.buf)-d.pos)/3 {
			return rvalue{}, d.fail("count beyond the reply")
		}
		v.elems = make([]rvalue, n)
		for i := range v.elems {
			if v.elems[i], err = d.value(depth + 1); err != nil {
				return rvalue{}, err
			}
		}
		if typ == TypeAttribute {
			// Attributes annotate the value that follows: skip them.
			return d.value(depth)
		}
	default:
		return rvalue{}, d.fail(fmt.Sprintf("unknown type %q", typ))
	}
	return v, nil
}
