package hashkit

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// HashFunc hashes a key to the 32-bit value twemproxy's distributions
// consume. Implementations never allocate and never retain key.
type HashFunc func(key []byte) uint32

// hashes is in twemproxy's HASH_CODEC order (src/hashkit/nc_hashkit.h).
var hashes = [...]struct {
	name string
	fn   HashFunc
}{
	{"one_at_a_time", oneAtATime},
	{"md5", md5Hash},
	{"crc16", crc16},
	{"crc32", crc32Memcached},
	{"crc32a", crc32.ChecksumIEEE},
	{"fnv1_64", fnv1_64},
	{"fnv1a_64", fnv1a_64},
	{"fnv1_32", fnv1_32},
	{"fnv1a_32", fnv1a_32},
	{"hsieh", hsieh},
	{"murmur", murmur},
	{"jenkins", jenkins},
}

// Hash returns the hash function twemproxy configures with name (the
// pool's "hash:" value). Names are matched exactly, as twemproxy does.
func Hash(name string) (HashFunc, error) {
	for _, h := range hashes {
		if h.name == name {
			return h.fn, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownHash, name)
}

// HashNames lists the hash names in twemproxy's order.
func HashNames() []string {
	names := make([]string, len(hashes))
	for i, h := range hashes {
		names[i] = h.name
	}
	return names
}

// sext widens a byte the way C's (uint32_t)(char)b does on amd64, where
// char is signed. Several of twemproxy's hashes read keys through a plain
// char pointer, so bytes >= 0x80 contribute 0xffffff80 and up.
func sext(b byte) uint32 { return uint32(int32(int8(b))) }

func oneAtATime(key []byte) uint32 {
	var v uint32
	for _, b := range key {
		v += sext(b)
		v += v << 10
		v ^= v >> 6
	}
	v += v << 3
	v ^= v >> 11
	v += v << 15
	return v
}

// md5Hash is the little-endian first word of the key's MD5 digest.
func md5Hash(key []byte) uint32 {
	d := md5.Sum(key)
	return binary.LittleEndian.Uint32(d[:4])
}

// ketamaPoint is word i (0..3) of the MD5 digest of s, little-endian:
// twemproxy's ketama_hash.
func ketamaPoint(d *[md5.Size]byte, i int) uint32 {
	return binary.LittleEndian.Uint32(d[4*i : 4*i+4])
}

// crc16Table is the CRC-16/XMODEM table (polynomial 0x1021) that
// twemproxy's nc_crc16.c spells out literally.
var crc16Table = func() (t [256]uint32) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = uint32(c)
	}
	return t
}()

// crc16 keeps a 32-bit accumulator that is never masked to 16 bits, so
// results exceed 0xffff; twemproxy returns it as is.
func crc16(key []byte) uint32 {
	var crc uint32
	for _, b := range key {
		crc = crc<<8 ^ crc16Table[(crc>>8^uint32(b))&0xff]
	}
	return crc
}

// crc32Memcached is libmemcached's "crc32": bits 16..30 of the standard
// CRC-32.
func crc32Memcached(key []byte) uint32 {
	return crc32.ChecksumIEEE(key) >> 16 & 0x7fff
}

const (
	fnv64Init  = 0xcbf29ce484222325
	fnv64Prime = 0x100000001b3
	fnv32Init  = 2166136261
	fnv32Prime = 16777619
)

func fnv1_64(key []byte) uint32 {
	h := uint64(fnv64Init)
	for _, b := range key {
		h *= fnv64Prime
		h ^= uint64(int64(int8(b)))
	}
	return uint32(h)
}

// fnv1a_64 is twemproxy's: 64-bit constants truncated to 32 bits, 32-bit
// arithmetic throughout.
func fnv1a_64(key []byte) uint32 {
	h := uint32(fnv64Init & 0xffffffff)
	for _, b := range key {
		h ^= sext(b)
		h *= uint32(fnv64Prime & 0xffffffff)
	}
	return h
}

func fnv1_32(key []byte) uint32 {
	h := uint32(fnv32Init)
	for _, b := range key {
		h *= fnv32Prime
		h ^= sext(b)
	}
	return h
}

func fnv1a_32(key []byte) uint32 {
	h := uint32(fnv32Init)
	for _, b := range key {
		h ^= sext(b)
		h *= fnv32Prime
	}
	return h
}

func get16(b []byte) uint32 { return uint32(b[1])<<8 | uint32(b[0]) }

func hsieh(key []byte) uint32 {
	if len(key) == 0 {
		return 0
	}
	var h uint32
	rem := len(key) & 3
	for len(key) >= 4 {
		h += get16(key)
		tmp := get16(key[2:])<<11 ^ h
		h = h<<16 ^ tmp
		key = key[4:]
		h += h >> 11
	}
	switch rem {
	case 3:
		h += get16(key)
		h ^= h << 16
		h ^= sext(key[2]) << 18 // plain char in the C code
		h += h >> 11
	case 2:
		h += get16(key)
		h ^= h << 11
		h += h >> 17
	case 1:
		h += uint32(key[0])
		h ^= h << 10
		h += h >> 1
	}
	h ^= h << 3
	h += h >> 5
	h ^= h << 4
	h += h >> 17
	h ^= h << 25
	h += h >> 6
	return h
}

func murmur(key []byte) uint32 {
	const m = 0x5bd1e995
	n := uint32(len(key))
	h := 0xdeadbeef*n ^ n
	for len(key) >= 4 {
		k := binary.LittleEndian.Uint32(key)
		k *= m
		k ^= k >> 24
		k *= m
		h *= m
		h ^= k
		key = key[4:]
	}
	switch len(key) {
	case 3:
		h ^= uint32(key[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(key[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(key[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

func rotl(x uint32, k uint) uint32 { return x<<k | x>>(32-k) }

// jenkins is Bob Jenkins' lookup3 hashlittle with initval 13. twemproxy
// has three code paths chosen by pointer alignment; on little-endian
// machines they all equal this byte-wise one.
func jenkins(key []byte) uint32 {
	a := 0xdeadbeef + uint32(len(key)) + 13
	b, c := a, a
	for len(key) > 12 {
		a += binary.LittleEndian.Uint32(key)
		b += binary.LittleEndian.Uint32(key[4:])
		c += binary.LittleEndian.Uint32(key[8:])
		a -= c
		a ^= rotl(c, 4)
		c += b
		b -= a
		b ^= rotl(a, 6)
		a += c
		c -= b
		c ^= rotl(b, 8)
		b += a
		a -= c
		a ^= rotl(c, 16)
		c += b
		b -= a
		b ^= rotl(a, 19)
		a += c
		c -= b
		c ^= rotl(b, 4)
		b += a
		key = key[12:]
	}
	if len(key) == 0 {
		return c
	}
	// Last block, 1..12 bytes, little-endian into a, b, c.
	var tail [12]byte
	copy(tail[:], key)
	a += binary.LittleEndian.Uint32(tail[0:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	c ^= b
	c -= rotl(b, 14)
	a ^= c
	a -= rotl(c, 11)
	b ^= a
	b -= rotl(a, 25)
	c ^= b
	c -= rotl(b, 16)
	a ^= c
	a -= rotl(c, 4)
	b ^= a
	b -= rotl(a, 14)
	c ^= b
	c -= rotl(b, 24)
	return c
}
