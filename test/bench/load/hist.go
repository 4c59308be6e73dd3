package load

import (
	"math/bits"
	"time"
)

// Histogram records latencies in nanoseconds in log-linear buckets: exact
// below 1024 ns, then 512 buckets per power of two (relative error under
// 0.2%). Recording is a shift and an increment; it is not safe for
// concurrent use (each connection has its own, merged at the end).
type Histogram struct {
	counts [histBuckets]uint64
	total  uint64
	max    int64
}

const (
	histSubBits = 9 // 512 sub-buckets per octave
	histSub     = 1 << histSubBits
	histBuckets = 48 * histSub // up to 2^48 ns (about 78 hours)
)

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 2*histSub {
		return int(u)
	}
	shift := bits.Len64(u) - (histSubBits + 1)
	i := shift*histSub + int(u>>uint(shift))
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketLow is the smallest value that falls into bucket i.
func bucketLow(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	return int64(i-shift*histSub) << uint(shift)
}

// bucketHigh is the largest value that falls into bucket i.
func bucketHigh(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	return bucketLow(i) + (int64(1) << uint(shift)) - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.total++
	if int64(d) > h.max {
		h.max = int64(d)
	}
}

// Count is the number of recorded latencies.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest recorded latency.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// CountAtLeast is the number of recorded latencies of d or more, to the
// histogram's resolution: the bucket holding d counts whole, so that no
// latency of d or more is missed.
func (h *Histogram) CountAtLeast(d time.Duration) uint64 {
	var n uint64
	for _, c := range h.counts[bucketOf(int64(d)):] {
		n += c
	}
	return n
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// Quantile returns the latency at or below which a fraction q of the
// recorded latencies fall (the middle of that bucket), 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	// The rank of the wanted sample, 1-based: ceil(q*total).
	rank := uint64(q * float64(h.total))
	if float64(rank) < q*float64(h.total) {
		rank++
	}
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			mid := (bucketLow(i) + bucketHigh(i)) / 2
			return time.Duration(min(mid, h.max))
		}
	}
	return time.Duration(h.max)
}
