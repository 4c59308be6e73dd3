package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// A reliable queue in the style of Sidekiq Pro's super_fetch, with
// go-redis through nuthatch (two workers) over two redis-servers: the
// producer pushes each job in MULTI (SADD all, LPUSH pending), consumers
// take jobs with BLMOVE into a processing list of their own and finish
// them in MULTI (SADD done, HINCRBY runs, LREM processing). A consumer
// whose connection failed first recovers its processing list (a job
// already done is only removed), and the producer checks whether a push
// with an unknown outcome happened before pushing again. Across a kill -9
// of the nuthatch worker serving the most connections (after a third of
// the jobs) and a reload (after two thirds), every job must be done
// exactly once and run exactly once.
func TestReliableQueueThroughKillAndReload(t *testing.T) {
	harness.Need(t, "redis-server")
	a, b := harness.Redis(t), harness.Redis(t)
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes        = 2
worker_shutdown_timeout = "5s"
pid_file                = %q
stats {
  listen = ""
}
pool "q" {
  listen   = %q
  protocol = "redis"
  hash_tag = "{}"
  timeout  = "2s"
  server "s0" { address = %q }
  server "s1" { address = %q }
}
`, filepath.Join(dir, "nuthatch.pid"), addr, a.Addr, b.Addr)
	conf := filepath.Join(dir, "nuthatch.hcl")
	if err := os.WriteFile(conf, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	master := harness.Start(t, harness.Binary(t), "-c", conf)
	harness.WaitPort(t, "tcp", addr, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for len(harness.Children(master.Cmd.Process.Pid)) != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	const jobs, consumers = 3000, 4
	const all, pending, done, runs = "{jobs}:all", "{jobs}:pending", "{jobs}:done", "{jobs}:runs"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	newClient := func() *redis.Client {
		// No retries by the client: what to do after an unknown outcome
		// is the application's, as in a real queue.
		return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 4, ReadTimeout: 5 * time.Second,
			DialTimeout: time.Second})
	}
	var failures atomic.Int64 // errors the clients saw (connections cut)
	var finished atomic.Int64

	// finish completes job id taken into proc: once only, whatever ran before.
	finish := func(c *redis.Client, proc, id string) error {
		isDone, err := c.SIsMember(ctx, done, id).Result()
		if err != nil {
			return err
		}
		_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if !isDone {
				p.SAdd(ctx, done, id)
				p.HIncrBy(ctx, runs, id, 1)
			}
			p.LRem(ctx, proc, 1, id)
			return nil
		})
		if err == nil && !isDone {
			finished.Add(1)
		}
		return err
	}
	var wg sync.WaitGroup
	for w := 0; w < consumers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := newClient()
			defer c.Close()
			proc := fmt.Sprintf("{jobs}:processing:%d", w)
			recovering := true
			for ctx.Err() == nil && finished.Load() < jobs {
				if recovering {
					// Jobs moved here before a failure.
					ids, err := c.LRange(ctx, proc, 0, -1).Result()
					if err != nil {
						failures.Add(1)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					ok := true
					for _, id := range ids {
						if err := finish(c, proc, id); err != nil {
							failures.Add(1)
							ok = false
							break
						}
					}
					if !ok {
						continue
					}
					recovering = false
				}
				id, err := c.BLMove(ctx, pending, proc, "RIGHT", "LEFT", time.Second).Result()
				if errors.Is(err, redis.Nil) {
					continue
				}
				if err != nil {
					failures.Add(1)
					recovering = true
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if err := finish(c, proc, id); err != nil {
					failures.Add(1)
					recovering = true
				}
			}
		}(w)
	}

	// The producer, at about 1,000 jobs a second; the kill and the reload
	// come from it, after a third and two thirds of the jobs.
	pc := newClient()
	defer pc.Close()
	killed, reloaded := false, false
	for i := 0; i < jobs; i++ {
		id := strconv.Itoa(i)
	push:
		for {
			_, err := pc.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.SAdd(ctx, all, id)
				p.LPush(ctx, pending, id)
				return nil
			})
			if err == nil {
				break
			}
			// Unknown outcome: pushed already?
			for {
				if ctx.Err() != nil {
					t.Fatalf("producer: %v", err)
				}
				failures.Add(1)
				time.Sleep(50 * time.Millisecond)
				in, err2 := pc.SIsMember(ctx, all, id).Result()
				if err2 == nil && in {
					break push
				}
				if err2 == nil {
					break
				}
			}
		}
		if i%25 == 0 {
			time.Sleep(25 * time.Millisecond)
		}
		if i == jobs/3 && !killed {
			victim, most := 0, 0
			for _, pid := range harness.Children(master.Cmd.Process.Pid) {
				if n := clientSockets(t, pid, addr); n > most {
					victim, most = pid, n
				}
			}
			if most == 0 {
				t.Fatal("no nuthatch worker holds a client connection")
			}
			if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			t.Logf("after %d jobs pushed (%d done): kill -9 of nuthatch worker %d, which held %d client connections", i, finished.Load(), victim, most)
			killed = true
		}
		if i == 2*jobs/3 && !reloaded {
			p := harness.Start(t, harness.Binary(t), "-s", "reload", "-c", conf)
			<-p.Done()
			if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("nuthatch -s reload: exit %d\n%s", code, p.Output())
			}
			t.Logf("after %d jobs pushed (%d done): nuthatch -s reload", i, finished.Load())
			reloaded = true
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the queue did not finish: %d of %d jobs done", finished.Load(), jobs)
	}

	// Check on the server itself.
	var direct *redis.Client
	for _, be := range []*harness.Proc{a, b} {
		c := redis.NewClient(&redis.Options{Addr: be.Addr})
		defer c.Close()
		if n, _ := c.Exists(ctx, all).Result(); n == 1 {
			direct = c
		}
	}
	if direct == nil {
		t.Fatal("the queue's keys are on no server")
	}
	nAll, _ := direct.SCard(ctx, all).Result()
	nDone, _ := direct.SCard(ctx, done).Result()
	nPending, _ := direct.LLen(ctx, pending).Result()
	counts, _ := direct.HGetAll(ctx, runs).Result()
	twice := 0
	for _, v := range counts {
		if v != "1" {
			twice++
		}
	}
	left := int64(0)
	for w := 0; w < consumers; w++ {
		n, _ := direct.LLen(ctx, fmt.Sprintf("{jobs}:processing:%d", w)).Result()
		left += n
	}
	t.Logf("%d jobs: %d pushed, %d done, %d run more than once, %d pending, %d in processing lists; %d client errors (cut connections) handled",
		jobs, nAll, nDone, twice, nPending, left, failures.Load())
	if nAll != jobs || nDone != jobs || len(counts) != jobs || twice != 0 || nPending != 0 || left != 0 {
		t.Errorf("lost or duplicated jobs: pushed %d, done %d, run %d (%d more than once), pending %d, processing %d",
			nAll, nDone, len(counts), twice, nPending, left)
	}
	if !killed || !reloaded {
		t.Errorf("kill %v, reload %v", killed, reloaded)
	}
}
