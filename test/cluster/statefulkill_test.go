package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
)

// stateOp is one stateful request of TestClusterStatefulKillMaster.
type stateOp struct {
	kind   string // "txn", "blpop", "push"
	start  time.Time
	end    time.Time
	err    error
	key    string // the txn's SET key, for the sweep
	worker int
}

// A master killed with kill -9 under clients doing MULTI/SET/INCR/EXEC
// (one of them after WATCH and a GET),
// BLPOP with a timeout and SSUBSCRIBE on keys of its slots: the stateful
// requests sent after the kill wait for the promoted replica and run
// there (0 errors); a transaction or a pop in flight at the kill fails
// with the documented error (EXEC: unknown outcome, never replayed); the
// shard subscriber is told (its connection closes) and subscribes again
// on the new owner; every acknowledged transaction is in the cluster.
func TestClusterStatefulKillMaster(t *testing.T) {
	r := startCluster(t, 3, 1)
	addr, _ := r.proxy(t)
	const tag = "{kv}"
	victim := r.nodeAt(r.masterOfSlot(t, slotOf(tag)))

	var mu sync.Mutex
	var ops []stateOp
	note := func(o stateOp) {
		mu.Lock()
		ops = append(ops, o)
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := func() *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 20 * time.Second,
			DialTimeout: time.Second})
	}
	const txnWorkers, popWorkers = 4, 2
	for w := range txnWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client()
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%s:t%d:%d", tag, w, i)
				start := time.Now()
				cnt := fmt.Sprintf("%s:cnt%d", tag, w)
				txn := func(p redis.Pipeliner) error {
					p.Set(ctx, k, k, 0)
					p.Incr(ctx, cnt)
					return nil
				}
				var err error
				if w == 0 {
					// WATCH, a read, then the transaction.
					err = c.Watch(ctx, func(tx *redis.Tx) error {
						if err := tx.Get(ctx, cnt).Err(); err != nil && !errors.Is(err, redis.Nil) {
							return err
						}
						_, err := tx.TxPipelined(ctx, txn)
						return err
					}, cnt)
				} else {
					_, err = c.TxPipelined(ctx, txn)
				}
				note(stateOp{kind: "txn", start: start, end: time.Now(), err: err, key: k, worker: w})
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	for w := range popWorkers {
		wg.Add(2)
		q := fmt.Sprintf("%s:q%d", tag, w)
		go func() {
			defer wg.Done()
			c := client()
			defer c.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				err := c.BLPop(ctx, time.Second, q).Err()
				if errors.Is(err, redis.Nil) {
					err = nil
				}
				note(stateOp{kind: "blpop", start: start, end: time.Now(), err: err})
			}
		}()
		go func() {
			defer wg.Done()
			c := client()
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				start := time.Now()
				err := c.RPush(ctx, q, i).Err()
				note(stateOp{kind: "push", start: start, end: time.Now(), err: err})
			}
		}()
	}
	// The shard subscriber, on a raw connection to see what it is told.
	sub := func() (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "SSUBSCRIBE %s:ch\r\n", tag)
		rd := bufio.NewReader(conn)
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		reply := readFrame(t, rd)
		if !strings.Contains(reply, "ssubscribe") {
			t.Fatalf("SSUBSCRIBE: %q", reply)
		}
		return conn, rd
	}
	sconn, srd := sub()
	defer sconn.Close()
	told := make(chan string, 1)
	go func() {
		sconn.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, err := srd.ReadString('\n')
		told <- fmt.Sprint(err)
	}()

	time.Sleep(time.Second)
	r.waitInSync(t, victim)
	victim.proc.Kill()
	// Its death, as a client on the box sees it: connections refused.
	for {
		c, err := net.Dial("tcp", victim.addr())
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(time.Millisecond)
	}
	killed := time.Now()
	// Right after the kill, before any promotion: a new shard
	// subscriber, which must wait for the new owner.
	type subResult struct {
		err error
		at  time.Duration
	}
	resub := make(chan subResult, 1)
	go func() {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			resub <- subResult{err: err}
			return
		}
		defer conn.Close()
		fmt.Fprintf(conn, "SSUBSCRIBE %s:ch\r\n", tag)
		rd := bufio.NewReader(conn)
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := frame(rd)
		if err == nil && !strings.Contains(line, "ssubscribe") {
			err = fmt.Errorf("SSUBSCRIBE: %q", line)
		}
		at := time.Since(killed)
		if err == nil {
			pc := client()
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				if n, perr := pc.SPublish(ctx, tag+":ch", "hello").Result(); perr == nil && n > 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			pc.Close()
			var msg string
			if msg, err = frame(rd); err == nil && !strings.Contains(msg, "hello") {
				err = fmt.Errorf("after SPUBLISH: %q", msg)
			}
		}
		resub <- subResult{err: err, at: at}
	}()

	deadline := time.Now().Add(20 * time.Second)
	for r.masterOfSlot(t, slotOf(tag)) == victim.addr() {
		if time.Now().After(deadline) {
			t.Fatal("no replica promoted in 20 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	promoted := time.Since(killed)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	select {
	case e := <-told:
		t.Logf("the subscriber of the dead node was told: %s", e)
	case <-time.After(5 * time.Second):
		t.Error("the subscriber of the dead node was told nothing")
	}
	rs := <-resub
	if rs.err != nil {
		t.Errorf("SSUBSCRIBE sent after the kill: %v", rs.err)
	} else {
		t.Logf("SSUBSCRIBE sent after the kill confirmed %v after the kill, then got an SPUBLISH", rs.at.Round(time.Millisecond))
	}

	// Sum up: errors of requests begun after the kill must be none; in
	// flight at the kill, only the documented ones.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.masterOfSlot(t, slotOf(tag))}, Protocol: 2})
	defer cc.Close()
	type tally struct{ ok, after, afterErr, inflightErr int }
	sums := map[string]*tally{}
	errs := map[string]int{}
	acked, lost := 0, 0
	ackedPerWorker := map[int]int{}
	unknownPerWorker := map[int]int{}
	for _, o := range ops {
		s := sums[o.kind]
		if s == nil {
			s = &tally{}
			sums[o.kind] = s
		}
		after := o.start.After(killed)
		if after {
			s.after++
		}
		if o.err == nil {
			s.ok++
			if o.kind == "txn" {
				acked++
				ackedPerWorker[o.worker]++
				if v, err := cc.Get(ctx, o.key).Result(); err != nil || v != o.key {
					lost++
				}
			}
			continue
		}
		errs[o.kind+": "+o.err.Error()]++
		if after {
			s.afterErr++
			t.Errorf("%s begun %v after the kill failed after %v: %v", o.kind, o.start.Sub(killed), o.end.Sub(o.start), o.err)
			continue
		}
		s.inflightErr++
		if o.kind == "txn" {
			unknownPerWorker[o.worker]++
		}
		if !strings.Contains(o.err.Error(), "may or may not have been applied") && !strings.Contains(o.err.Error(), "the transaction did not run") {
			t.Errorf("%s in flight at the kill: undocumented error %v", o.kind, o.err)
		}
	}
	// Each acknowledged INCR is in its counter, and no more than the
	// transactions whose outcome is unknown besides.
	for w := range txnWorkers {
		n, err := cc.Get(ctx, fmt.Sprintf("%s:cnt%d", tag, w)).Result()
		got, _ := strconv.Atoi(n)
		if err != nil || got < ackedPerWorker[w] || got > ackedPerWorker[w]+unknownPerWorker[w] {
			t.Errorf("worker %d counter %q (%v): %d acknowledged, %d unknown", w, n, err, ackedPerWorker[w], unknownPerWorker[w])
		}
	}
	for k, s := range sums {
		t.Logf("%s: %d ok; %d begun after the kill, %d of them failed; %d failed in flight at the kill", k, s.ok, s.after, s.afterErr, s.inflightErr)
	}
	t.Logf("promotion after %v; errors %v; %d acknowledged transactions, %d lost", promoted.Round(time.Millisecond), errs, acked, lost)
	if lost > 0 {
		t.Errorf("%d acknowledged transactions lost", lost)
	}
	if sums["txn"] == nil || sums["txn"].after == 0 || sums["blpop"] == nil || sums["blpop"].after == 0 {
		t.Error("no stateful request was sent after the kill")
	}
}

// readFrame reads one RESP array of bulk strings or integers as text.
func readFrame(t *testing.T, rd *bufio.Reader) string {
	t.Helper()
	f, err := frame(rd)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func frame(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "*") {
		return line, err
	}
	n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
	out := line
	for range n {
		l, err := rd.ReadString('\n')
		if err != nil {
			return out, err
		}
		out += l
		if strings.HasPrefix(l, "$") {
			l2, err := rd.ReadString('\n')
			if err != nil {
				return out, err
			}
			out += l2
		}
	}
	return out, nil
}

func slotOf(key string) int { return hashkit.Slot([]byte(key)) }
