package hashkit

import (
	"testing"
)

func mustPlacer(t testing.TB, hash, tag, dist string, nodes []Node, live []bool) *Placer {
	t.Helper()
	fn, err := Hash(hash)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Build(dist, nodes, live)
	if err != nil {
		t.Fatal(err)
	}
	return &Placer{Hash: fn, HashTag: tag, Ring: r}
}

func TestPlacer(t *testing.T) {
	nodes := []Node{{"127.0.0.1:6379", 1}, {"alpha", 3}, {"127.0.0.2", 2}, {"127.0.0.1:6381", 5}}
	p := mustPlacer(t, "fnv1a_64", "{}", Ketama, nodes, nil)
	fn, _ := Hash("fnv1a_64")
	for _, key := range []string{"a", "user:{42}:x", "{}", "bar{baz}"} {
		h := fn(HashTagKey([]byte(key), "{}"))
		if got, want := p.Server([]byte(key)), p.Ring.Pick(h); got != want {
			t.Errorf("Server(%q) = %d, want %d", key, got, want)
		}
	}
	// Keys sharing a tag share a server.
	if a, b := p.Server([]byte("{user1}:name")), p.Server([]byte("{user1}:mail")); a != b {
		t.Errorf("tagged keys split across %d and %d", a, b)
	}
	// An empty key hashes to 0 whatever the hash function says.
	if got, want := p.Server(nil), p.Ring.Pick(0); got != want {
		t.Errorf("Server(empty) = %d, want Pick(0) = %d", got, want)
	}
	if fn(nil) == 0 {
		t.Fatal("test needs a hash whose empty-key value is not 0")
	}
}

func TestPlacerSingleServer(t *testing.T) {
	for _, dist := range DistributionNames() {
		p := mustPlacer(t, "md5", "", dist, []Node{{"only", 3}}, nil)
		for _, k := range []string{"", "a", "b", "c"} {
			if got := p.Server([]byte(k)); got != 0 {
				t.Errorf("%s: Server(%q) = %d, want 0", dist, k, got)
			}
		}
		p = mustPlacer(t, "md5", "", dist, []Node{{"only", 3}}, []bool{false})
		if got := p.Server([]byte("a")); got != -1 {
			t.Errorf("%s: ejected single server: Server = %d, want -1", dist, got)
		}
	}
	var zero Placer
	if got := zero.Server([]byte("a")); got != -1 {
		t.Errorf("zero Placer: Server = %d, want -1", got)
	}
}

func TestPlacerZeroAlloc(t *testing.T) {
	nodes := []Node{{"a", 1}, {"b", 2}, {"c", 3}}
	key := []byte("user:{1234}:profile")
	for _, dist := range DistributionNames() {
		p := mustPlacer(t, "fnv1a_64", "{}", dist, nodes, nil)
		if n := testing.AllocsPerRun(100, func() { p.Server(key) }); n != 0 {
			t.Errorf("%s: Server allocates %.1f times", dist, n)
		}
	}
}

func BenchmarkPlacerServer(b *testing.B) {
	nodes := []Node{{"127.0.0.1:6379", 1}, {"127.0.0.1:6380", 1}, {"127.0.0.1:6381", 1}, {"127.0.0.1:6382", 1}}
	p := mustPlacer(b, "fnv1a_64", "{}", Ketama, nodes, nil)
	key := []byte("user:{1234567}:session")
	b.ReportAllocs()
	for b.Loop() {
		p.Server(key)
	}
}
