package hashkit

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestHashApple ports test_hash_algorithms from twemproxy's src/test_all.c.
func TestHashApple(t *testing.T) {
	want := map[string]uint32{
		"one_at_a_time": 2297466611,
		"md5":           3195025439,
		"crc16":         3662830516,
		"crc32":         10542,
		"crc32a":        2838417488,
		"fnv1_32":       67176023,
		"fnv1a_32":      280767167,
		"fnv1_64":       473199127,
		"fnv1a_64":      1488911807,
		"hsieh":         3738850110,
		"jenkins":       1442444624,
		"murmur":        4142305122,
	}
	if len(want) != len(HashNames()) {
		t.Fatalf("golden table has %d hashes, package has %d", len(want), len(HashNames()))
	}
	for _, name := range HashNames() {
		fn, err := Hash(name)
		if err != nil {
			t.Fatalf("Hash(%q): %v", name, err)
		}
		if got := fn([]byte("apple")); got != want[name] {
			t.Errorf("%s(apple) = %d, want %d", name, got, want[name])
		}
	}
}

// TestKetamaPoints ports the ketama_hash vectors from src/test_all.c.
func TestKetamaPoints(t *testing.T) {
	d := md5.Sum([]byte("server1-8"))
	for _, tc := range []struct {
		align int
		want  uint32
	}{{0, 3853726576}, {3, 2667054752}} {
		if got := ketamaPoint(&d, tc.align); got != tc.want {
			t.Errorf("ketama_hash(server1-8, %d) = %d, want %d", tc.align, got, tc.want)
		}
	}
}

// TestHashVectors checks every hash against values produced by
// twemproxy's own C code (see the header of testdata/hash_vectors.txt):
// empty, short, tail-length, binary and high-byte keys.
func TestHashVectors(t *testing.T) {
	f, err := os.Open("testdata/hash_vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := HashNames()
	sc := bufio.NewScanner(f)
	rows := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 1+len(names) {
			t.Fatalf("bad line %q", line)
		}
		var key []byte
		if fields[0] != "-" {
			if key, err = hex.DecodeString(fields[0]); err != nil {
				t.Fatal(err)
			}
		}
		for i, name := range names {
			want, err := strconv.ParseUint(fields[1+i], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			fn, _ := Hash(name)
			if got := fn(key); got != uint32(want) {
				t.Errorf("%s(%x) = %d, want %d", name, key, got, want)
			}
		}
		rows++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rows < 50 {
		t.Fatalf("only %d vectors read", rows)
	}
}

func TestHashNames(t *testing.T) {
	want := []string{"one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64",
		"fnv1a_64", "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins"}
	if got := HashNames(); !slices.Equal(got, want) {
		t.Fatalf("HashNames() = %v, want %v", got, want)
	}
}

func TestHashUnknown(t *testing.T) {
	for _, name := range []string{"", "FNV1A_64", "fnv1a_64 ", "sha1", "crc"} {
		fn, err := Hash(name)
		if !errors.Is(err, ErrUnknownHash) || fn != nil {
			t.Errorf("Hash(%q) = %v, %v; want ErrUnknownHash", name, fn != nil, err)
		}
	}
}

// TestHashSignedChar pins the signed-char reading: a key with a high byte
// must differ from the same computation with the byte zero-extended.
func TestHashSignedChar(t *testing.T) {
	key := []byte{0x80}
	fn, _ := Hash("fnv1a_32")
	init, prime := uint32(fnv32Init), uint32(fnv32Prime)
	zeroExt := (init ^ 0x80) * prime
	signExt := (init ^ 0xffffff80) * prime
	if got := fn(key); got != signExt || got == zeroExt {
		t.Fatalf("fnv1a_32(0x80) = %d, want sign-extended %d", got, signExt)
	}
}

func TestHashZeroAlloc(t *testing.T) {
	key := []byte("user:{1234}:profile:with-a-longer-tail")
	for _, name := range HashNames() {
		fn, _ := Hash(name)
		if n := testing.AllocsPerRun(100, func() { fn(key) }); n != 0 {
			t.Errorf("%s allocates %.1f times per call", name, n)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	key := []byte("user:1234567:session:abcdef") // 27 bytes, a typical key
	for _, name := range HashNames() {
		fn, _ := Hash(name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(key)))
			var sink uint32
			for b.Loop() {
				sink += fn(key)
			}
			_ = sink
		})
	}
}
