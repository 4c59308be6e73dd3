package stats

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// DefaultService is the "service" value of the stats document. It names
// the document format rather than the program, so that collectors and
// scripts that check it keep working; "version" says which nuthatch.
const DefaultService = "nutcracker"

// Info is the header of the stats document.
type Info struct {
	Service          string        // "" means DefaultService
	Source           string        // the host name
	Version          string        // nuthatch's version
	Uptime           time.Duration // from the master's start to Timestamp; printed in whole seconds
	Timestamp        time.Time     // when the counters were gathered; printed in unix seconds
	TotalConnections int64         // connections ever opened (see Connections)
	CurrConnections  int64         // connections open now (see Connections)
	// Config, when set, names each server as twemproxy does (its placement
	// name: "host" for an unnamed host:11211, "/path:" for a unix socket)
	// rather than by its block label.
	Config *config.Config
}

// Connections estimates twemproxy's total_connections and
// curr_connections, which count every connection of the process:
// listeners, clients and server connections. listeners is the number of
// pool listeners. nuthatch does not count server connections ever opened,
// so total uses the ones open now.
func Connections(s proxy.Snapshot, listeners int) (total, curr int64) {
	total, curr = int64(listeners), int64(listeners)
	for _, p := range s.Pools {
		total += int64(p.ClientAccepted)
		curr += p.ClientConnections
		for _, sv := range p.Servers {
			total += sv.ServerConnections
			curr += sv.ServerConnections
		}
	}
	return total, curr
}

// Pool and server keys of the stats document, in twemproxy's order
// (src/nc_stats.h STATS_POOL_CODEC and STATS_SERVER_CODEC).
var (
	PoolKeys = []string{
		"client_eof", "client_err", "client_connections",
		"server_ejects", "forward_error", "fragments",
	}
	ServerKeys = []string{
		"server_eof", "server_err", "server_timedout", "server_connections",
		"server_ejected_at", "requests", "request_bytes", "responses",
		"response_bytes", "in_queue", "in_queue_bytes", "out_queue",
		"out_queue_bytes",
	}
)

// TwemproxyJSON renders total as twemproxy 0.5.0's stats port does, byte
// for byte: the same keys in the same order, the same separators (", "
// between values, "},"-joined objects), a final newline, pools sorted by
// name and servers by name as twemproxy sorts them (shorter names first,
// then bytewise). Counters the engine does not keep (out_queue_bytes) are 0.
func TwemproxyJSON(total proxy.Snapshot, info Info) []byte {
	b := make([]byte, 0, 512+len(total.Pools)*256)
	b = append(b, '{')
	service := cmp.Or(info.Service, DefaultService)
	b = addString(b, "service", service)
	b = addString(b, "source", info.Source)
	b = addString(b, "version", info.Version)
	b = addNum(b, "uptime", int64(info.Uptime/time.Second))
	b = addNum(b, "timestamp", info.Timestamp.Unix())
	b = addNum(b, "total_connections", info.TotalConnections)
	b = addNum(b, "curr_connections", info.CurrConnections)

	keys := serverKeys(info.Config)
	pools := slices.Clone(total.Pools)
	slices.SortStableFunc(pools, func(x, y proxy.PoolSnapshot) int { return compareNames(x.Name, y.Name) })
	for i := range pools {
		p := &pools[i]
		b = beginNesting(b, p.Name)
		b = addNum(b, "client_eof", int64(p.ClientEOF))
		b = addNum(b, "client_err", int64(p.ClientErr))
		b = addNum(b, "client_connections", p.ClientConnections)
		b = addNum(b, "server_ejects", int64(p.ServerEjects))
		b = addNum(b, "forward_error", int64(p.ForwardError))
		b = addNum(b, "fragments", int64(p.Fragments))
		if p.SentinelsKnown > 0 {
			// A Sentinel pool: not in twemproxy, which has none.
			b = addNum(b, "sentinels_known", p.SentinelsKnown)
			b = addNum(b, "sentinels_reachable", p.SentinelsReachable)
		}

		type named struct {
			key string
			s   *proxy.ServerSnapshot
		}
		servers := make([]named, len(p.Servers))
		for j := range p.Servers {
			key := p.Servers[j].Name
			if k, ok := keys[[2]string{p.Name, key}]; ok {
				key = k
			}
			servers[j] = named{key, &p.Servers[j]}
		}
		slices.SortStableFunc(servers, func(x, y named) int { return compareNames(x.key, y.key) })
		for _, n := range servers {
			s := n.s
			b = beginNesting(b, n.key)
			b = addNum(b, "server_eof", int64(s.ServerEOF))
			b = addNum(b, "server_err", int64(s.ServerErr))
			b = addNum(b, "server_timedout", int64(s.ServerTimedout))
			b = addNum(b, "server_connections", s.ServerConnections)
			b = addNum(b, "server_ejected_at", s.ServerEjectedAt)
			b = addNum(b, "requests", int64(s.Requests))
			b = addNum(b, "request_bytes", int64(s.RequestBytes))
			b = addNum(b, "responses", int64(s.Responses))
			b = addNum(b, "response_bytes", int64(s.ResponseBytes))
			b = addNum(b, "in_queue", s.InQueue)
			b = addNum(b, "in_queue_bytes", s.InQueueBytes)
			b = addNum(b, "out_queue", s.OutQueue)
			b = addNum(b, "out_queue_bytes", 0)
			if s.Address != "" {
				// A Sentinel server: not in twemproxy, which has none.
				b = addString(b, "master", s.Address)
				b = addNum(b, "master_switches", int64(s.Switches))
				b = addNum(b, "master_switched_at", s.SwitchedAt)
				b = addNum(b, "waiting", s.Waiting)
			}
			if s.Role != "" {
				// A cluster node.
				b = addString(b, "role", s.Role)
				b = addNum(b, "slots", s.Slots)
				if s.ReplicaOf != "" {
					b = addString(b, "replica_of", s.ReplicaOf)
				}
			}
			b = endNesting(b)
		}
		b = endNesting(b)
	}
	return addFooter(b)
}

