package convert

import (
	"bytes"
	"errors"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// setting is one pool key's value and the line it was set on.
type setting[T any] struct {
	v    T
	line int
}

// pool is one top-level entry of nutcracker.yml, as twemproxy reads it.
type pool struct {
	name string
	line int

	listen             *setting[listenSpec]
	redis              *setting[bool]
	hash               *setting[string]
	hashTag            *setting[string]
	distribution       *setting[string]
	timeout            *setting[int]
	backlog            *setting[int]
	preconnect         *setting[bool]
	clientConnections  *setting[int]
	serverConnections  *setting[int]
	autoEjectHosts     *setting[bool]
	serverRetryTimeout *setting[int]
	serverFailureLimit *setting[int]
	tcpKeepalive       *setting[bool]
	reusePort          *setting[bool]
	redisAuth          *setting[string]
	redisDB            *setting[int]

	servers []*serverSpec
	// rejected counts listen and servers values already reported, so
	// that their absence is not reported again.
	rejectedListen, rejectedServers int
}

func (p *pool) isRedis() bool { return p.redis != nil && p.redis.v }

// parse reads src the way nutcracker's conf_create does and returns the
// pools in file order. Problems are recorded in c.errs.
func (c *converter) parse(src []byte) []*pool {
	if !c.scanMarkers(src) {
		return nil
	}
	doc, ok := c.decode(src)
	if !ok {
		return nil
	}
	if !c.checkTokens(doc) {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		c.errorf(ErrInvalid, root.Line, "the top level must be a mapping of pool names to pool settings")
		return nil
	}
	var pools []*pool
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if !c.scalarKey(k) {
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.errorf(ErrInvalid, k.Line, "pool %q is already defined at line %d", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		if msg := checkName(k.Value); msg != "" {
			c.errorf(ErrUnsupported, k.Line, "pool %q: %s", k.Value, msg)
		} else if slices.Contains(statsKeys, k.Value) {
			c.errorf(ErrUnsupported, k.Line, "pool %q: the name is a top-level key of the stats output, which nuthatch reserves; rename the pool", k.Value)
		}
		if v.Kind != yaml.MappingNode {
			c.errorf(ErrInvalid, v.Line, "pool %q: its value must be a mapping of settings (listen:, servers:, ...)", k.Value)
			continue
		}
		pools = append(pools, c.pool(k, v))
	}
	c.checkListenDuplicates(pools)
	return pools
}

// scanMarkers rejects document markers and directives, which twemproxy's
// token check (conf_validate_tokens) refuses and yaml.Node does not record.
func (c *converter) scanMarkers(src []byte) bool {
	ok := true
	for n, line := range bytes.Split(src, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		switch {
		case isMarker(line, "---"), isMarker(line, "..."):
			c.errorf(ErrInvalid, n+1, "document markers (%q) are not allowed: twemproxy reads exactly one implicit document", line[:3])
			ok = false
		case len(line) > 0 && line[0] == '%':
			c.errorf(ErrInvalid, n+1, "YAML directives are not allowed")
			ok = false
		}
	}
	return ok
}

func isMarker(line []byte, m string) bool {
	return bytes.HasPrefix(line, []byte(m)) && (len(line) == len(m) || line[len(m)] == ' ' || line[len(m)] == '\t')
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decode parses the single document twemproxy requires.
func (c *converter) decode(src []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, msg := 0, err.Error()
			if m := yamlLine.FindStringSubmatch(msg); m != nil {
				line, _ = strconv.Atoi(m[1])
				msg = m[2]
			}
			c.errorf(ErrInvalid, line, "YAML syntax: %s", msg)
			return nil, false
		}
		docs = append(docs, &n)
	}
	if len(docs) != 1 || len(docs[0].Content) != 1 {
		c.errorf(ErrInvalid, 0, "the file must contain exactly one YAML document with at least one pool; found %d documents", len(docs))
		return nil, false
	}
	return docs[0], true
}

// checkTokens rejects the YAML features twemproxy's tokenizer refuses:
// flow collections ([...], {...}), anchors, aliases and tags.
func (c *converter) checkTokens(n *yaml.Node) bool {
	ok := true
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		switch {
		case n.Kind == yaml.AliasNode:
			c.errorf(ErrInvalid, n.Line, "aliases (*%s) are not allowed", n.Value)
			ok = false
			return
		case n.Anchor != "":
			c.errorf(ErrInvalid, n.Line, "anchors (&%s) are not allowed", n.Anchor)
			ok = false
		case n.Style&yaml.TaggedStyle != 0:
			c.errorf(ErrInvalid, n.Line, "tags (%s) are not allowed", n.Tag)
			ok = false
		case n.Style&yaml.FlowStyle != 0 && (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode):
			c.errorf(ErrInvalid, n.Line, "flow collections ([...] or {...}) are not allowed; use block style")
			ok = false
		}
		for _, ch := range n.Content {
			walk(ch)
		}
	}
	walk(n)
	return ok
}

