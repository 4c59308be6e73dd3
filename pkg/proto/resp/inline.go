package resp

// splitArgs splits an inline command line like redis's sdssplitargs:
// arguments are separated by whitespace; "double quotes" accept \xHH and
// \n \r \t \b \a escapes (any other escaped byte stands for itself);
// 'single quotes' accept only \'; a closing quote must be followed by
// whitespace or the end of the line. The unescaped arguments are appended to
// out (which must have capacity for len(line) bytes so that it is never
// reallocated) and located by spans. It reports false for unbalanced quotes.
//
// sdssplitargs works on a C string and stops at a NUL byte; redis never
// passes it one because it finds the line end with strchr. Here NUL is an
// ordinary byte.
func splitArgs(line, out []byte, spans []span) ([]byte, []span, bool) {
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return out, spans, true
		}
		start := len(out)
		inq, insq := false, false
		for done := false; !done; {
			end := i == len(line)
			var c byte
			if !end {
				c = line[i]
			}
			switch {
			case inq:
				switch {
				case end:
					return out, spans, false // unterminated quotes
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					out = append(out, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 3
				case c == '\\' && i+1 < len(line):
					i++
					out = append(out, unescape(line[i]))
				case c == '"':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return out, spans, false
					}
					done = true
				default:
					out = append(out, c)
				}
			case insq:
				switch {
				case end:
					return out, spans, false
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					i++
					out = append(out, '\'')
				case c == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return out, spans, false
					}
					done = true
				default:
					out = append(out, c)
				}
			default:
				switch {
				case end, c == ' ', c == '\n', c == '\r', c == '\t':
					done = true
				case c == '"':
					inq = true
				case c == '\'':
					insq = true
				default:
					out = append(out, c)
				}
			}
			if !end {
				i++
			}
		}
		spans = append(spans, span{start, len(out) - start})
	}
}

// isSpace is C isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}
