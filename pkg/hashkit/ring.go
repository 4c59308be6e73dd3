package hashkit

import (
	"cmp"
	"crypto/md5"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Distribution names, in twemproxy's DIST_CODEC order.
const (
	Ketama = "ketama"
	Modula = "modula"
	Random = "random"
)

// DistributionNames lists the distribution names in twemproxy's order.
func DistributionNames() []string { return []string{Ketama, Modula, Random} }

// Node is one backend server as the continuum sees it.
type Node struct {
	// Name is the placement identity, already derived with PointName.
	Name string
	// Weight is the server's configured weight, at least 1.
	Weight int
}

// ketamaDefaultPort is dropped from unnamed servers' identities, for
// libmemcached compatibility (twemproxy's CONF_DEFAULT_KETAMA_PORT).
const ketamaDefaultPort = 11211

// PointName derives a server's placement identity as twemproxy's
// conf_add_server does. A named server ("host:port:weight name") is
// identified by its name. An unnamed one is identified by label, its
// "host:port", except that a port of 11211 is dropped, leaving "host". An
// unnamed unix socket's label is its path, and twemproxy identifies it by
// the path followed by a colon: it appends ":" and an empty port string.
func PointName(label string, named bool) string {
	if named {
		return label
	}
	if strings.HasPrefix(label, "/") {
		return label + ":"
	}
	i := strings.LastIndexByte(label, ':')
	if i < 0 {
		return label
	}
	if port, ok := atoi(label[i+1:]); ok && port == ketamaDefaultPort {
		return label[:i]
	}
	return label
}

// atoi accepts digits only, like twemproxy's nc_atoi.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

type distKind uint8

const (
	distKetama distKind = iota
	distModula
	distRandom
)

// Ring is a built continuum. It is immutable, so Pick is safe for
// concurrent use; rebuild with Build when servers are ejected or return.
type Ring struct {
	kind distKind
	// nodes is how many servers were configured, live or not.
	nodes int
	// values holds ketama point values, ascending; nil for other kinds.
	values []uint32
	// index maps each continuum slot to an index into the Build nodes.
	index []int32
	// start[b] is the first point whose value's top bits are >= b, so a
	// lookup searches only its bucket, start[b] to start[b+1]: a ketama
	// ring's binary search over thousands of points is a chain of
	// unpredictable branches and cache misses on every request.
	start []int32
	shift uint
}

// maxBucketBits bounds the ketama bucket table (4 bytes per bucket).
const maxBucketBits = 14

// maxModulaWeight bounds the modula continuum, which has one slot per unit
// of live weight.
const maxModulaWeight = 1 << 20

const (
	ketamaPointsPerServer = 160
	ketamaPointsPerHash   = 4
	// ketamaMaxHostLen is KETAMA_MAX_HOSTLEN minus the NUL: snprintf
	// truncates longer "<name>-<i>" strings to this many bytes.
	ketamaMaxHostLen = 272
)

// Build builds the continuum twemproxy's server_pool_run would build for
// nodes, in configuration order. live reports which nodes are not ejected;
// nil means all are live. Ejected nodes get no slots, exactly as in
// ketama_update and modula_update with auto_eject_hosts. A ring with no
// live node is valid and its Pick returns -1.
func Build(distribution string, nodes []Node, live []bool) (*Ring, error) {
	var kind distKind
	switch distribution {
	case Ketama:
		kind = distKetama
	case Modula:
		kind = distModula
	case Random:
		kind = distRandom
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownDistribution, distribution)
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: no servers", ErrInvalidNodes)
	}
	if live != nil && len(live) != len(nodes) {
		return nil, fmt.Errorf("%w: %d live flags for %d servers", ErrInvalidNodes, len(live), len(nodes))
	}
	var nlive uint32
	var total uint64
	for i, n := range nodes {
		if n.Weight < 1 || n.Weight > math.MaxInt32 {
			return nil, fmt.Errorf("%w: server %d (%q) has weight %d", ErrInvalidNodes, i, n.Name, n.Weight)
		}
		if live == nil || live[i] {
			nlive++
			total += uint64(n.Weight)
		}
	}
	if total > math.MaxUint32 {
		// twemproxy's uint32 total would wrap and hand out nonsense
		// point counts.
		return nil, fmt.Errorf("%w: total weight %d overflows 32 bits", ErrInvalidNodes, total)
	}
	order, err := serverOrder(nodes)
	if err != nil {
		return nil, err
	}
	if kind == distModula && total > maxModulaWeight {
		// One slot per unit of weight; refuse absurd totals instead of
		// allocating them.
		return nil, fmt.Errorf("%w: total weight %d too large for modula", ErrInvalidNodes, total)
	}
	r := &Ring{kind: kind, nodes: len(nodes)}
	if nlive == 0 {
		return r, nil
	}
	isLive := func(i int) bool { return live == nil || live[i] }
	switch kind {
	case distKetama:
		r.buildKetama(nodes, order, isLive, nlive, uint32(total))
	case distModula:
		r.index = make([]int32, 0, total)
		for _, i := range order {
			if !isLive(i) {
				continue
			}
			for range nodes[i].Weight {
				r.index = append(r.index, int32(i))
			}
		}
	case distRandom:
		r.index = make([]int32, 0, nlive)
		for _, i := range order {
			if isLive(i) {
				r.index = append(r.index, int32(i))
			}
		}
	}
	return r, nil
}

