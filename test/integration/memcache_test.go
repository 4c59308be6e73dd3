package integration

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

type mcPool struct {
	proxy    *harness.Proc
	backends []*harness.Proc
	addr     string
}

func startMemcachePool(t *testing.T, n int, attrs string) *mcPool {
	t.Helper()
	mp := &mcPool{}
	var servers strings.Builder
	for i := 0; i < n; i++ {
		b := harness.Memcached(t)
		mp.backends = append(mp.backends, b)
		fmt.Fprintf(&servers, "  server %q {}\n", b.Addr)
	}
	mp.addr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	// 400ms unless attrs sets its own timeout (HCL refuses an attribute
	// twice).
	timeout := `timeout  = "400ms"`
	if regexp.MustCompile(`(?m)^\s*timeout\s*=`).MatchString(attrs) {
		timeout = ""
	}
	hcl := fmt.Sprintf(`
worker_processes = 1
stats {
  listen = ""
}
pool "mc" {
  listen   = %q
  protocol = "memcache"
  %s
  hash     = "fnv1a_64"
  distribution = "ketama"
%s
%s}
`, mp.addr, timeout, attrs, servers.String())
	mp.proxy = harness.Nuthatch(t, hcl, mp.addr)
	t.Cleanup(func() {
		if mp.proxy.Exited() {
			t.Errorf("nuthatch died during the test; log:\n%s", mp.proxy.Output())
		}
	})
	return mp
}

func TestMemcacheBasic(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	c := memcache.New(mp.addr)
	c.Timeout = 2 * time.Second
	if err := c.Set(&memcache.Item{Key: "counter", Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := c.Increment("counter", 1); err != nil {
			t.Fatal(err)
		}
	}
	it, err := c.Get("counter")
	if err != nil || string(it.Value) != "10" {
		t.Fatalf("get counter: %v %v", it, err)
	}
	if err := c.Delete("counter"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("counter"); err != memcache.ErrCacheMiss {
		t.Fatalf("after delete: %v", err)
	}
}

func TestMemcacheMultiGetLarge(t *testing.T) {
	mp := startMemcachePool(t, 3, "")
	c := memcache.New(mp.addr)
	c.Timeout = 5 * time.Second
	for _, count := range []int{1, 10, 179, 1000} {
		var keys []string
		for i := 0; i < count; i++ {
			k := fmt.Sprintf("mc%d:%d", count, i)
			keys = append(keys, k)
			if err := c.Set(&memcache.Item{Key: k, Value: []byte("v" + k), Flags: uint32(i)}); err != nil {
				t.Fatal(err)
			}
		}
		query := append([]string{}, keys...)
		for i := 0; i < count; i += 3 {
			query = append(query, "absent:"+keys[i])
		}
		got, err := c.GetMulti(query)
		if err != nil {
			t.Fatalf("get_multi %d: %v", count, err)
		}
		if len(got) != count {
			t.Fatalf("get_multi %d: %d hits", count, len(got))
		}
		for i, k := range keys {
			if it := got[k]; it == nil || string(it.Value) != "v"+k || it.Flags != uint32(i) {
				t.Fatalf("get_multi %s = %+v", k, it)
			}
		}
	}
}

func TestMemcacheMultiGetOrderRaw(t *testing.T) {
	mp := startMemcachePool(t, 3, "")
	r := dialRaw(t, mp.addr)
	want := ""
	keys := []string{}
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("o%d", i)
		keys = append(keys, k)
		if i%4 == 3 {
			continue // a miss
		}
		v := fmt.Sprintf("val\r\n%d", i) // values may contain CRLF
		r.send(fmt.Sprintf("set %s %d 0 %d\r\n%s\r\n", k, i, len(v), v))
		r.expect("STORED\r\n")
		want += fmt.Sprintf("VALUE %s %d %d\r\n%s\r\n", k, i, len(v), v)
	}
	r.send("get " + strings.Join(keys, " ") + "\r\n")
	r.expect(want + "END\r\n")
}

func TestMemcacheNoreplyPipeline(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	r := dialRaw(t, mp.addr)
	r.send("set a 0 0 1 noreply\r\na\r\nset b 0 0 1 noreply\r\nb\r\nget a b\r\ndelete a noreply\r\nget a\r\nmn\r\n")
	r.expect("VALUE a 0 1\r\na\r\nVALUE b 0 1\r\nb\r\nEND\r\nEND\r\nMN\r\n")
}

func TestMemcacheMeta(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	r := dialRaw(t, mp.addr)
	r.send("ms mk 3 T0 F5\r\nabc\r\n")
	r.expect("HD\r\n")
	r.send("mg mk v f O123\r\n")
	r.expect("VA 3 f5 O123\r\nabc\r\n")
	r.send("mg missing v q\r\nmg mk s v q\r\nmn\r\n")
	r.expect("VA 3 s3\r\nabc\r\nMN\r\n")
	r.send("md mk q\r\nmg mk v\r\n")
	r.expect("EN\r\n")
}

func TestMemcacheErrors(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	r := dialRaw(t, mp.addr)
	r.send("bogus\r\n")
	r.expect("ERROR\r\n")
	long := strings.Repeat("k", 251)
	r.send("get " + long + "\r\n")
	line, _ := r.r.ReadString('\n')
	if !strings.HasPrefix(line, "CLIENT_ERROR") {
		t.Fatalf("long key: %q", line)
	}
	big := strings.Repeat("x", 2<<20)
	r.send(fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", len(big), big))
	r.expect("SERVER_ERROR object too large for cache\r\n")
	r.send("set small 0 0 2\r\nok\r\nget small\r\n")
	r.expect("STORED\r\nVALUE small 0 2\r\nok\r\nEND\r\n")
}

func TestMemcacheByteAtATime(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	r := dialRaw(t, mp.addr)
	req := "set x 1 0 5\r\nhe\r\no\r\nget x y\r\n"
	for i := 0; i < len(req); i++ {
		r.send(req[i : i+1])
		time.Sleep(time.Millisecond)
	}
	r.expect("STORED\r\nVALUE x 1 5\r\nhe\r\no\r\nEND\r\n")
}

func TestMemcacheBackendDown(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	mp.backends[0].Kill()
	mp.backends[1].Kill()
	r := dialRaw(t, mp.addr)
	r.send("get k\r\n")
	line, _ := r.r.ReadString('\n')
	if !strings.HasPrefix(line, "SERVER_ERROR ") {
		t.Fatalf("backend down: %q", line)
	}
}
