package sentinel

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestSentinelBackendACLUser: data nodes whose default user is off and
// which know the proxy only as the ACL user "proxy". The watcher checks
// ROLE as that user and every server link authenticates as it
// (redis_username with redis_auth), so requests are served.
func TestSentinelBackendACLUser(t *testing.T) {
	nodeArgs := []string{"--user", "proxy", "on", ">px-pw", "~*", "&*", "+@all", "--user", "default", "off",
		"--masteruser", "proxy", "--masterauth", "px-pw"}
	// The sentinels talk to the data nodes as the same user.
	r := startRigNodes(t, "", "", nodeArgs, func(name string) string {
		return fmt.Sprintf("sentinel auth-user %s proxy\nsentinel auth-pass %s px-pw\n", name, name)
	}, "shard-a")
	addr, px := r.proxy(t, `  redis_username = "proxy"
  redis_auth     = "px-pw"
`)
	c := redis.NewClient(&redis.Options{Addr: addr, Password: "px-pw", MaxRetries: -1, Protocol: 2})
	defer c.Close()
	if err := c.Set(ctx, "acl:k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v\n%s", err, px.Output())
	}
	if v, err := c.Get(ctx, "acl:k").Result(); err != nil || v != "v" {
		t.Fatalf("GET: %q %v", v, err)
	}
	if out := px.Output(); strings.Contains(out, "px-pw") {
		t.Error("the password is in the log")
	}
}