// serverKeys maps {pool, label} to the name twemproxy prints for the
// server.
func serverKeys(cfg *config.Config) map[[2]string]string {
	if cfg == nil {
		return nil
	}
	m := make(map[[2]string]string)
	for _, p := range cfg.Pools {
		for _, s := range p.Servers {
			m[[2]string{p.Name, s.Name}] = s.PlacementName()
		}
	}
	return m
}

// The helpers below follow nc_stats.c's buffer edits: every value is
// followed by ", "; closing an object turns the trailing ", " into "},"
// (or a trailing "}," into "}},"); the footer replaces the last byte by
// "}" and adds "\n".

func addString(b []byte, key, val string) []byte {
	b = appendJSONString(b, key)
	b = append(b, ':')
	b = appendJSONString(b, val)
	return append(b, ", "...)
}

func addNum(b []byte, key string, v int64) []byte {
	b = appendJSONString(b, key)
	b = append(b, ':')
	b = strconv.AppendInt(b, v, 10)
	return append(b, ", "...)
}

func beginNesting(b []byte, key string) []byte {
	b = appendJSONString(b, key)
	return append(b, ": {"...)
}

func endNesting(b []byte) []byte {
	n := len(b)
	switch {
	case n >= 2 && b[n-2] == ',' && b[n-1] == ' ':
		b[n-2], b[n-1] = '}', ','
	case n >= 2 && b[n-2] == '}' && b[n-1] == ',':
		b[n-1] = '}'
		b = append(b, ',')
	default: // an empty object: "{" just opened
		b = append(b, "},"...)
	}
	return b
}

func addFooter(b []byte) []byte {
	n := len(b)
	if n >= 2 && b[n-2] == ',' && b[n-1] == ' ' {
		// No pools: twemproxy would print ",}" here, which is not JSON.
		b = b[:n-1]
		n--
	}
	b[n-1] = '}'
	return append(b, '\n')
}

// appendJSONString quotes s. twemproxy prints names verbatim; the
// configuration forbids the characters that would need escaping in pool
// names, so escaping only matters for odd host names.
func appendJSONString(b []byte, s string) []byte {
	if !needsEscape(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s)
	return append(b, q...)
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return true
		}
	}
	return false
}

// compareNames is twemproxy's string_compare, by which it sorts pools and
// servers: shorter first, then bytewise.
func compareNames(a, b string) int {
	if len(a) != len(b) {
		return cmp.Compare(len(a), len(b))
	}
	return strings.Compare(a, b)
}

// ErrMalformed is wrapped by Parse for input that is not a stats document.
var ErrMalformed = errors.New("stats: malformed stats document")

// Document is a parsed stats document, in the order it was written.
type Document struct {
	Service, Source, Version string
	Uptime, Timestamp        int64
	TotalConnections         int64
	CurrConnections          int64
	// Extra holds any other numeric top-level key.
	Extra []Field
	Pools []DocPool
}

// Field is one numeric value.
type Field struct {
	Key   string
	Value int64
}

