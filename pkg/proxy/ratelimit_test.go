package proxy

import "testing"

func TestRateLimiter(t *testing.T) {
	r := rateLimiter{limit: 3}
	sec := int64(5e9)
	for i := 0; i < 3; i++ {
		if !r.allow(sec + int64(i)) {
			t.Fatalf("event %d refused", i)
		}
	}
	if r.allow(sec + 10) {
		t.Fatal("4th event in one second allowed")
	}
	r.undo()
	if !r.allow(sec + 11) {
		t.Fatal("given-back event not allowed")
	}
	if !r.allow(sec + 1e9) {
		t.Fatal("next second refused")
	}
}
