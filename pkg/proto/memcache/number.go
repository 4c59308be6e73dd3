package memcache

import "math"

// The number parsers accept a subset of what memcached's safe_strto*
// accept (no '+', no surrounding whitespace, no silent truncation), so a
// request accepted here is never refused by the backend.

func parseUint64(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func parseUint32(b []byte) (uint32, bool) {
	v, ok := parseUint64(b)
	if !ok || v > math.MaxUint32 {
		return 0, false
	}
	return uint32(v), true
}

func parseInt32(b []byte) (int32, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	v, ok := parseUint64(b)
	if !ok {
		return 0, false
	}
	if neg {
		if v > -math.MinInt32 {
			return 0, false
		}
		return int32(-int64(v)), true
	}
	if v > math.MaxInt32 {
		return 0, false
	}
	return int32(v), true
}

// parseSize parses a reply's declared value length, refusing anything above
// limit before the caller could act on it.
func parseSize(b []byte, limit int) (int, bool) {
	v, ok := parseUint64(b)
	if !ok || v > uint64(limit) {
		return 0, false
	}
	return int(v), true
}
