// Package load is nuthatch's load generator: Redis and memcached clients
// over raw sockets, closed-loop (N clients, each keeping a fixed pipeline
// depth) or open-loop at a fixed rate, with latencies in a log-linear
// histogram.
//
// In fixed-rate runs a request's latency is measured from the time it was
// scheduled to be sent, not from when it was actually written, so a server
// that stalls is charged for every request that queued behind the stall
// (no coordinated omission, as in wrk2).
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Protocol is the wire protocol spoken.
type Protocol string

// Protocols.
const (
	Redis    Protocol = "redis"
	Memcache Protocol = "memcache"
)

// Op is the request sent.
type Op string

// Operations. MGet is MGET for Redis and a multi-key get for memcached.
const (
	Get  Op = "get"
	Set  Op = "set"
	MGet Op = "mget"
)

// Spec describes one run.
type Spec struct {
	Protocol Protocol
	Op       Op
	// Addrs are dialled round-robin: client i connects to Addrs[i%len].
	Addrs   []string
	Clients int
	// Pipeline is how many requests each client keeps in flight in a
	// closed-loop run (1 = unpipelined).
	Pipeline int
	// Rate > 0 makes an open-loop run at Rate requests/s over all clients.
	Rate float64
	// ValueSize is the value length of a set.
	ValueSize int
	// Keys is the key space: keys are KeyName(KeyPrefix, 0..Keys-1),
	// picked uniformly at random.
	Keys      int
	KeyPrefix string
	// MultiKeys is the number of keys of an MGet.
	MultiKeys int
	// RESP3 makes each Redis connection send HELLO 3 before the load (the
	// reply must be a map) and so receive RESP3 replies: a GET miss is
	// then "_\r\n". Servers that do not speak RESP3 fail the run.
	RESP3 bool
	// Threads is the number of event loops (OS threads) of a closed-loop
	// run, clients spread over them; 0 means 1, as redis-benchmark.
	Threads int
	// Warmup runs before the measured window, Duration is the window.
	Warmup, Duration time.Duration
	// OnStart and OnStop, when set, are called at the start and at the
	// end of the measured window (to sample the server's CPU time).
	OnStart, OnStop func()
}

// Result is what one run measured over its window.
type Result struct {
	// Requests completed that were sent inside the window.
	Requests uint64
	Errors   uint64 // error replies among them
	Misses   uint64 // nil / END-only replies among them
	Elapsed  time.Duration
	Latency  *Histogram
	// Lag is, in fixed-rate runs, how late each request was written
	// compared with its schedule: the generator's own floor.
	Lag *Histogram
}

// Throughput is completed requests per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// maxReply bounds one reply the generator will buffer.
const maxReply = 16 << 20

type client struct {
	spec  *Spec
	conn  net.Conn
	rng   *rand.Rand
	value []byte
	keys  []int
	wbuf  []byte
	rbuf  []byte
	r, w  int // unread bytes are rbuf[r:w]
	parse func([]byte) (int, reply, error)

	hist                     Histogram
	requests, errors, misses uint64
}

func newClient(s *Spec, conn net.Conn, seed uint64, value []byte) *client {
	c := &client{
		spec:  s,
		conn:  conn,
		rng:   rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1)),
		value: value,
		keys:  make([]int, max(s.MultiKeys, 1)),
		rbuf:  make([]byte, 64<<10),
		parse: parseRedis,
	}
	if s.Protocol == Memcache {
		c.parse = parseMemcache
	}
	return c
}

// appendRequest appends one request with fresh random keys.
func (c *client) appendRequest(b []byte) []byte {
	s := c.spec
	keys := c.keys[:1]
	if s.Op == MGet {
		keys = c.keys[:s.MultiKeys]
	}
	for i := range keys {
		keys[i] = c.rng.IntN(s.Keys)
	}
	switch {
	case s.Protocol == Redis && s.Op == Get:
		return appendRedis(b, "GET", s.KeyPrefix, keys, nil)
	case s.Protocol == Redis && s.Op == Set:
		return appendRedis(b, "SET", s.KeyPrefix, keys, c.value)
	case s.Protocol == Redis:
		return appendRedis(b, "MGET", s.KeyPrefix, keys, nil)
	case s.Op == Set:
		return appendMemcacheSet(b, s.KeyPrefix, keys[0], c.value)
	default:
		return appendMemcacheGet(b, s.KeyPrefix, keys)
	}
}