// scalarKey checks a mapping key: twemproxy needs a non-empty scalar.
func (c *converter) scalarKey(k *yaml.Node) bool {
	if k.Kind != yaml.ScalarNode {
		c.errorf(ErrInvalid, k.Line, "a key must be a plain string")
		return false
	}
	if k.Value == "" {
		c.errorf(ErrInvalid, k.Line, "empty keys are not allowed")
		return false
	}
	return true
}

// pool reads one pool's settings. twemproxy allows exactly one sequence
// per pool (conf_validate_structure) and applies each of its elements to
// the key it belongs to, so "servers:" is normally that sequence.
func (c *converter) pool(k, m *yaml.Node) *pool {
	p := &pool{name: k.Value, line: k.Line}
	seqLine := 0
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i], m.Content[i+1]
		if !c.scalarKey(key) {
			continue
		}
		var values []*yaml.Node
		switch val.Kind {
		case yaml.ScalarNode:
			values = []*yaml.Node{val}
		case yaml.SequenceNode:
			if seqLine != 0 {
				c.errorf(ErrInvalid, key.Line, "pool %q: only one list is allowed per pool (the first is at line %d)", p.name, seqLine)
				continue
			}
			seqLine = key.Line
			values = val.Content
		default:
			c.errorf(ErrInvalid, val.Line, "pool %q: %s: nested mappings are not allowed", p.name, key.Value)
			continue
		}
		if !slices.Contains(keyNames(), key.Value) {
			c.errorf(ErrInvalid, key.Line, "pool %q: unknown key %q; twemproxy accepts: %s", p.name, key.Value, quoteList(keyNames()))
			continue
		}
		for _, v := range values {
			switch {
			case v.Kind != yaml.ScalarNode:
				c.errorf(ErrInvalid, v.Line, "pool %q: %s: list items must be plain values", p.name, key.Value)
				p.rejectedServers++
			case v.Value == "":
				c.errorf(ErrInvalid, v.Line, "pool %q: %s: empty values are not allowed", p.name, key.Value)
			default:
				c.set(p, key.Value, v)
			}
		}
	}
	if seqLine == 0 {
		c.errorf(ErrInvalid, p.line, "pool %q has no servers list (servers: followed by \"- host:port:weight\" lines)", p.name)
	} else if len(p.servers) == 0 && p.rejectedServers == 0 {
		c.errorf(ErrInvalid, p.line, "pool %q has no servers", p.name)
	}
	c.validatePool(p)
	return p
}

// validatePool applies conf_validate_pool and conf_validate_server.
func (c *converter) validatePool(p *pool) {
	if p.listen == nil && p.rejectedListen == 0 {
		c.errorf(ErrInvalid, p.line, "pool %q has no listen address", p.name)
	}
	if s := p.serverConnections; s != nil && s.v == 0 {
		c.errorf(ErrInvalid, s.line, "pool %q: server_connections cannot be 0", p.name)
	}
	if a := p.redisAuth; a != nil && !p.isRedis() {
		c.errorf(ErrInvalid, a.line, "pool %q: redis_auth is only valid in a redis pool (redis: true)", p.name)
	}
	names := map[string]int{}
	var total int64
	for _, s := range p.servers {
		total += int64(s.weight)
		if first, dup := names[s.name]; dup {
			c.errorf(ErrInvalid, s.line, "pool %q has two servers with the name %q (lines %d and %d)", p.name, s.name, first, s.line)
			continue
		}
		names[s.name] = s.line
	}
	if d := p.distribution; d != nil && d.v == "modula" && total > maxModulaWeight {
		c.errorf(ErrUnsupported, d.line, "pool %q: modula needs one slot per unit of weight, and the total weight %d is above nuthatch's limit of %d", p.name, total, maxModulaWeight)
	}
}

// statsKeys are the stats document's own keys, which nuthatch refuses as
// pool names (they would collide in the JSON).
var statsKeys = []string{"service", "source", "version", "uptime", "timestamp", "total_connections", "curr_connections"}

// maxModulaWeight is hashkit's bound on a modula continuum.
const maxModulaWeight = 1 << 20

// checkListenDuplicates rejects two pools with the same listen string, as
// conf_post_validate does. Overlaps nuthatch also rejects (a wildcard and
// a specific address on one port) are caught when the output is verified.
func (c *converter) checkListenDuplicates(pools []*pool) {
	seen := map[string]*pool{}
	for _, p := range pools {
		if p.listen == nil {
			continue
		}
		raw := p.listen.v.raw
		if q, dup := seen[raw]; dup {
			c.errorf(ErrInvalid, p.listen.line, "pools %q and %q have the same listen address %q", q.name, p.name, raw)
			continue
		}
		seen[raw] = p
	}
}

