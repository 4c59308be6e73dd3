// Package hashkittest holds what tests of placement share: the
// deterministic key set that pkg/hashkit's placements recorded from a real
// nutcracker were made with.
package hashkittest

import "fmt"

// GoldenKeys returns n deterministic keys mixing the shapes that stress
// placement: the empty key, hash tags in every form, binary and high-byte
// keys, long keys. testdata/nutcracker_placement.txt in pkg/hashkit was
// recorded with exactly these keys, so the generator must never change.
func GoldenKeys(n int) [][]byte {
	s := uint64(0x6e75746861746368) // splitmix64 state
	next := func() uint64 {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return z ^ z>>31
	}
	randBytes := func(n int, lo, span uint64) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(lo + next()%span)
		}
		return b
	}
	tagShapes := []string{"{}%d", "%d{", "}%d{x", "a{b}c%d", "{%d}", "x{y}z{%d}", "{{%d}}", "%d}{", "{%d", "k{}{%d}", "{%d}{z}"}
	keys := make([][]byte, n)
	for i := range keys {
		if i == 0 {
			keys[i] = []byte{}
			continue
		}
		switch i % 8 {
		case 0:
			keys[i] = fmt.Appendf(nil, "key:%d", i)
		case 1:
			keys[i] = fmt.Appendf(nil, "user:{%d}:field", next()%97)
		case 2:
			keys[i] = randBytes(1+int(next()%32), 0, 256)
		case 3:
			keys[i] = randBytes(1+int(next()%64), 33, 94)
		case 4:
			keys[i] = fmt.Appendf(nil, tagShapes[next()%uint64(len(tagShapes))], next()%1000)
		case 5:
			keys[i] = randBytes(100+int(next()%200), 33, 94)
		case 6:
			keys[i] = fmt.Appendf(nil, "object:%d:%d", next()%100000, i)
		case 7:
			keys[i] = randBytes(1+int(next()%7), 0x80, 0x80)
		}
	}
	return keys
}