// DocPool is one pool object: its numeric values and its server objects.
type DocPool struct {
	Name    string
	Fields  []Field
	Servers []DocServer
}

// DocServer is one server object. Strings holds its string values
// (nuthatch's "master" of a Sentinel server or cluster node), which
// twemproxy's document has none of.
type DocServer struct {
	Name    string
	Fields  []Field
	Strings map[string]string
}

// Get returns the value of key, 0 when absent.
func (p *DocPool) Get(key string) int64 { return get(p.Fields, key) }

// Get returns the value of key, 0 when absent.
func (s *DocServer) Get(key string) int64 { return get(s.Fields, key) }

func get(fs []Field, key string) int64 {
	for _, f := range fs {
		if f.Key == key {
			return f.Value
		}
	}
	return 0
}

// Pool returns the named pool, or nil.
func (d *Document) Pool(name string) *DocPool {
	for i := range d.Pools {
		if d.Pools[i].Name == name {
			return &d.Pools[i]
		}
	}
	return nil
}

// Server returns the named server, or nil.
func (p *DocPool) Server(name string) *DocServer {
	for i := range p.Servers {
		if p.Servers[i].Name == name {
			return &p.Servers[i]
		}
	}
	return nil
}

// Parse reads a stats document as twemproxy or nuthatch writes it: a
// top-level object of strings and numbers whose object values are pools,
// whose object values are servers of numbers. Order is kept.
func Parse(data []byte) (*Document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	d := &Document{}
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return nil, err
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		switch v := tok.(type) {
		case string:
			switch key {
			case "service":
				d.Service = v
			case "source":
				d.Source = v
			case "version":
				d.Version = v
			default:
				return nil, fmt.Errorf("%w: top-level key %q has a string value", ErrMalformed, key)
			}
		case json.Number:
			n, err := toInt(key, v)
			if err != nil {
				return nil, err
			}
			switch key {
			case "uptime":
				d.Uptime = n
			case "timestamp":
				d.Timestamp = n
			case "total_connections":
				d.TotalConnections = n
			case "curr_connections":
				d.CurrConnections = n
			default:
				d.Extra = append(d.Extra, Field{key, n})
			}
		case json.Delim:
			if v != '{' {
				return nil, fmt.Errorf("%w: top-level key %q is not an object or a scalar", ErrMalformed, key)
			}
			p, err := parsePool(dec, key)
			if err != nil {
				return nil, err
			}
			d.Pools = append(d.Pools, p)
		default:
			return nil, fmt.Errorf("%w: top-level key %q has an unexpected value", ErrMalformed, key)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the document", ErrMalformed)
	}
	return d, nil
}

func parsePool(dec *json.Decoder, name string) (DocPool, error) {
	p := DocPool{Name: name}
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return p, err
		}
		tok, err := dec.Token()
		if err != nil {
			return p, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		switch v := tok.(type) {
		case json.Number:
			n, err := toInt(key, v)
			if err != nil {
				return p, err
			}
			p.Fields = append(p.Fields, Field{key, n})
		case json.Delim:
			if v != '{' {
				return p, fmt.Errorf("%w: pool %q key %q is not an object or a number", ErrMalformed, name, key)
			}
			s := DocServer{Name: key}
			for dec.More() {
				k, err := readKey(dec)
				if err != nil {
					return p, err
				}
				tok, err := dec.Token()
				if err != nil {
					return p, fmt.Errorf("%w: %w", ErrMalformed, err)
				}
				if str, ok := tok.(string); ok {
					if s.Strings == nil {
						s.Strings = map[string]string{}
					}
					s.Strings[k] = str
					continue
				}
				num, ok := tok.(json.Number)
				if !ok {
					return p, fmt.Errorf("%w: server %q key %q is not a number or a string", ErrMalformed, key, k)
				}
				n, err := toInt(k, num)
				if err != nil {
					return p, err
				}
				s.Fields = append(s.Fields, Field{k, n})
			}
			if err := expectDelim(dec, '}'); err != nil {
				return p, err
			}
			p.Servers = append(p.Servers, s)
		default:
			return p, fmt.Errorf("%w: pool %q key %q is not an object or a number", ErrMalformed, name, key)
		}
	}
	return p, expectDelim(dec, '}')
}

func readKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	k, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("%w: expected a key, got %v", ErrMalformed, tok)
	}
	return k, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%w: expected %q, got %v", ErrMalformed, want, tok)
	}
	return nil
}

func toInt(key string, n json.Number) (int64, error) {
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not an integer: %s", ErrMalformed, key, n)
	}
	return v, nil
}