// set applies one value of a pool key, as conf_commands does; it
// reports false for a key twemproxy does not know.
func (c *converter) set(p *pool, key string, v *yaml.Node) bool {
	switch key {
	case "listen":
		c.setListen(p, v)
	case "hash":
		c.setChoice(p, key, v, &p.hash, config.Hashes)
	case "hash_tag":
		c.setHashTag(p, v)
	case "distribution":
		c.setChoice(p, key, v, &p.distribution, config.Distributions)
	case "timeout":
		c.setNum(p, key, v, &p.timeout)
	case "backlog":
		c.setNum(p, key, v, &p.backlog)
	case "client_connections":
		c.setNum(p, key, v, &p.clientConnections)
	case "redis":
		c.setBool(p, key, v, &p.redis)
	case "tcpkeepalive":
		c.setBool(p, key, v, &p.tcpKeepalive)
	case "reuseport":
		c.setBool(p, key, v, &p.reusePort)
	case "redis_auth":
		c.setString(p, key, v, &p.redisAuth)
	case "redis_db":
		c.setNum(p, key, v, &p.redisDB)
	case "preconnect":
		c.setBool(p, key, v, &p.preconnect)
	case "auto_eject_hosts":
		c.setBool(p, key, v, &p.autoEjectHosts)
	case "server_connections":
		c.setNum(p, key, v, &p.serverConnections)
	case "server_retry_timeout":
		c.setNum(p, key, v, &p.serverRetryTimeout)
	case "server_failure_limit":
		c.setNum(p, key, v, &p.serverFailureLimit)
	case "servers":
		c.addServer(p, v)
	default:
		return false
	}
	return true
}

// keyNames lists the accepted keys in twemproxy's conf_commands order
// (reuseport last: it exists only on twemproxy's development branch).
func keyNames() []string {
	return []string{"listen", "hash", "hash_tag", "distribution", "timeout", "backlog",
		"client_connections", "redis", "tcpkeepalive", "redis_auth", "redis_db", "preconnect",
		"auto_eject_hosts", "server_connections", "server_retry_timeout", "server_failure_limit",
		"servers", "reuseport"}
}

// duplicate reports a key set twice, which every twemproxy setter refuses.
func (c *converter) duplicate(p *pool, key string, v *yaml.Node, first int) {
	c.errorf(ErrInvalid, v.Line, "pool %q: %s is a duplicate (first set at line %d)", p.name, key, first)
}

func (c *converter) setChoice(p *pool, key string, v *yaml.Node, dst **setting[string], choices []string) {
	if *dst != nil {
		c.duplicate(p, key, v, (*dst).line)
		return
	}
	if !slices.Contains(choices, v.Value) {
		c.errorf(ErrInvalid, v.Line, "pool %q: %q is not a valid %s; use one of: %s", p.name, v.Value, key, quoteList(choices))
		return
	}
	*dst = &setting[string]{v.Value, v.Line}
}

func (c *converter) setString(p *pool, key string, v *yaml.Node, dst **setting[string]) {
	if *dst != nil {
		c.duplicate(p, key, v, (*dst).line)
		return
	}
	*dst = &setting[string]{v.Value, v.Line}
}

func (c *converter) setHashTag(p *pool, v *yaml.Node) {
	if p.hashTag != nil {
		c.duplicate(p, "hash_tag", v, p.hashTag.line)
		return
	}
	// twemproxy counts bytes, and so does nuthatch.
	if len(v.Value) != 2 {
		unit := "bytes"
		if len(v.Value) == 1 {
			unit = "byte"
		}
		c.errorf(ErrInvalid, v.Line, "pool %q: hash_tag must be exactly two characters, such as \"{}\"; %q is %d %s", p.name, v.Value, len(v.Value), unit)
		return
	}
	p.hashTag = &setting[string]{v.Value, v.Line}
}

func (c *converter) setBool(p *pool, key string, v *yaml.Node, dst **setting[bool]) {
	if *dst != nil {
		c.duplicate(p, key, v, (*dst).line)
		return
	}
	// conf_set_bool compares the raw text: yes, True, 1 are refused.
	switch v.Value {
	case "true":
		*dst = &setting[bool]{true, v.Line}
	case "false":
		*dst = &setting[bool]{false, v.Line}
	default:
		c.errorf(ErrInvalid, v.Line, "pool %q: %s is %q, not \"true\" or \"false\"", p.name, key, v.Value)
	}
}

func (c *converter) setNum(p *pool, key string, v *yaml.Node, dst **setting[int]) {
	if *dst != nil {
		c.duplicate(p, key, v, (*dst).line)
		return
	}
	n, ok := atoi(v.Value)
	if !ok && isDigits(v.Value) {
		// nc_atoi would overflow int and keep whatever the wrap gives.
		c.errorf(ErrUnsupported, v.Line, "pool %q: %s %s is out of range (at most %d)", p.name, key, v.Value, math.MaxInt32)
		return
	}
	if !ok {
		hint := ""
		if key == "timeout" && v.Value == "-1" {
			hint = "; twemproxy 0.5.0 rejects -1 too: leave timeout out to wait forever"
		}
		c.errorf(ErrInvalid, v.Line, "pool %q: %s is %q, not a number (digits only)%s", p.name, key, v.Value, hint)
		return
	}
	*dst = &setting[int]{n, v.Line}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// atoi is twemproxy's nc_atoi: digits only, no sign, not empty. Values
// past int32 (which overflow in C) are refused.
func atoi(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
		if n > math.MaxInt32 {
			return 0, false
		}
	}
	return n, true
}

func quoteList(set []string) string {
	var b bytes.Buffer
	for i, s := range set {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(s))
	}
	return b.String()
}
