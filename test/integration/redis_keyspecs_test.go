package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The proxy learns every command of a real redis 7.0 backend from its
// COMMAND key specs, once, and keeps routing as the built-in table does.
// redis 7.0 has no command the built-in table (generated from 7.0.15)
// lacks, so a command routed only because it was learned is shown with a
// fake backend (pkg/proxy TestLearnedCommandRoutedByKey); here HGETEX, a
// redis 8 command, stays unknown because the backends do not know it.
func TestRedisKeySpecsLearned(t *testing.T) {
	rp := startRedisPool(t, 2, "")
	c := rp.client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	count, err := direct(t, rp.backends[0]).Do(ctx, "COMMAND", "COUNT").Int()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("commands=%d", count)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(rp.proxy.Output(), "learned the servers' commands") {
		if time.Now().After(deadline) {
			t.Fatalf("no COMMAND learned; log:\n%s", rp.proxy.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(rp.proxy.Output(), "\n") {
		if strings.Contains(l, "learned the servers' commands") {
			line = l
		}
	}
	if !strings.Contains(line, want) || !strings.Contains(line, "skipped=0") {
		t.Errorf("learned %q, want %s and skipped=0", line, want)
	}
	r := dialRaw(t, rp.addr)
	r.send("*5\r\n$6\r\nHGETEX\r\n$1\r\nk\r\n$6\r\nFIELDS\r\n$1\r\n1\r\n$1\r\nf\r\n")
	r.expect("-ERR unknown command 'HGETEX', with args beginning with: 'k' 'FIELDS' '1' 'f' \r\n")
	for i := range 50 {
		k := fmt.Sprintf("key:%d", i)
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := c.HSet(ctx, "h"+k, "f", "1").Result(); err != nil || n != 1 {
			t.Fatalf("hset: %d %v", n, err)
		}
	}
	if n := strings.Count(rp.proxy.Output(), "learned the servers' commands"); n != 1 {
		t.Errorf("COMMAND learned %d times, want once", n)
	}
}
