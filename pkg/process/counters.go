package process

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Client counts shared by the workers of a master (issue #23): so that a
// pool's client_connections holds across all workers, every worker admits
// a client with an atomic compare-and-swap on the pool's word in one
// shared memory segment (a memfd the master creates and passes to each
// worker with MsgInit, beside the listeners).
//
// The segment is a table of int64 words, one column per pool name and
// one row per worker:
//
//	row 0          the pool's clients over all workers: what the limit checks
//	row r (r ≥ 1)  the pool's clients of the one worker holding row r
//
// A worker adds to its own row after the total and takes from it before
// the total, so that its row is its share of the total. A worker that
// dies holding clients (kill -9) leaves its share in the total; the
// master, once it has reaped the worker, subtracts the share and zeroes
// the row before it respawns the slot, which reuses the row.
//
// Columns are kept by pool name for the master's lifetime and rows are
// given to a generation and taken back once all its workers have exited,
// so that a reload's new generation counts the clients the old one still
// drains: the limit holds through the overlap. Only when a reload needs
// more columns or rows than are free does its generation get a segment of
// its own, starting from zero.
type counterSegment struct {
	f      *os.File
	mem    []byte
	stride int            // columns per row
	nrows  int            // rows, the totals' included
	cols   map[string]int // pool name -> column
	used   []bool         // rows given to a generation
	gens   int            // generations holding rows
}

// CountersSpec tells a worker where its counters are in the segment
// attached to MsgInit after the listeners.
type CountersSpec struct {
	Size   int            `json:"size"`   // bytes to map
	Stride int            `json:"stride"` // columns per row
	Row    int            `json:"row"`    // the worker's own row (≥ 1)
	Pools  map[string]int `json:"pools"`  // pool name -> column
}

func newCounterSegment(pools, workers int) (*counterSegment, error) {
	s := &counterSegment{stride: 2*pools + 8, nrows: 1 + 4*workers + 8, cols: map[string]int{}}
	size := s.stride * s.nrows * 8
	page := os.Getpagesize()
	size = (size + page - 1) / page * page
	fd, err := unix.MemfdCreate("nuthatch-clients", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("process: memfd: %w", err)
	}
	s.f = os.NewFile(uintptr(fd), "nuthatch-clients")
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		s.f.Close()
		return nil, fmt.Errorf("process: memfd size: %w", err)
	}
	if s.mem, err = mapCounters(s.f, size); err != nil {
		s.f.Close()
		return nil, err
	}
	s.used = make([]bool, s.nrows)
	s.used[0] = true
	return s, nil
}

func mapCounters(f *os.File, size int) ([]byte, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("process: mmap counters: %w", err)
	}
	return mem, nil
}

// word is the counter at (row, col) of a mapping; mmap aligns the
// mapping to a page and every offset is a multiple of 8.
func word(mem []byte, stride, row, col int) *int64 {
	return (*int64)(unsafe.Pointer(&mem[(row*stride+col)*8]))
}

// reserve gives columns to the pools and n rows to a generation, or
// reports false (and changes nothing) when they do not fit.
func (s *counterSegment) reserve(pools []string, n int) ([]int, bool) {
	newCols := 0
	for _, p := range pools {
		if _, ok := s.cols[p]; !ok {
			newCols++
		}
	}
	var rows []int
	for r := 1; r < s.nrows && len(rows) < n; r++ {
		if !s.used[r] {
			rows = append(rows, r)
		}
	}
	if len(s.cols)+newCols > s.stride || len(rows) < n {
		return nil, false
	}
	for _, p := range pools {
		if _, ok := s.cols[p]; !ok {
			s.cols[p] = len(s.cols)
		}
	}
	for _, r := range rows {
		s.used[r] = true
	}
	s.gens++
	return rows, true
}

// release takes back a generation's rows, which retire has zeroed.
func (s *counterSegment) release(rows []int) {
	for _, r := range rows {
		s.used[r] = false
	}
	s.gens--
}

// retire subtracts an exited worker's share from the totals and zeroes
// its row; it returns the clients uncounted.
func (s *counterSegment) retire(row int) int64 {
	var n int64
	for c := range s.stride {
		if v := atomic.SwapInt64(word(s.mem, s.stride, row, c), 0); v != 0 {
			atomic.AddInt64(word(s.mem, s.stride, 0, c), -v)
			n += v
		}
	}
	return n
}

// total is a pool's count over all workers.
func (s *counterSegment) total(pool string) int64 {
	c, ok := s.cols[pool]
	if !ok {
		return 0
	}
	return atomic.LoadInt64(word(s.mem, s.stride, 0, c))
}

func (s *counterSegment) spec(pools []string, row int) *CountersSpec {
	cs := &CountersSpec{Size: len(s.mem), Stride: s.stride, Row: row, Pools: map[string]int{}}
	for _, p := range pools {
		cs.Pools[p] = s.cols[p]
	}
	return cs
}

func (s *counterSegment) close() {
	unix.Munmap(s.mem)
	s.f.Close()
}

// sharedCount is a pool's proxy.ClientCounter in a worker: the pool's
// total and the worker's own share, in the segment.
type sharedCount struct{ total, own *int64 }

// Acquire implements proxy.ClientCounter. A compare-and-swap, not an add
// undone when over: an add would refuse, for an instant, clients that fit.
func (c sharedCount) Acquire(limit int64) bool {
	for {
		n := atomic.LoadInt64(c.total)
		if limit > 0 && n >= limit {
			return false
		}
		if atomic.CompareAndSwapInt64(c.total, n, n+1) {
			break
		}
	}
	atomic.AddInt64(c.own, 1)
	return true
}

// Release implements proxy.ClientCounter.
func (c sharedCount) Release() {
	atomic.AddInt64(c.own, -1)
	atomic.AddInt64(c.total, -1)
}

// workerCounters maps the segment in a worker and returns each pool's
// counter. The mapping lives as long as the process.
func workerCounters(f *os.File, spec *CountersSpec) (map[string]sharedCount, error) {
	if spec.Row < 1 || spec.Stride < 1 || spec.Size < (spec.Row+1)*spec.Stride*8 {
		return nil, fmt.Errorf("process: bad counters spec %+v", spec)
	}
	mem, err := mapCounters(f, spec.Size)
	if err != nil {
		return nil, err
	}
	out := make(map[string]sharedCount, len(spec.Pools))
	for p, c := range spec.Pools {
		if c < 0 || c >= spec.Stride {
			return nil, fmt.Errorf("process: bad counters column %d for pool %s", c, p)
		}
		out[p] = sharedCount{total: word(mem, spec.Stride, 0, c), own: word(mem, spec.Stride, spec.Row, c)}
	}
	return out, nil
}