// next returns the next complete reply's class, reading as needed.
func (c *client) next() (reply, error) {
	_, r, err := c.nextRaw()
	return r, err
}

// nextRaw is next that also returns the reply's bytes, valid until the
// next read.
func (c *client) nextRaw() ([]byte, reply, error) {
	for {
		if c.w > c.r {
			n, r, err := c.parse(c.rbuf[c.r:c.w])
			if err == nil {
				b := c.rbuf[c.r : c.r+n]
				c.r += n
				return b, r, nil
			}
			if !errors.Is(err, errIncomplete) {
				return nil, 0, err
			}
		}
		if c.r == c.w {
			c.r, c.w = 0, 0
		} else if c.r > 0 && c.w == len(c.rbuf) {
			c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.rbuf) {
			if len(c.rbuf) >= maxReply {
				return nil, 0, fmt.Errorf("%w: reply over %d bytes", ErrProtocol, maxReply)
			}
			c.rbuf = append(c.rbuf, make([]byte, len(c.rbuf))...)
		}
		n, err := c.conn.Read(c.rbuf[c.w:])
		c.w += n
		if err != nil && n == 0 {
			return nil, 0, err
		}
	}
}

// hello3 is "HELLO 3", which switches a connection to RESP3.
var hello3 = []byte("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")

// hello sends HELLO 3 and checks that the reply is a map (RESP3's
// server-info reply), within 10 s. A server that does not speak RESP3
// replies with an error (redis before 6) or closes the connection
// (nutcracker, predixy).
func (c *client) hello() error {
	_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.SetDeadline(time.Time{})
	if _, err := c.conn.Write(hello3); err != nil {
		return fmt.Errorf("load: HELLO 3: %w", err)
	}
	b, _, err := c.nextRaw()
	if err != nil {
		return fmt.Errorf("load: HELLO 3: %w", err)
	}
	if b[0] != '%' {
		return fmt.Errorf("%w: HELLO 3 replied %q, not a map", ErrProtocol, b[:min(len(b), 80)])
	}
	if c.r != c.w {
		return fmt.Errorf("%w: %d bytes after the reply to HELLO 3", ErrProtocol, c.w-c.r)
	}
	return nil
}

func (c *client) count(r reply, lat time.Duration) {
	c.requests++
	switch r {
	case replyError:
		c.errors++
	case replyMiss:
		c.misses++
	}
	c.hist.Record(lat)
}

// sent is one scheduled request: its intended send time (ns since the
// run's base) and whether it falls in the measured window.
type sent struct {
	at  int64
	rec bool
}

// receive completes the requests of one connection of an open-loop run.
func (c *client) receive(base time.Time, q <-chan sent) error {
	for s := range q {
		r, err := c.next()
		if err != nil {
			return err
		}
		if s.rec {
			c.count(r, time.Duration(int64(time.Since(base))-s.at))
		}
	}
	return nil
}

