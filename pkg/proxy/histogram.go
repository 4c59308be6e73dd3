package proxy

import (
	"sort"
	"sync/atomic"
)

// LatencyBounds are the upper bounds, in microseconds, of the latency
// histogram buckets; a last bucket takes everything above. Fixed so that
// the histograms of all workers add up bucket by bucket.
var LatencyBounds = []int64{
	50, 100, 250, 500,
	1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
	1_000_000, 2_500_000, 5_000_000, 10_000_000,
}

// histogram counts latencies without locks.
type histogram struct {
	counts [18]atomic.Uint64 // len(LatencyBounds)+1
	sumUs  atomic.Uint64
}

func (h *histogram) observe(us int64) {
	if us < 0 {
		us = 0
	}
	i := sort.Search(len(LatencyBounds), func(i int) bool { return LatencyBounds[i] >= us })
	h.counts[i].Add(1)
	h.sumUs.Add(uint64(us))
}

// HistogramSnapshot is a histogram's buckets: Counts[i] counts latencies
// <= LatencyBounds[i] (and above the previous bound); the last entry counts
// those above every bound.
type HistogramSnapshot struct {
	Counts []uint64 `json:"counts"`
	SumUs  uint64   `json:"sum_us"`
}

func (h *histogram) snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Counts: make([]uint64, len(h.counts)), SumUs: h.sumUs.Load()}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	return s
}

// Add adds o into s, bucket by bucket.
func (s *HistogramSnapshot) Add(o HistogramSnapshot) {
	if len(s.Counts) < len(o.Counts) {
		s.Counts = append(s.Counts, make([]uint64, len(o.Counts)-len(s.Counts))...)
	}
	for i, c := range o.Counts {
		s.Counts[i] += c
	}
	s.SumUs += o.SumUs
}

// Count is the number of observations.
func (s HistogramSnapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Quantile estimates the q-quantile in microseconds: the upper bound of the
// bucket that holds it (the last bound for the overflow bucket).
func (s HistogramSnapshot) Quantile(q float64) int64 {
	total := s.Count()
	if total == 0 {
		return 0
	}
	rank := uint64(q * float64(total))
	if rank >= total {
		rank = total - 1
	}
	var seen uint64
	for i, c := range s.Counts {
		seen += c
		if seen > rank {
			if i < len(LatencyBounds) {
				return LatencyBounds[i]
			}
			break
		}
	}
	return LatencyBounds[len(LatencyBounds)-1]
}
