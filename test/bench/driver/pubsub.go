package main

// The pub/sub fan-out group (issue #21): pubsubSubscribers clients
// SUBSCRIBE to one channel, pubsubPublishers clients PUBLISH 100 B
// messages to it, pipelined pubsubDepth deep, for o.duration; what counts
// is the messages delivered to the subscribers per second (each publish
// is delivered once to every subscriber) and the CPU the target spent per
// delivered message. Direct runs against the first redis-server (a
// channel lives on one server behind the proxy too); nutcracker refuses
// SUBSCRIBE and is left out. Every message has the same size, so the
// subscribers count bytes, not frames.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	pubsubSubscribers = 50
	pubsubPublishers  = 2
	pubsubDepth       = 16
	pubsubPayload     = 100
)

type pubsubRow struct {
	target     string
	delivered  float64 // messages per second, summed over the subscribers
	published  float64 // publishes per second
	cpuUS      float64 // target CPU µs per delivered message
	err        error
	subscribed int
}

func pubsubArgs(args ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

// pubsubRun measures one target once.
func (e *env) pubsubRun(ctx context.Context, o options, t *target) pubsubRow {
	row := pubsubRow{target: t.name}
	addr := t.redis[0]
	channel := "bench:fanout"
	payload := strings.Repeat("m", pubsubPayload)
	frame := len(pubsubArgs("message", channel, payload))
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var received atomic.Int64
	var wg sync.WaitGroup
	counting := atomic.Bool{}
	for i := 0; i < pubsubSubscribers; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			row.err = err
			return row
		}
		conns = append(conns, c)
		c.Write(pubsubArgs("SUBSCRIBE", channel))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		want := fmt.Sprintf("*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n", len(channel), channel)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
			row.err = fmt.Errorf("SUBSCRIBE: %q %v", got, err)
			return row
		}
		c.SetReadDeadline(time.Time{})
		row.subscribed++
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if counting.Load() {
					received.Add(int64(n))
				}
				if err != nil {
					return
				}
			}
		}()
	}
	pubCtx, stop := context.WithCancel(ctx)
	var published atomic.Int64
	var pubErr atomic.Value
	var pwg sync.WaitGroup
	batch := bytes.Repeat(pubsubArgs("PUBLISH", channel, payload), pubsubDepth)
	reply := []byte(fmt.Sprintf(":%d\r\n", pubsubSubscribers))
	for i := 0; i < pubsubPublishers; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			row.err = err
			stop()
			return row
		}
		conns = append(conns, c)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			in := make([]byte, len(reply)*pubsubDepth)
			for pubCtx.Err() == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(batch); err != nil {
					pubErr.Store(err)
					return
				}
				if _, err := io.ReadFull(c, in); err != nil {
					pubErr.Store(err)
					return
				}
				if !bytes.Equal(in[:len(reply)], reply) {
					pubErr.Store(fmt.Errorf("PUBLISH answered %q", in[:len(reply)]))
					return
				}
				if counting.Load() {
					published.Add(pubsubDepth)
				}
			}
		}()
	}
	time.Sleep(o.warmup)
	pids := tree(t.pid())
	if t.proc == nil {
		pids = e.pidsOf(isRedis)
	}
	cpu0 := cpuTicks(pids)
	start := time.Now()
	counting.Store(true)
	time.Sleep(o.duration)
	counting.Store(false)
	elapsed := time.Since(start)
	cpu := cpuTicks(pids) - cpu0
	stop()
	pwg.Wait()
	if err, _ := pubErr.Load().(error); err != nil && ctx.Err() == nil {
		row.err = err
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	row.delivered = float64(received.Load()) / float64(frame) / elapsed.Seconds()
	row.published = float64(published.Load()) / elapsed.Seconds()
	if row.delivered > 0 {
		row.cpuUS = float64(cpu) / float64(e.clkTck) * 1e6 / (row.delivered * elapsed.Seconds())
	}
	return row
}

// pubsub runs the group: o.rounds alternating rounds over the targets,
// the median round of each kept.
func (e *env) pubsub(ctx context.Context, o options, rep *report) error {
	var targets []*target
	for _, t := range rep.targets {
		if t.redis == nil || t.only != nil || t.name == "nutcracker" {
			continue
		}
		targets = append(targets, t)
	}
	runs := map[string][]pubsubRow{}
	for round := 0; round < o.rounds; round++ {
		for _, t := range targets {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r := e.pubsubRun(ctx, o, t)
			logf("pubsub %-14s round %d: %.0f msg/s delivered, %.0f publish/s, %.2f CPU µs/msg %v", t.name, round, r.delivered, r.published, r.cpuUS, r.err)
			runs[t.name] = append(runs[t.name], r)
		}
	}
	for _, t := range targets {
		rs := runs[t.name]
		slices.SortFunc(rs, func(a, b pubsubRow) int {
			switch {
			case a.delivered < b.delivered:
				return -1
			case a.delivered > b.delivered:
				return 1
			}
			return 0
		})
		row := rs[len(rs)/2]
		for _, r := range rs {
			if r.err != nil {
				row.err = r.err
			}
		}
		rep.pubsub = append(rep.pubsub, row)
	}
	return nil
}

// writePubSub is the group's table.
func (r *report) writePubSub(w io.Writer) {
	if len(r.pubsub) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Pub/sub fan-out (%d subscribers of one channel, %d publishers %d deep, %d B messages)\n\n", pubsubSubscribers, pubsubPublishers, pubsubDepth, pubsubPayload)
	fmt.Fprint(w, "Messages delivered per second, summed over the subscribers (each publish reaches all of them), medians of the rounds; CPU is the target's (direct: the redis-servers') per delivered message. nutcracker refuses SUBSCRIBE.\n\n")
	fmt.Fprint(w, "| target | delivered msg/s | publish/s | CPU µs/msg | × direct |\n|---|---:|---:|---:|---:|\n")
	var direct float64
	for _, row := range r.pubsub {
		if row.target == "direct" {
			direct = row.delivered
		}
	}
	for _, row := range r.pubsub {
		if row.err != nil {
			fmt.Fprintf(w, "| %s | failed: %v | | | |\n", row.target, row.err)
			continue
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.2f | %s |\n", row.target, row.delivered, row.published, row.cpuUS, ratio(row.delivered, direct))
	}
}