// Run performs one run and returns what it measured in its window.
func Run(ctx context.Context, s Spec) (*Result, error) {
	if s.Clients <= 0 || len(s.Addrs) == 0 || s.Keys <= 0 {
		return nil, errors.New("load: need clients, addresses and keys")
	}
	if s.Op == MGet && s.MultiKeys <= 0 {
		s.MultiKeys = 10
	}
	value := make([]byte, s.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	clients := make([]*client, s.Clients)
	var d net.Dialer
	for i := range clients {
		conn, err := d.DialContext(ctx, "tcp", s.Addrs[i%len(s.Addrs)])
		if err != nil {
			for _, c := range clients[:i] {
				c.conn.Close()
			}
			return nil, fmt.Errorf("load: dial %s: %w", s.Addrs[i%len(s.Addrs)], err)
		}
		clients[i] = newClient(&s, conn, uint64(i)+1, value)
		if s.RESP3 && s.Protocol == Redis {
			if err := clients[i].hello(); err != nil {
				for _, c := range clients[:i+1] {
					c.conn.Close()
				}
				return nil, fmt.Errorf("%w (%s)", err, s.Addrs[i%len(s.Addrs)])
			}
		}
	}
	defer func() {
		for _, c := range clients {
			if c.conn != nil {
				c.conn.Close()
			}
		}
	}()

	var (
		phase    atomic.Int32
		abort    atomic.Bool
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		lag      *Histogram
	)
	fail := func(err error) {
		if err == nil || phase.Load() == phaseStop && (errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)) {
			return
		}
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	base := time.Now()
	if s.Rate > 0 {
		queues := make([]chan sent, len(clients))
		for i, c := range clients {
			queues[i] = make(chan sent, 1<<14)
			wg.Add(1)
			go func() {
				defer wg.Done()
				fail(c.receive(base, queues[i]))
			}()
		}
		lag = new(Histogram)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				for _, q := range queues {
					close(q)
				}
			}()
			fail(schedule(&phase, base, s.Rate, clients, queues, lag))
		}()
	} else {
		loops := make([][]*evClient, min(max(s.Threads, 1), len(clients)))
		for i, c := range clients {
			fd, err := detachFD(c.conn)
			if err != nil {
				return nil, err
			}
			c.conn = nil
			ec := &evClient{client: c, fd: fd}
			defer unix.Close(fd)
			loops[i%len(loops)] = append(loops[i%len(loops)], ec)
		}
		for _, l := range loops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fail(runEventLoop(&phase, &abort, l))
			}()
		}
	}

	sleep(ctx, s.Warmup)
	if s.OnStart != nil {
		s.OnStart()
	}
	t0 := time.Now()
	phase.Store(phaseMeasure)
	sleep(ctx, s.Duration)
	phase.Store(phaseStop)
	elapsed := time.Since(t0)
	if s.OnStop != nil {
		s.OnStop()
	}

	// Let in-flight requests finish; a stuck server must not hang the run.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		abort.Store(true)
		for _, c := range clients {
			if c.conn != nil {
				c.conn.Close()
			}
		}
		<-done
		fail(errors.New("load: replies still missing 5s after the window"))
	}

	res := &Result{Elapsed: elapsed, Latency: new(Histogram), Lag: lag}
	for _, c := range clients {
		res.Requests += c.requests
		res.Errors += c.errors
		res.Misses += c.misses
		res.Latency.Merge(&c.hist)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, firstErr
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// schedule sends request k at base + k/rate on client k%len(clients). It
// runs on a locked OS thread and sleeps with nanosleep and a 1 ns timer
// slack: Go's timers round short sleeps up to about a millisecond, which
// would add that much to every fixed-rate latency.
func schedule(phase *atomic.Int32, base time.Time, rate float64, clients []*client, queues []chan sent, lag *Histogram) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	interval := 1e9 / rate
	for k := 0; ; k++ {
		ph := phase.Load()
		if ph == phaseStop {
			return nil
		}
		at := int64(float64(k) * interval)
		if wait := at - int64(time.Since(base)); wait > 0 {
			ts := unix.NsecToTimespec(wait)
			for unix.Nanosleep(&ts, &ts) == unix.EINTR {
			}
		}
		i := k % len(clients)
		c := clients[i]
		queues[i] <- sent{at: at, rec: ph == phaseMeasure}
		c.wbuf = c.appendRequest(c.wbuf[:0])
		if ph == phaseMeasure {
			lag.Record(time.Duration(int64(time.Since(base)) - at))
		}
		if _, err := c.conn.Write(c.wbuf); err != nil {
			return err
		}
	}
}
