package hashkit

import (
	"bytes"
	"testing"
)

func TestHashTagKey(t *testing.T) {
	for _, tc := range []struct {
		key, tag, want string
	}{
		{"user:{42}:profile", "{}", "42"},
		{"{42}", "{}", "42"},
		{"{a}{b}", "{}", "a"},        // first tag section wins
		{"a{}b{c}", "{}", "a{}b{c}"}, // empty first section: whole key, no second try
		{"a{b", "{}", "a{b"},         // no closing tag
		{"a}b{c", "{}", "a}b{c"},     // closing tag only before the opening one
		{"a}b{c}", "{}", "c"},        // closing searched after the opening one
		{"{{x}}", "{}", "{x"},        // first '{', then first '}' after it
		{"nobraces", "{}", "nobraces"},
		{"", "{}", ""},
		{"$abc$def", "$$", "abc"},      // same byte opens and closes
		{"$$abc", "$$", "$$abc"},       // adjacent: empty section
		{"key", "", "key"},             // no hash_tag configured
		{"a{b}c", "{", "a{b}c"},        // invalid one-byte tag: no tagging
		{"x\x00{\xff}y", "{}", "\xff"}, // binary keys
		{"k[1]:{2}", "[]", "1"},
		{"k:{}", "{}", "k:{}"},
		{"{}{x}", "{}", "{}{x}"},
		{"pre{mid}post{", "{}", "mid"},
		{"}}}{}}}", "{}", "}}}{}}}"},
		{"a{bc}d", "{}xyz", "bc"}, // only the first two bytes count
	} {
		got := HashTagKey([]byte(tc.key), tc.tag)
		if string(got) != tc.want {
			t.Errorf("HashTagKey(%q, %q) = %q, want %q", tc.key, tc.tag, got, tc.want)
		}
	}
}

func TestHashTagKeyAliases(t *testing.T) {
	key := []byte("user:{42}:profile")
	got := HashTagKey(key, "{}")
	if &got[0] != &key[6] {
		t.Fatal("result does not alias the key")
	}
	if n := testing.AllocsPerRun(100, func() { HashTagKey(key, "{}") }); n != 0 {
		t.Fatalf("HashTagKey allocates %.1f times", n)
	}
}

// refHashTag follows server_pool_idx literally, with indices instead of
// pointers.
func refHashTag(key []byte, open, close byte) []byte {
	start := -1
	for i, b := range key {
		if b == open {
			start = i
			break
		}
	}
	if start < 0 {
		return key
	}
	end := -1
	for i := start + 1; i < len(key); i++ {
		if key[i] == close {
			end = i
			break
		}
	}
	if end < 0 || end-start <= 1 {
		return key
	}
	return key[start+1 : end]
}

func FuzzHashTagKey(f *testing.F) {
	for _, seed := range []string{"", "{}", "a{b}c", "{a}{b}", "a{}b{c}", "a{b", "}{", "$a$", "{{}}"} {
		f.Add([]byte(seed), byte('{'), byte('}'))
	}
	f.Add([]byte("$abc$"), byte('$'), byte('$'))
	f.Fuzz(func(t *testing.T, key []byte, open, close byte) {
		tag := string([]byte{open, close})
		got := HashTagKey(key, tag)
		want := refHashTag(key, open, close)
		if !bytes.Equal(got, want) {
			t.Fatalf("HashTagKey(%q, %q) = %q, want %q", key, tag, got, want)
		}
		if len(got) > 0 && len(key) > 0 {
			// Must be a window into key, never a copy.
			off := bytes.Index(key, got)
			if off < 0 || cap(got) > cap(key) {
				t.Fatalf("result %q is not a subslice of %q", got, key)
			}
		}
	})
}
