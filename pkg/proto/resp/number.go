package resp

// maxNumLen is the longest decimal accepted in a count line. redis's
// string2ll rejects strings of LONG_STR_SIZE (21) bytes or more.
const maxNumLen = 20

// parseLL parses b exactly like redis's string2ll: an optional '-', no '+',
// no leading zeros (so "-0" and "01" are invalid), no spaces, int64 range.
func parseLL(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > maxNumLen {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1)/10 {
			return 0, false
		}
		v *= 10
		if v > 1<<64-1-d {
			return 0, false
		}
		v += d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true // -(1<<63) wraps to MinInt64 as intended
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}
