package memcache

// metaFlags is the outcome of memcached's _meta_flag_preparse.
type metaFlags struct {
	quiet  bool
	base64 bool
	mode   byte
	opaque []byte
	// errMsg is the last error text memcached would report; failed is set
	// when any flag was bad.
	errMsg string
	failed bool
}

// preparseMeta walks the flag tokens exactly like memcached 1.6.18's
// _meta_flag_preparse: a duplicate or unknown flag stops at once, other bad
// tokens are remembered (the last message wins) and parsing continues.
func (p *RequestParser) preparseMeta(flags [][]byte) metaFlags {
	r := &p.req
	var mf metaFlags
	mf.errMsg = msgBadFormat
	var seen [127]bool
	for _, tok := range flags {
		o := tok[0]
		if o >= 127 || seen[o] {
			mf.errMsg, mf.failed = msgDupFlag, true
			return mf
		}
		seen[o] = true
		arg := tok[1:]
		switch o {
		case 'b':
			n, ok := decodeBase64Key(r.keyBuf, r.Args[1])
			if !ok {
				mf.errMsg, mf.failed = msgDecodeKey, true
			}
			r.decoded = r.keyBuf[:n:n]
			mf.base64 = true
		case 'N', 'T', 'R':
			if _, ok := parseInt32(arg); !ok {
				mf.errMsg, mf.failed = msgBadToken, true
			}
		case 'F':
			// memcached flags the failure without changing the message.
			if _, ok := parseUint32(arg); !ok {
				mf.failed = true
			}
		case 'C':
			if _, ok := parseUint64(arg); !ok {
				mf.errMsg, mf.failed = msgBadToken, true
			}
		case 'M':
			if len(tok) != 2 {
				mf.errMsg, mf.failed = msgMLength, true
			} else {
				mf.mode = tok[1]
			}
		case 'J':
			if _, ok := parseUint64(arg); !ok {
				mf.errMsg, mf.failed = msgBadInitial, true
			}
		case 'D':
			if _, ok := parseUint64(arg); !ok {
				mf.errMsg, mf.failed = msgBadDeltaValue, true
			}
		case 'q':
			mf.quiet = true
		case 'O':
			mf.opaque = arg
		case 'l', 'P', 'L', 'k', 's', 't', 'c', 'f', 'v', 'h', 'u', 'I':
		default:
			mf.errMsg, mf.failed = msgInvalidFlag, true
			return mf
		}
	}
	return mf
}

// opaqueTooLong reports an O token longer than memcached accepts (it counts
// the 'O').
func opaqueTooLong(flags [][]byte) bool {
	for _, tok := range flags {
		if tok[0] == 'O' && len(tok) > maxOpaqueLen {
			return true
		}
	}
	return false
}

func (p *RequestParser) applyMeta(mf metaFlags, flags [][]byte) {
	r := &p.req
	r.Keys = r.Args[1:2]
	r.Flags = flags
	r.Opaque = mf.opaque
	r.Base64Key = mf.base64
	if mf.quiet {
		r.Noreply = true
		for i, tok := range flags {
			if tok[0] == 'q' {
				r.dropArg = len(r.Args) - len(flags) + i
				break
			}
		}
	}
}

// parseMeta handles mg, md and ma, which share everything but error texts
// and modes.
func (p *RequestParser) parseMeta(lineLen int) *Error {
	r := &p.req
	args := r.Args
	if len(args) < 2 {
		return errUnknown(lineLen)
	}
	if len(args[1]) > p.lim.MaxKeyLen {
		return errClient(msgBadFormat, lineLen, false)
	}
	if len(args) > maxMetaTokens {
		if r.Cmd == CmdMetaGet {
			return errClient(msgMgFlagsTooLong, lineLen, false)
		}
		return errClient(msgFlagsTooLong, lineLen, false)
	}
	flags := args[2:]
	mf := p.preparseMeta(flags)
	if mf.failed {
		if r.Cmd == CmdMetaGet {
			return errClient(mf.errMsg, lineLen, false)
		}
		return errClient(msgInvalidOrDup, lineLen, false)
	}
	if r.Cmd == CmdMetaArithmetic {
		switch mf.mode {
		case 0, 'I', '+', 'D', '-':
		default:
			return errClient(msgBadMaMode, lineLen, false)
		}
	}
	if opaqueTooLong(flags) {
		return errClient(msgOpaqueTooLong, lineLen, false)
	}
	p.applyMeta(mf, flags)
	return nil
}

func (p *RequestParser) parseMetaSet(buf []byte, lineLen int) (int, *Request, int, error) {
	r := &p.req
	args := r.Args
	if len(args) < 2 {
		return 0, nil, 0, errUnknown(lineLen)
	}
	if len(args[1]) > p.lim.MaxKeyLen || len(args) == 2 {
		return 0, nil, 0, errClient(msgBadFormat, lineLen, false)
	}
	if len(args) > maxMetaTokens {
		return 0, nil, 0, errClient(msgFlagsTooLong, lineLen, false)
	}
	vlen, ok := parseInt32(args[2])
	if !ok || vlen < 0 || vlen > maxValueLen {
		return 0, nil, 0, errClient(msgBadFormat, lineLen, false)
	}
	// From here on memcached swallows the value block on error.
	total := lineLen + int(vlen) + 2
	flags := args[3:]
	mf := p.preparseMeta(flags)
	if mf.failed {
		return 0, nil, 0, errClient(mf.errMsg, total, false)
	}
	switch mf.mode {
	case 0, 'E', 'A', 'P', 'R', 'S':
	default:
		return 0, nil, 0, errClient(msgBadMsMode, total, false)
	}
	if opaqueTooLong(flags) {
		return 0, nil, 0, errClient(msgOpaqueTooLong, total, false)
	}
	p.applyMeta(mf, flags)
	return p.finishValue(buf, lineLen, int(vlen), r.Noreply)
}

// parseMetaDebug handles "me <key> [b]": memcached looks only at an exact
// "b" in the third position.
func (p *RequestParser) parseMetaDebug(lineLen int) *Error {
	r := &p.req
	args := r.Args
	if len(args) < 2 || len(args[1]) > p.lim.MaxKeyLen {
		return errClient(msgBadFormat, lineLen, false)
	}
	if len(args) >= 3 && string(args[2]) == "b" {
		n, ok := decodeBase64Key(r.keyBuf, args[1])
		if !ok {
			return errClient(msgBadFormat, lineLen, false)
		}
		r.decoded = r.keyBuf[:n:n]
		r.Base64Key = true
	}
	r.Keys = args[1:2]
	r.Flags = args[2:]
	return nil
}
