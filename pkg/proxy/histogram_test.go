package proxy

import "testing"

func TestHistogramBuckets(t *testing.T) {
	var h histogram
	for _, us := range []int64{-5, 0, 50, 51, 100, 999, 1000, 1001, 20_000_000} {
		h.observe(us)
	}
	s := h.snapshot()
	want := map[int]uint64{0: 3, 1: 2, 4: 2, 5: 1, 17: 1}
	for i, c := range s.Counts {
		if c != want[i] {
			t.Errorf("bucket %d = %d, want %d", i, c, want[i])
		}
	}
	if s.Count() != 9 {
		t.Errorf("count %d", s.Count())
	}
}

func TestHistogramQuantileAndAdd(t *testing.T) {
	var a, b histogram
	for i := 0; i < 99; i++ {
		a.observe(80) // bucket <=100
	}
	b.observe(40_000) // bucket <=50ms
	s := a.snapshot()
	s.Add(b.snapshot())
	if got := s.Quantile(0.5); got != 100 {
		t.Errorf("p50 = %d", got)
	}
	if got := s.Quantile(0.99); got != 50_000 {
		t.Errorf("p99 = %d", got)
	}
	if got := s.Quantile(0.999); got != 50_000 {
		t.Errorf("p99.9 = %d", got)
	}
	if (HistogramSnapshot{}).Quantile(0.5) != 0 {
		t.Error("empty histogram")
	}
}
