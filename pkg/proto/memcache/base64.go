package memcache

const b64Invalid = 0x80

// b64Table follows memcached's base64.c decode table: the standard alphabet,
// '=' decoding as zero, everything else skipped.
var b64Table = func() (t [256]byte) {
	for i := range t {
		t[i] = b64Invalid
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	t['='] = 0
	return t
}()

// decodeBase64Key decodes a meta key the way memcached 1.6.18's
// base64_decode does, so the proxy hashes the same bytes the server stores:
// characters outside the alphabet are ignored, the count of the others must
// be a non-zero multiple of four, and decoding stops at the first padded
// block. It reports false where memcached returns 0 (a decode failure).
func decodeBase64Key(dst, src []byte) (int, bool) {
	count := 0
	for _, c := range src {
		if b64Table[c] != b64Invalid {
			count++
		}
	}
	if count == 0 || count%4 != 0 || count/4*3 > len(dst) {
		return 0, false
	}
	var block [4]byte
	n, pos, pad := 0, 0, 0
	for _, c := range src {
		v := b64Table[c]
		if v == b64Invalid {
			continue
		}
		if c == '=' {
			pad++
		}
		block[n] = v
		n++
		if n < 4 {
			continue
		}
		dst[pos] = block[0]<<2 | block[1]>>4
		dst[pos+1] = block[1]<<4 | block[2]>>2
		dst[pos+2] = block[2]<<6 | block[3]
		pos += 3
		n = 0
		if pad > 0 {
			switch pad {
			case 1:
				pos--
			case 2:
				pos -= 2
			default:
				return 0, false
			}
			break
		}
	}
	return pos, pos > 0
}