// serverOrder is the order twemproxy keeps a pool's servers in. Its
// conf_validate_server sorts them by placement name, shorter names first
// and then bytewise (string_compare), to reject duplicates, and the pool
// is built from that sorted array. So modula slots, random slots and ketama
// tie-breaks follow name order, not configuration order; Ring still
// reports configuration indices.
func serverOrder(nodes []Node) ([]int, error) {
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return compareNames(nodes[a].Name, nodes[b].Name) })
	for k := 1; k < len(order); k++ {
		if compareNames(nodes[order[k-1]].Name, nodes[order[k]].Name) == 0 {
			return nil, fmt.Errorf("%w: servers %d and %d have the same name %q",
				ErrInvalidNodes, order[k-1], order[k], nodes[order[k]].Name)
		}
	}
	return order, nil
}

// compareNames is twemproxy's string_compare: length first, then strncmp,
// which compares unsigned bytes and stops at a NUL.
func compareNames(a, b string) int {
	if len(a) != len(b) {
		return cmp.Compare(len(a), len(b))
	}
	if i := strings.IndexByte(a, 0); i >= 0 {
		a = a[:i]
	}
	if i := strings.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.Compare(a, b)
}

// ketamaShare is pointer_per_server from ketama_update, evaluated with the
// same float32 and double steps as the C expression
//
//	floorf((float)(pct * 160 / 4 * (float)nlive + 0.0000000001)) * 4
//
// Each step is converted explicitly so the compiler cannot fuse or widen
// it.
func ketamaShare(weight, total, nlive uint32) uint32 {
	pct := float32(weight) / float32(total)
	x := float32(pct * ketamaPointsPerServer)
	x = float32(x / 4)
	x = float32(x * float32(nlive))
	y := float32(float64(x) + 0.0000000001)
	return uint32(float32(math.Floor(float64(y))) * 4)
}

type point struct {
	value uint32
	index int32
}

func (r *Ring) buildKetama(nodes []Node, order []int, isLive func(int) bool, nlive, total uint32) {
	points := make([]point, 0, nlive*ketamaPointsPerServer+ketamaPointsPerHash*uint32(len(nodes)))
	var buf []byte
	for _, i := range order {
		if !isLive(i) {
			continue
		}
		n := nodes[i]
		name := n.Name
		if j := strings.IndexByte(name, 0); j >= 0 {
			name = name[:j] // "%.*s" stops at a NUL
		}
		share := ketamaShare(uint32(n.Weight), total, nlive)
		for h := uint32(0); h < share/ketamaPointsPerHash; h++ {
			buf = append(buf[:0], name...)
			buf = append(buf, '-')
			buf = strconv.AppendUint(buf, uint64(h), 10)
			if len(buf) > ketamaMaxHostLen {
				buf = buf[:ketamaMaxHostLen]
			}
			d := md5.Sum(buf)
			for x := range ketamaPointsPerHash {
				points = append(points, point{ketamaPoint(&d, x), int32(i)})
			}
		}
	}
	// glibc's qsort is a merge sort, so equal values keep insertion order
	// (the server that sorts first by name wins); a stable sort
	// reproduces that.
	slices.SortStableFunc(points, func(a, b point) int { return cmp.Compare(a.value, b.value) })
	r.values = make([]uint32, len(points))
	r.index = make([]int32, len(points))
	for i, p := range points {
		r.values[i] = p.value
		r.index[i] = p.index
	}
	r.buckets()
}

// buckets builds the start table: about two points per bucket.
func (r *Ring) buckets() {
	bits := uint(1)
	for bits < maxBucketBits && 1<<bits < len(r.values) {
		bits++
	}
	r.shift = 32 - bits
	r.start = make([]int32, 1<<bits+1)
	i := 0
	for b := range 1 << bits {
		for i < len(r.values) && r.values[i]>>r.shift < uint32(b) {
			i++
		}
		r.start[b] = int32(i)
	}
	r.start[1<<bits] = int32(len(r.values))
}

// Len is the number of slots on the continuum: ketama points, modula
// weight units, or live servers for random.
func (r *Ring) Len() int { return len(r.index) }

// Pick returns the index, into the nodes given to Build, of the server
// for key hash h, or -1 when no server is live. Random ignores h.
func (r *Ring) Pick(h uint32) int {
	n := len(r.index)
	if n == 0 {
		return -1
	}
	switch r.kind {
	case distKetama:
		// First point with value >= h, wrapping past the end
		// (ketama_dispatch). It lies in h's bucket or is the first point
		// of the next one.
		b := h >> r.shift
		lo, hi := int(r.start[b]), int(r.start[b+1])
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if r.values[mid] < h {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		if lo == n {
			lo = 0
		}
		return int(r.index[lo])
	case distModula:
		return int(r.index[h%uint32(n)])
	default:
		return int(r.index[rand.Uint32N(uint32(n))])
	}
}
