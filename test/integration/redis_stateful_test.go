package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// Stateful commands through the binary, with go-redis in RESP2 and RESP3:
// transactions (TxPipelined, Watch with a conflict), blocking calls (woken,
// timed out past the pool's timeout, 100 at once, one that disconnects),
// pub/sub with channels and patterns over two servers, SCAN over both.
func TestRedisStatefulGoRedis(t *testing.T) {
	harness.Need(t, "redis-server")
	addr := startNuthatchDiff(t, []*harness.Proc{harness.Redis(t), harness.Redis(t)}, "ketama")
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := context.Background()
			opt := &redis.Options{Addr: addr, Protocol: proto, PoolSize: 200, ReadTimeout: 10 * time.Second}
			rc := redis.NewClient(opt)
			defer rc.Close()
			p := fmt.Sprintf("{st%d}", proto)

			// Transactions.
			cmds, err := rc.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Set(ctx, p+"a", "1", 0)
				pipe.Incr(ctx, p+"a")
				pipe.Get(ctx, p+"a")
				return nil
			})
			if err != nil || len(cmds) != 3 || cmds[2].(*redis.StringCmd).Val() != "2" {
				t.Fatalf("TxPipelined: %v %v", cmds, err)
			}
			err = rc.Watch(ctx, func(tx *redis.Tx) error {
				rc.Set(ctx, p+"a", "conflict", 0) // another connection
				_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
					pipe.Set(ctx, p+"a", "mine", 0)
					return nil
				})
				return err
			}, p+"a")
			if !errors.Is(err, redis.TxFailedErr) {
				t.Fatalf("WATCH conflict: %v, want %v", err, redis.TxFailedErr)
			}
			if v := rc.Get(ctx, p+"a").Val(); v != "conflict" {
				t.Fatalf("after the conflict: %q", v)
			}

			// Blocking calls.
			go func() {
				time.Sleep(100 * time.Millisecond)
				rc.RPush(ctx, p+"q", "x")
			}()
			if v, err := rc.BLPop(ctx, 0, p+"q").Result(); err != nil || v[1] != "x" {
				t.Fatalf("BLPOP woken: %v %v", v, err)
			}
			start := time.Now()
			if _, err := rc.BLPop(ctx, 3*time.Second, p+"empty").Result(); err != redis.Nil {
				t.Fatalf("BLPOP timing out: %v", err)
			}
			if d := time.Since(start); d < 2900*time.Millisecond {
				t.Fatalf("BLPOP 3 returned after %v (the pool's timeout is 2s)", d)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for i := 0; i < 100; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					k := fmt.Sprintf("%sb%d", p, i)
					if v, err := rc.BRPop(ctx, 10*time.Second, k).Result(); err != nil || v[1] != fmt.Sprint(i) {
						errs <- fmt.Errorf("blocker %d: %v %v", i, v, err)
					}
				}(i)
			}
			time.Sleep(300 * time.Millisecond)
			for i := 0; i < 100; i++ {
				rc.LPush(ctx, fmt.Sprintf("%sb%d", p, i), fmt.Sprint(i))
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			gone, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(gone, "*3\r\n$5\r\nBLPOP\r\n$%d\r\n%sleft\r\n$1\r\n0\r\n", len(p)+4, p)
			time.Sleep(200 * time.Millisecond)
			gone.Close()
			time.Sleep(100 * time.Millisecond)
			rc.RPush(ctx, p+"left", "v")
			if n := rc.LLen(ctx, p+"left").Val(); n != 1 {
				t.Errorf("a disconnected blocker popped the value (LLEN %d)", n)
			}

			// Pub/sub.
			sub := rc.Subscribe(ctx, "ch:1", "ch:2", "ch:3")
			defer sub.Close()
			if err := sub.PSubscribe(ctx, "pat:*"); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 4; i++ {
				if _, err := sub.ReceiveTimeout(ctx, 5*time.Second); err != nil {
					t.Fatalf("confirmation %d: %v", i, err)
				}
			}
			for _, ch := range []string{"ch:1", "ch:2", "ch:3", "pat:a", "pat:b"} {
				if n := rc.Publish(ctx, ch, "m-"+ch).Val(); n != 1 {
					t.Errorf("PUBLISH %s reached %d subscribers", ch, n)
				}
			}
			got := map[string]bool{}
			for i := 0; i < 5; i++ {
				m, err := sub.ReceiveTimeout(ctx, 5*time.Second)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if msg, ok := m.(*redis.Message); ok {
					got[msg.Payload] = true
				}
			}
			if len(got) != 5 {
				t.Errorf("messages: %v", got)
			}
			if err := sub.Ping(ctx); err != nil {
				t.Errorf("PING while subscribed: %v", err)
			}

			// SCAN over both servers.
			for i := 0; i < 50; i++ {
				rc.Set(ctx, fmt.Sprintf("scan%d:%d", proto, i), "v", 0)
			}
			keys, err := scanAll(ctx, rc, fmt.Sprintf("scan%d:*", proto))
			if err != nil || len(keys) != 50 {
				t.Errorf("SCAN found %d keys (%v)", len(keys), err)
			}
		})
	}
}

func scanAll(ctx context.Context, rc *redis.Client, match string) (map[string]bool, error) {
	seen := map[string]bool{}
	iter := rc.Scan(ctx, 0, match, 5).Iterator()
	for iter.Next(ctx) {
		seen[iter.Val()] = true
	}
	return seen, iter.Err()
}
