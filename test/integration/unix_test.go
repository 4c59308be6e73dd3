package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// Unix sockets on both sides: clients connect to a unix listener and the
// proxy reaches redis-server and memcached over their unix sockets, as
// twemproxy allows.
func TestUnixSocketsBothSides(t *testing.T) {
	// Workers started by root run as an unprivileged user: they must be
	// able to reach the backends' sockets.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	rsock := filepath.Join(dir, "redis.sock")
	msock := filepath.Join(dir, "memcached.sock")
	harness.Redis(t, "--unixsocket", rsock, "--unixsocketperm", "777")
	// -s disables memcached's TCP listener, so start it directly.
	harness.Need(t, "memcached")
	margs := []string{"-s", msock, "-a", "0777", "-U", "0"}
	if os.Getuid() == 0 {
		margs = append(margs, "-u", "root")
	}
	harness.Start(t, "memcached", margs...)
	harness.WaitPort(t, "unix", rsock, 10*time.Second)
	harness.WaitPort(t, "unix", msock, 10*time.Second)
	nr, nm := filepath.Join(dir, "nr.sock"), filepath.Join(dir, "nm.sock")
	hcl := fmt.Sprintf(`worker_processes = 1
pool "r" {
  listen   = "unix:%s"
  protocol = "redis"
  server "r1" { address = "unix:%s" }
}
pool "m" {
  listen   = "unix:%s"
  protocol = "memcache"
  server "m1" { address = "unix:%s" }
}
`, nr, rsock, nm, msock)
	harness.Nuthatch(t, hcl, "unix:"+nr, "unix:"+nm)

	c := redis.NewClient(&redis.Options{Network: "unix", Addr: nr})
	defer c.Close()
	for i := range 100 {
		k := fmt.Sprintf("u:%d", i)
		if err := c.Set(ctx, k, strings.Repeat("v", i*100), 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	vals, err := c.MGet(ctx, "u:1", "u:50", "u:99", "missing").Result()
	if err != nil || len(vals) != 4 || vals[1] != strings.Repeat("v", 5000) || vals[3] != nil {
		t.Fatalf("mget over unix sockets: %d values, %v", len(vals), err)
	}

	conn, err := net.DialTimeout("unix", nm, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "set k 0 0 5\r\nhello\r\nget k\r\n")
	r := bufio.NewReader(conn)
	want := []string{"STORED\r\n", "VALUE k 0 5\r\n", "hello\r\n", "END\r\n"}
	for _, w := range want {
		line, err := r.ReadString('\n')
		if err != nil || line != w {
			t.Fatalf("memcached over unix sockets: %q, %v (want %q)", line, err, w)
		}
	}
}
