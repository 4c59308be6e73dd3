package acl

// Match reports whether s matches the glob pattern as redis's
// stringmatchlen (util.c, 7.0) decides it, case-sensitively: '*', '?',
// '[...]' with '^' negation, ranges and '\' escapes. It follows redis's
// quirks too: an unterminated '[' class is closed at the pattern's end,
// a reversed range is swapped, and range bounds compare as signed chars.
// Like redis it gives up on longer matches of earlier '*'s once the rest
// of the pattern matched nowhere, so that hostile patterns stay linear.
func Match(pattern, s []byte) bool {
	skip := false
	return match(pattern, s, &skip, 0)
}

// maxNesting bounds the recursion (one level per '*'); a pattern is
// bounded by the config, a key by the request limits, but the stack
// should not depend on that.
const maxNesting = 1000

func match(p, s []byte, skipLonger *bool, depth int) bool {
	if depth > maxNesting {
		return false
	}
	at := func(b []byte, i int) byte { // the C string's NUL past the end
		if i < len(b) {
			return b[i]
		}
		return 0
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && at(p, 1) == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if match(p[1:], s, skipLonger, depth+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			p = p[1:]
			not := at(p, 0) == '^'
			if not {
				p = p[1:]
			}
			matched := false
			for {
				if at(p, 0) == '\\' && len(p) >= 2 {
					p = p[1:]
					if p[0] == s[0] {
						matched = true
					}
				} else if at(p, 0) == ']' && len(p) > 0 {
					break
				} else if len(p) == 0 {
					// Unterminated: redis steps back so that the step
					// below leaves the pattern empty.
					p = nil
					break
				} else if len(p) >= 3 && p[1] == '-' {
					lo, hi := int(int8(p[0])), int(int8(p[2]))
					if lo > hi {
						lo, hi = hi, lo
					}
					c := int(int8(s[0]))
					p = p[2:]
					if c >= lo && c <= hi {
						matched = true
					}
				} else if p[0] == s[0] {
					matched = true
				}
				p = p[1:]
			}
			if not {
				matched = !matched
			}
			if !matched {
				return false
			}
			s = s[1:]
			if p == nil {
				// The class ran to the end: the pattern is used up.
				if len(s) == 0 {
					return true
				}
				return false
			}
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}
