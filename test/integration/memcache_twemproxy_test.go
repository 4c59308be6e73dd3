package integration

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// twemproxy's tests/test_memcache/test_gets.py, in Go: two memcacheds behind
// the proxy, driven by a real client (test_basic is TestMemcacheBasic).

func TestMemcacheTwemproxyMgetMset(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	c := gmc(mp.addr)
	keys := make([]string, 10)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
		if err := c.Set(&memcache.Item{Key: keys[i], Value: []byte("value-" + fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.GetMulti(keys)
	if err != nil || len(got) != len(keys) {
		t.Fatalf("get_multi: %d items, %v", len(got), err)
	}
	for i, k := range keys {
		if string(got[k].Value) != "value-"+fmt.Sprint(i) {
			t.Fatalf("%s = %q", k, got[k].Value)
		}
	}
	for _, k := range keys { // delete_multi
		if err := c.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.GetMulti(keys); err != nil || len(got) != 0 {
		t.Fatalf("get_multi after delete_multi: %d items, %v", len(got), err)
	}
}

// TestMemcacheTwemproxyMgetMsetLarge: test_mget_mset_large, counts 179 to
// 1000 in steps of 179 plus 1000, with the raw get line checked too.
func TestMemcacheTwemproxyMgetMsetLarge(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	c := gmc(mp.addr)
	r := dialRaw(t, mp.addr)
	for _, n := range []int{179, 358, 537, 716, 895, 1000} {
		keys := make([]string, n)
		var want strings.Builder
		for i := range keys {
			keys[i] = fmt.Sprintf("key-%d-%d", n, i)
			v := fmt.Sprintf("value-%d", i)
			if err := c.Set(&memcache.Item{Key: keys[i], Value: []byte(v)}); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&want, "VALUE %s 0 %d\r\n%s\r\n", keys[i], len(v), v)
		}
		got, err := c.GetMulti(keys)
		if err != nil || len(got) != n {
			t.Fatalf("get_multi %d: %d items, %v", n, len(got), err)
		}
		r.send("get " + strings.Join(keys, " ") + "\r\n")
		r.expect(want.String() + "END\r\n")
		for _, k := range keys {
			if err := c.Delete(k); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := c.GetMulti(keys); err != nil || len(got) != 0 {
			t.Fatalf("get_multi %d after delete: %d items, %v", n, len(got), err)
		}
	}
}

// TestMemcacheTwemproxyKeyNotExists: test_mget_mset_key_not_exists, present
// and absent keys mixed, get_multi twice.
func TestMemcacheTwemproxyKeyNotExists(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	c := gmc(mp.addr)
	var all, present []string
	for i := range 100 {
		k := fmt.Sprintf("key-%d", i)
		all = append(all, k)
		if i%2 == 0 {
			present = append(present, k)
			if err := c.Set(&memcache.Item{Key: k, Value: []byte(k)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 2 {
		got, err := c.GetMulti(all)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k, it := range got {
			if string(it.Value) != k {
				t.Fatalf("%s = %q", k, it.Value)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		sort.Strings(present)
		if strings.Join(keys, " ") != strings.Join(present, " ") {
			t.Fatalf("get_multi returned %v, want %v", keys, present)
		}
	}
}

// mcExchange is one raw request and the exact bytes expected back.
type mcExchange struct{ req, want string }

func runExchanges(t *testing.T, addr string, xs []mcExchange) {
	t.Helper()
	r := dialRaw(t, addr)
	for _, x := range xs {
		r.send(x.req)
		if x.want != "" {
			r.expect(x.want)
		}
	}
}

// TestMemcacheTwemproxyClassicCommands: every classic command and option
// through three memcacheds, with exact replies.
func TestMemcacheTwemproxyClassicCommands(t *testing.T) {
	mp := startMemcachePool(t, 3, "")
	runExchanges(t, mp.addr, []mcExchange{
		{"version\r\n", "VERSION 1.6.18\r\n"},
		{"set a 1 0 1\r\nA\r\n", "STORED\r\n"},
		{"set b 2 0 2 noreply\r\nBB\r\n", ""},
		{"add a 0 0 1\r\nx\r\n", "NOT_STORED\r\n"},
		{"add c 3 0 3\r\nCCC\r\n", "STORED\r\n"},
		{"add c 3 0 3 noreply\r\nxxx\r\n", ""},
		{"replace zz 0 0 1\r\nx\r\n", "NOT_STORED\r\n"},
		{"replace c 4 0 1 noreply\r\nc\r\n", ""},
		{"append a 0 0 2\r\n>>\r\n", "STORED\r\n"},
		{"prepend a 0 0 2 noreply\r\n<<\r\n", ""},
		{"append zz 0 0 1\r\nx\r\n", "NOT_STORED\r\n"},
		{"get a b c zz\r\n", "VALUE a 1 5\r\n<<A>>\r\nVALUE b 2 2\r\nBB\r\nVALUE c 4 1\r\nc\r\nEND\r\n"},
		{"get a b c zz\r\n", "VALUE a 1 5\r\n<<A>>\r\nVALUE b 2 2\r\nBB\r\nVALUE c 4 1\r\nc\r\nEND\r\n"},
		{"cas zz 9 0 1 3\r\nX\r\n", "NOT_FOUND\r\n"},
		{"gat 100 a b zz\r\n", "VALUE a 1 5\r\n<<A>>\r\nVALUE b 2 2\r\nBB\r\nEND\r\n"},
		{"gats 100 zz zz2\r\n", "END\r\n"},
		{"touch a 100\r\n", "TOUCHED\r\n"},
		{"touch zz 100\r\n", "NOT_FOUND\r\n"},
		{"touch a 100 noreply\r\n", ""},
		{"set n 0 0 2\r\n10\r\n", "STORED\r\n"},
		{"incr n 5\r\n", "15\r\n"},
		{"decr n 20\r\n", "0\r\n"},
		{"incr n 18446744073709551615\r\n", "18446744073709551615\r\n"},
		{"incr n 1\r\n", "0\r\n"},
		{"incr n 1 noreply\r\n", ""},
		{"decr n 1 noreply\r\n", ""},
		{"incr zz 1\r\n", "NOT_FOUND\r\n"},
		{"incr a 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"},
		{"incr n 18446744073709551616\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n"},
		{"delete a\r\n", "DELETED\r\n"},
		{"delete a\r\n", "NOT_FOUND\r\n"},
		{"delete b noreply\r\n", ""},
		{"delete c 0\r\n", "DELETED\r\n"},
		{"get a b c\r\n", "END\r\n"},
		{"get a a zz a\r\n", "END\r\n"},
		{"quit\r\n", ""},
	})
	// cas uniques are per server: take them from gets.
	r := dialRaw(t, mp.addr)
	casOf := func(k string) uint64 {
		t.Helper()
		r.send("gets " + k + "\r\n")
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := r.r.ReadString('\n')
		var key string
		var flags, size int
		var cas uint64
		if n, err := fmt.Sscanf(line, "VALUE %s %d %d %d\r\n", &key, &flags, &size, &cas); n != 4 {
			t.Fatalf("gets %s: %q %v", k, line, err)
		}
		r.r.Discard(size + 2 + len("END\r\n"))
		return cas
	}
	r.send("set a 1 0 1\r\nA\r\nset b 2 0 2\r\nBB\r\n")
	r.expect("STORED\r\nSTORED\r\n")
	cas := casOf("a")
	r.send(fmt.Sprintf("cas a 9 0 1 %d\r\nX\r\n", cas+1000))
	r.expect("EXISTS\r\n")
	r.send(fmt.Sprintf("cas a 9 0 1 %d\r\nX\r\n", cas))
	r.expect("STORED\r\n")
	r.send(fmt.Sprintf("cas a 8 0 1 %d noreply\r\nY\r\n", casOf("a")))
	casA, casB := casOf("a"), casOf("b")
	r.send("gets a b\r\ngats 0 b zz a\r\n")
	r.expect(fmt.Sprintf("VALUE a 8 1 %d\r\nY\r\nVALUE b 2 2 %d\r\nBB\r\nEND\r\n", casA, casB))
	r.expect(fmt.Sprintf("VALUE b 2 2 %d\r\nBB\r\nVALUE a 8 1 %d\r\nY\r\nEND\r\n", casB, casA))

	r = dialRaw(t, mp.addr)
	r.send("set q 0 0 1\r\nq\r\nget q\r\nquit\r\nget q\r\n")
	if got := r.expectClosed(); got != "STORED\r\nVALUE q 0 1\r\nq\r\nEND\r\n" {
		t.Fatalf("quit: got %q", got)
	}
}

// TestMemcacheTwemproxyMetaCommands: mg/ms/md/ma/mn/me with flags, opaque
// tokens, base64 keys and quiet mode through three memcacheds.
func TestMemcacheTwemproxyMetaCommands(t *testing.T) {
	mp := startMemcachePool(t, 3, "")
	runExchanges(t, mp.addr, []mcExchange{
		{"ms m1 2 F9 T0\r\nhi\r\n", "HD\r\n"},
		{"mg m1 v f k O1\r\n", "VA 2 f9 km1 O1\r\nhi\r\n"},
		{"mg m1 s c\r\n", "HD s2 c1\r\n"},
		{"mg m1 q v\r\n", "VA 2\r\nhi\r\n"},
		{"mg zz v q\r\nmg zz v\r\n", "EN\r\n"},
		{"mg zz v k O5 q\r\nmn\r\n", "MN\r\n"},
		{"ms m1 2 C99\r\nno\r\n", "EX\r\n"},
		{"ms m1 2 C1 q\r\nok\r\nmg m1 v\r\n", "VA 2\r\nok\r\n"},
		{"ms m1 2 MA\r\n!!\r\n", "HD\r\n"},
		{"ms m1 1 MP O7\r\n<\r\n", "HD O7\r\n"},
		{"ms zz 1 MR\r\nx\r\n", "NS\r\n"},
		{"ms zz 1 ME q\r\nx\r\n", ""},
		{"ms zz 1 ME q\r\nx\r\n", "NS\r\n"},
		{"mg m1 v\r\n", "VA 5\r\n<ok!!\r\n"},
		{"md zz\r\n", "HD\r\n"},
		{"md zz q\r\nmd zz q\r\nmn\r\n", "NF\r\nNF\r\nMN\r\n"},
		{"ma cnt\r\n", "NF\r\n"},
		{"ma cnt N0 J41 v\r\n", "VA 2\r\n41\r\n"},
		{"ma cnt v\r\n", "VA 2\r\n42\r\n"},
		{"ma cnt MD D2 q v\r\nma cnt q\r\nmg cnt v\r\n", "VA 2\r\n41\r\n"},
		{"ma m1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"},
		{"ma cnt O9 k\r\n", "HD O9 kcnt\r\n"},
		{"mn\r\n", "MN\r\n"},
		{"me zz\r\n", "EN\r\n"},
		{"mg m1 zz\r\n", "CLIENT_ERROR invalid flag\r\n"},
		{"mg m1 v v\r\n", "CLIENT_ERROR duplicate flag\r\n"},
		{"ms m1 1 MX\r\nx\r\nmn\r\n", "CLIENT_ERROR invalid mode for ms M token\r\nMN\r\n"},
	})
	r := dialRaw(t, mp.addr)
	r.send("me m1\r\n")
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := r.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "ME m1 exp=-1 la=") || !strings.HasSuffix(line, " fetch=yes cls=1 size=66\r\n") {
		t.Fatalf("me m1: %q %v", line, err)
	}
}

// TestMemcacheTwemproxyMetaBase64Routing: a base64 key (b flag) is placed by
// its decoded bytes, so classic commands on the decoded key find it.
func TestMemcacheTwemproxyMetaBase64Routing(t *testing.T) {
	mp := startMemcachePool(t, 3, "")
	r := dialRaw(t, mp.addr)
	for i := range 30 {
		key := fmt.Sprintf("b64 key %d\x01", i) // spaces and control bytes need base64
		plain := fmt.Sprintf("plain%d", i)
		enc := base64.StdEncoding.EncodeToString([]byte(key))
		encPlain := base64.StdEncoding.EncodeToString([]byte(plain))
		r.send(fmt.Sprintf("ms %s 1 b\r\n%d\r\n", enc, i%10))
		r.expect("HD\r\n")
		r.send(fmt.Sprintf("mg %s b v k\r\n", enc))
		r.expect(fmt.Sprintf("VA 1 k%s b\r\n%d\r\n", enc, i%10))
		r.send(fmt.Sprintf("ms %s 2 b q\r\n%02d\r\nget %s\r\n", encPlain, i, plain))
		r.expect(fmt.Sprintf("VALUE %s 0 2\r\n%02d\r\nEND\r\n", plain, i))
		r.send(fmt.Sprintf("set %s 0 0 1\r\nz\r\nmg %s b v\r\n", plain, encPlain))
		r.expect("STORED\r\nVA 1\r\nz\r\n")
		r.send(fmt.Sprintf("md %s b q\r\nget %s\r\n", encPlain, plain))
		r.expect("END\r\n")
	}
}

// TestMemcacheTwemproxyQuietPipeline: quiet and noreply requests spread over
// three servers, pipelined in one write: the replies that are due come back
// in request order and mn closes the batch.
func TestMemcacheTwemproxyQuietPipeline(t *testing.T) {
	mp := startMemcachePool(t, 3, "")
	var req, want strings.Builder
	for i := range 200 {
		k := fmt.Sprintf("p%d", i)
		switch i % 5 {
		case 0:
			fmt.Fprintf(&req, "set %s 0 0 1 noreply\r\n%d\r\n", k, i%10)
		case 1:
			fmt.Fprintf(&req, "ms %s 1 q\r\n%d\r\n", k, i%10)
		case 2:
			fmt.Fprintf(&req, "mg %s v q\r\n", k) // a miss: nothing
			fmt.Fprintf(&req, "mg p%d v q O%d\r\n", i-1, i)
			fmt.Fprintf(&want, "VA 1 O%d\r\n%d\r\n", i, (i-1)%10)
		case 3:
			fmt.Fprintf(&req, "get p%d %s p%d\r\n", i-3, k, i-2)
			fmt.Fprintf(&want, "VALUE p%d 0 1\r\n%d\r\nVALUE p%d 0 1\r\n%d\r\nEND\r\n", i-3, (i-3)%10, i-2, (i-2)%10)
		case 4:
			fmt.Fprintf(&req, "delete p%d noreply\r\nmd p%d q\r\nmd p%d q\r\nmn\r\n", i-4, i-3, i-3)
			fmt.Fprintf(&want, "NF\r\nMN\r\n")
		}
	}
	r := dialRaw(t, mp.addr)
	r.send(req.String())
	r.expect(want.String())
}

// TestMemcacheTwemproxyBinaryRefused: a binary protocol request is closed
// without a reply and the reason is logged.
func TestMemcacheTwemproxyBinaryRefused(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	r := dialRaw(t, mp.addr)
	// A binary GET of "k": magic 0x80, opcode 0, key length 1.
	r.send("\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00k")
	if got := r.expectClosed(); got != "" {
		t.Fatalf("binary request answered with %q", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(mp.proxy.Output(), "binary protocol not supported") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the binary client; log:\n%s", mp.proxy.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMemcacheTwemproxyLimits: the key, item and line limits.
func TestMemcacheTwemproxyLimits(t *testing.T) {
	mp := startMemcachePool(t, 2, "")
	k250 := strings.Repeat("k", 250)
	v1m := strings.Repeat("v", 1<<20-400) // an item's header shares the 1 MiB
	runExchanges(t, mp.addr, []mcExchange{
		{"set " + k250 + " 0 0 1\r\nx\r\n", "STORED\r\n"},
		{"get " + k250 + "\r\n", "VALUE " + k250 + " 0 1\r\nx\r\nEND\r\n"},
		{"get " + k250 + "k\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"mg " + k250 + "k v\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"set big 0 0 " + fmt.Sprint(len(v1m)) + "\r\n" + v1m + "\r\n", "STORED\r\n"},
		{"set big 0 0 1048577\r\n" + strings.Repeat("x", 1048577) + "\r\n", "SERVER_ERROR object too large for cache\r\n"},
		{"set big 0 0 1048577 noreply\r\n" + strings.Repeat("x", 1048577) + "\r\nmn\r\n", "MN\r\n"},
		{"get big\r\n", "VALUE big 0 " + fmt.Sprint(len(v1m)) + "\r\n" + v1m + "\r\nEND\r\n"},
	})
	// A multi-get line far over memcached's 2048-byte command limit is fine.
	var keys []string
	for i := range 5000 {
		keys = append(keys, fmt.Sprintf("long-line-key-%06d", i))
	}
	runExchanges(t, mp.addr, []mcExchange{{"get " + strings.Join(keys, " ") + "\r\n", "END\r\n"}})
	// Any other line without a newline after 2048 bytes closes the
	// connection, as memcached does.
	r := dialRaw(t, mp.addr)
	r.send("set " + strings.Repeat("x", 3000))
	if got := r.expectClosed(); got != "" {
		t.Fatalf("long line: got %q", got)
	}
}
