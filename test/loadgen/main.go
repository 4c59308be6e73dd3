// Command loadgen drives a Redis endpoint with go-redis clients doing
// SET/GET round trips and pipelines until it is told to stop (SIGTERM,
// SIGINT) or its duration ends, then prints one line:
//
//	ok=N failed=M errors=[...]
//
// and exits 1 if any request failed. Every reply is checked against what
// the same client wrote. The systemd and packaging tests run it inside a
// container's network namespace while they reload and upgrade nuthatch.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:22121", "redis endpoint")
	clients := flag.Int("clients", 16, "concurrent clients")
	duration := flag.Duration("duration", time.Minute, "run at most this long")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; cancel() }()

	var ok, failed atomic.Int64
	var mu sync.Mutex
	errs := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: *addr, PoolSize: 2, DialTimeout: 2 * time.Second,
				ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
			defer c.Close()
			for j := 0; ctx.Err() == nil; j++ {
				k := fmt.Sprintf("loadgen:%d:%d", i, j%64)
				var err error
				// A fresh context: stopping must not fail a request in flight.
				rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
				if j%2 == 0 {
					pipe := c.Pipeline()
					pipe.Set(rctx, k, j, 0)
					g := pipe.Get(rctx, k)
					if _, err = pipe.Exec(rctx); err == nil && g.Val() != strconv.Itoa(j) {
						err = fmt.Errorf("read %q after writing %d", g.Val(), j)
					}
				} else {
					err = c.Set(rctx, k, j, 0).Err()
				}
				rcancel()
				if err != nil {
					failed.Add(1)
					mu.Lock()
					errs[err.Error()]++
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				} else {
					ok.Add(1)
				}
			}
		}(i)
	}
	wg.Wait()
	var list []string
	for e, n := range errs {
		list = append(list, fmt.Sprintf("%q x%d", e, n))
	}
	sort.Strings(list)
	fmt.Printf("ok=%d failed=%d errors=%v\n", ok.Load(), failed.Load(), list)
	if failed.Load() > 0 || ok.Load() == 0 {
		os.Exit(1)
	}
}
