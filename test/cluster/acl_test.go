package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// TestClusterACLUsers: users at the proxy in front of a Redis Cluster: an
// MGET over keys of several slots is served when every key is allowed and
// refused whole when one is not; NOPERM never reaches a node.
func TestClusterACLUsers(t *testing.T) {
	r := startCluster(t, 3, 0)
	sum := sha256.Sum256([]byte("app-pw"))
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes = 1
stats {
  listen = ""
}
pool "store" {
  listen   = %q
  protocol = "redis"
  timeout  = "2s"
  user "app" {
    password_sha256 = %q
    commands        = ["+@read", "+@write", "-@dangerous"]
    keys            = ["app:*"]
  }
  cluster {
    seeds = [%q]
  }
}
`, addr, hex.EncodeToString(sum[:]), r.nodes[0].addr())
	harness.Nuthatch(t, hcl, addr)
	c := redis.NewClient(&redis.Options{Addr: addr, Username: "app", Password: "app-pw", MaxRetries: -1})
	defer c.Close()
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("app:%d", i)
		keys = append(keys, k)
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	if vals, err := c.MGet(ctx, keys...).Result(); err != nil || len(vals) != 30 || vals[29] != keys[29] {
		t.Fatalf("MGET across slots: %v %v", vals, err)
	}
	if err := c.MGet(ctx, append(keys[:10:10], "other")...).Err(); err == nil ||
		err.Error() != "NOPERM this user has no permissions to access one of the keys used as arguments" {
		t.Fatalf("MGET with a forbidden key: %v", err)
	}
	if err := c.Do(ctx, "FLUSHALL").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM ") {
		t.Fatalf("FLUSHALL: %v", err)
	}
	anon := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2})
	defer anon.Close()
	if err := anon.Get(ctx, "app:1").Err(); err == nil || err.Error() != "NOAUTH Authentication required." {
		t.Fatalf("without AUTH: %v", err)
	}
}
