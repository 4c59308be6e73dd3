package cluster

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
)

// Stateful commands in a cluster pool (#21), each reply compared with what
// go-redis's ClusterClient, straight on the cluster, gets: transactions on
// the first key's slot, blocking calls on the key's slot owner (followed
// when the slot moves while blocked), pub/sub on one node, SCAN over every
// master.
func TestClusterStateful(t *testing.T) {
	r := startCluster(t, 3, 0)
	addr, _ := r.proxy(t)
	px := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 4, ReadTimeout: 10 * time.Second})
	defer px.Close()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.nodes[0].addr()}, MaxRedirects: 8})
	defer cc.Close()
	// A plain request waits for the first slot map; a stateful one
	// before it fails (No server available).
	if err := px.Get(ctx, "warm").Err(); !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}

	t.Run("transaction", func(t *testing.T) {
		// The same transaction on three tags (three masters), through
		// the proxy and through the cluster client: identical replies.
		for _, tag := range []string{"{a}", "{b}", "{c}"} {
			run := func(c redis.Cmdable, pre string) []any {
				var out []any
				cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, pre+tag+"x", "1", 0)
					p.Incr(ctx, pre+tag+"x")
					p.Get(ctx, pre+tag+"missing")
					p.RPush(ctx, pre+tag+"l", "a", "b")
					return nil
				})
				if err != nil && !errors.Is(err, redis.Nil) {
					t.Fatalf("%s: %v", pre, err)
				}
				for _, c := range cmds {
					out = append(out, fmt.Sprint(c.(interface{ Args() []any }).Args()[1:]), c.Err() != nil)
				}
				for _, c := range cmds {
					switch v := c.(type) {
					case *redis.IntCmd:
						out = append(out, v.Val())
					case *redis.StringCmd:
						out = append(out, v.Val())
					case *redis.StatusCmd:
						out = append(out, v.Val())
					}
				}
				return out
			}
			got, want := run(px, "px"), run(cc, "cc")
			for i := range got {
				if s, ok := got[i].(string); ok {
					got[i] = strings.Replace(s, "px", "cc", 1)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: proxy %v, cluster client %v", tag, got, want)
			}
		}
		// Keys of two slots: the second is refused at queue time, naming
		// the hash tag rule, and EXEC aborts, as Redis aborts a
		// transaction with an error at queue time.
		conn := px.Conn()
		defer conn.Close()
		if err := conn.Do(ctx, "MULTI").Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := conn.Do(ctx, "SET", "{a}k", "v").Result(); err != nil || v != "QUEUED" {
			t.Fatalf("SET queued: %v %v", v, err)
		}
		err := conn.Do(ctx, "SET", "{b}k", "v").Err()
		if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") || !strings.Contains(err.Error(), "hash tag") {
			t.Fatalf("a key of another slot: %v", err)
		}
		err = conn.Do(ctx, "EXEC").Err()
		if err == nil || !strings.HasPrefix(err.Error(), "EXECABORT") {
			t.Fatalf("EXEC after a refused key: %v", err)
		}
		if n, _ := px.Exists(ctx, "{a}k").Result(); n != 0 {
			t.Fatalf("the aborted transaction ran")
		}
		// One command across slots, as Redis says it.
		conn.Do(ctx, "MULTI")
		if err := conn.Do(ctx, "MSET", "{a}1", "x", "{b}1", "y").Err(); err == nil || err.Error() != "CROSSSLOT Keys in request don't hash to the same slot" {
			t.Fatalf("MSET across slots in MULTI: %v", err)
		}
		conn.Do(ctx, "DISCARD")
		// WATCH conflict: EXEC answers nil, as on Redis.
		for _, c := range []redis.UniversalClient{px, cc} {
			err := c.Watch(ctx, func(tx *redis.Tx) error {
				tx.Get(ctx, "{w}k")
				if err := px.Set(ctx, "{w}k", "other", 0).Err(); err != nil {
					return err
				}
				_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, "{w}k", "mine", 0)
					return nil
				})
				return err
			}, "{w}k")
			if !errors.Is(err, redis.TxFailedErr) {
				t.Fatalf("WATCH conflict: %v", err)
			}
		}
		// The slot moves between WATCH and the transaction: the queued
		// command gets the proxy's error naming the move, EXEC aborts,
		// and the next WATCH/MULTI/EXEC runs on the new owner.
		const mk = "{mt}k"
		slot := hashkit.Slot([]byte(mk))
		if err := px.Set(ctx, mk, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		mc := px.Conn()
		defer mc.Close()
		if err := mc.Do(ctx, "WATCH", mk).Err(); err != nil {
			t.Fatal(err)
		}
		src := r.nodeAt(r.masterOfSlot(t, slot))
		var dst *node
		for _, n := range r.nodes {
			if n != src {
				dst = n
				break
			}
		}
		moveSlot(t, src, dst, slot, mk)
		mc.Do(ctx, "MULTI")
		err = mc.Do(ctx, "SET", mk, "2").Err()
		if err == nil || !strings.Contains(err.Error(), "moved to "+dst.addr()+" during the transaction") {
			t.Fatalf("a command of a transaction whose slot moved: %v", err)
		}
		if err := mc.Do(ctx, "EXEC").Err(); err == nil || !strings.HasPrefix(err.Error(), "EXECABORT") {
			t.Fatalf("EXEC after the move: %v", err)
		}
		mc.Do(ctx, "WATCH", mk)
		mc.Do(ctx, "MULTI")
		mc.Do(ctx, "SET", mk, "3")
		if v, err := mc.Do(ctx, "EXEC").Slice(); err != nil || len(v) != 1 || v[0] != "OK" {
			t.Fatalf("a transaction after the move: %v %v", v, err)
		}
		dc := dst.client()
		if v, _ := dc.Get(ctx, mk).Result(); v != "3" {
			t.Fatalf("the transaction after the move did not run on the new owner: %q", v)
		}
		dc.Close()
		if cross := px.Watch(ctx, func(*redis.Tx) error { return nil }, "{a}1", "{b}1"); cross == nil ||
			cross.Error() != "CROSSSLOT Keys in request don't hash to the same slot" {
			t.Fatalf("WATCH across slots: %v", cross)
		}
	})

	t.Run("blocking", func(t *testing.T) {
		done := make(chan []string, 1)
		go func() {
			v, err := px.BLPop(ctx, 5*time.Second, "{q}list", "{q}other").Result()
			if err != nil {
				v = []string{err.Error()}
			}
			done <- v
		}()
		time.Sleep(200 * time.Millisecond)
		if err := px.RPush(ctx, "{q}list", "job").Err(); err != nil {
			t.Fatal(err)
		}
		if v := <-done; !reflect.DeepEqual(v, []string{"{q}list", "job"}) {
			t.Fatalf("BLPOP woken: %v", v)
		}
		if _, err := px.BLPop(ctx, 300*time.Millisecond, "{q}none").Result(); !errors.Is(err, redis.Nil) {
			t.Fatalf("BLPOP timing out: %v", err)
		}
		if _, err := cc.BLPop(ctx, 300*time.Millisecond, "{q}none").Result(); !errors.Is(err, redis.Nil) {
			t.Fatalf("cluster client BLPOP timing out: %v", err)
		}
		if err := px.BLPop(ctx, time.Second, "{a}x", "{b}x").Err(); err == nil || err.Error() != "CROSSSLOT Keys in request don't hash to the same slot" {
			t.Fatalf("BLPOP across slots: %v", err)
		}
		// The slot moves while a client blocks on it: Redis unblocks the
		// call with MOVED, the proxy blocks it again on the new owner.
		const key = "{mv}queue"
		slot := hashkit.Slot([]byte(key))
		go func() {
			v, err := px.BLPop(ctx, 10*time.Second, key).Result()
			if err != nil {
				v = []string{err.Error()}
			}
			done <- v
		}()
		time.Sleep(200 * time.Millisecond)
		src := r.nodeAt(r.masterOfSlot(t, slot))
		var dst *node
		for _, n := range r.nodes {
			if n != src {
				dst = n
				break
			}
		}
		moveSlot(t, src, dst, slot, key)
		time.Sleep(1500 * time.Millisecond) // Redis redirects blocked clients within a second
		if err := px.RPush(ctx, key, "moved-job").Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-done:
			if !reflect.DeepEqual(v, []string{key, "moved-job"}) {
				t.Fatalf("BLPOP across a slot move: %v", v)
			}
		case <-time.After(8 * time.Second):
			t.Fatal("BLPOP not woken after its slot moved")
		}
	})

	t.Run("pubsub", func(t *testing.T) {
		sub := px.Subscribe(ctx, "news", "sport")
		defer sub.Close()
		if err := sub.PSubscribe(ctx, "tag.*"); err != nil {
			t.Fatal(err)
		}
		// Confirmations first.
		for range 3 {
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Published through the proxy and straight to every node: each
		// message arrives once.
		sent := 0
		for i, ch := range []string{"news", "sport", "tag.x", "other"} {
			if err := px.Publish(ctx, ch, fmt.Sprint("p", i)).Err(); err != nil {
				t.Fatal(err)
			}
			if ch != "other" {
				sent++
			}
			for _, n := range r.nodes {
				nc := n.client()
				nc.Publish(ctx, ch, fmt.Sprint(n.port, i))
				nc.Close()
				if ch != "other" {
					sent++
				}
			}
		}
		got := map[string]int{}
		deadline := time.After(5 * time.Second)
		for len(got) < sent {
			select {
			case m := <-sub.Channel():
				got[m.Channel+"/"+m.Payload]++
			case <-deadline:
				t.Fatalf("%d of %d messages: %v", len(got), sent, got)
			}
		}
		select {
		case m := <-sub.Channel():
			t.Fatalf("one message too many: %v (got %v)", m, got)
		case <-time.After(300 * time.Millisecond):
		}
		for k, n := range got {
			if n != 1 {
				t.Fatalf("%s delivered %d times", k, n)
			}
		}
		// SPUBLISH goes to the shard channel's slot owner, where a
		// cluster client's SSUBSCRIBE listens.
		ss := cc.SSubscribe(ctx, "{s}chan")
		defer ss.Close()
		if _, err := ss.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := px.Do(ctx, "SPUBLISH", "{s}chan", "hello").Int(); err != nil || n != 1 {
			t.Fatalf("SPUBLISH: %d %v", n, err)
		}
		select {
		case m := <-ss.Channel():
			if m.Payload != "hello" {
				t.Fatalf("shard message %v", m)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no shard message")
		}
	})

	t.Run("sharded", func(t *testing.T) {
		// Two shard channels of two slots (on their owners), each message
		// once; Redis's counts (shard channels apart).
		chA, chB := "{sa}news", "{sb}news"
		sub := px.SSubscribe(ctx, chA)
		defer sub.Close()
		if err := sub.SSubscribe(ctx, chB); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			v, err := sub.Receive(ctx)
			s, ok := v.(*redis.Subscription)
			if err != nil || !ok || s.Kind != "ssubscribe" || s.Count != i+1 {
				t.Fatalf("confirmation %d: %#v %v", i, v, err)
			}
		}
		if err := px.Do(ctx, "SSUBSCRIBE", "{sa}x", "{sb}x").Err(); err == nil || err.Error() != "CROSSSLOT Keys in request don't hash to the same slot" {
			t.Fatalf("SSUBSCRIBE across slots: %v", err)
		}
		cc.SPublish(ctx, chA, "a1")
		px.Do(ctx, "SPUBLISH", chB, "b1")
		got := map[string]int{}
		for range 2 {
			v, err := sub.ReceiveTimeout(ctx, 3*time.Second)
			m, ok := v.(*redis.Message)
			if err != nil || !ok {
				t.Fatalf("shard message: %#v %v", v, err)
			}
			got[m.Channel+"/"+m.Payload]++
		}
		if got[chA+"/a1"] != 1 || got[chB+"/b1"] != 1 {
			t.Fatalf("shard messages %v", got)
		}
		// The slot of chA moves: its node drops the subscription and says
		// so; the client hears it with its own count.
		slot := hashkit.Slot([]byte(chA))
		src := r.nodeAt(r.masterOfSlot(t, slot))
		var dst *node
		for _, n := range r.nodes {
			if n != src {
				dst = n
				break
			}
		}
		moveSlot(t, src, dst, slot, chA)
		v, err := sub.ReceiveTimeout(ctx, 3*time.Second)
		if s, ok := v.(*redis.Subscription); err != nil || !ok || s.Kind != "sunsubscribe" || s.Channel != chA || s.Count != 1 {
			t.Fatalf("after the slot moved: %#v %v", v, err)
		}
		// Subscribing again reaches the new owner.
		if err := sub.SSubscribe(ctx, chA); err != nil {
			t.Fatal(err)
		}
		if v, err := sub.Receive(ctx); err != nil || v.(*redis.Subscription).Count != 2 {
			t.Fatalf("subscribed again: %#v %v", v, err)
		}
		cc.SPublish(ctx, chA, "a2")
		v, err = sub.ReceiveTimeout(ctx, 3*time.Second)
		if m, ok := v.(*redis.Message); err != nil || !ok || m.Payload != "a2" {
			t.Fatalf("after subscribing again: %#v %v", v, err)
		}
	})

	t.Run("scan", func(t *testing.T) {
		want := map[string]bool{}
		for i := range 3000 {
			k := fmt.Sprintf("scan:%d", i)
			want[k] = true
			if err := px.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]int{}
		var cur uint64
		rounds := 0
		for {
			keys, next, err := px.Scan(ctx, cur, "scan:*", 200).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				seen[k]++
			}
			rounds++
			if cur = next; cur == 0 {
				break
			}
		}
		for k, n := range seen {
			if n != 1 {
				t.Fatalf("%s seen %d times", k, n)
			}
		}
		// The cluster client's view: SCAN on every master.
		var viaCluster []string
		for _, n := range r.nodes {
			nc := n.client()
			iter := nc.Scan(ctx, 0, "scan:*", 200).Iterator()
			for iter.Next(ctx) {
				viaCluster = append(viaCluster, iter.Val())
			}
			nc.Close()
		}
		var viaProxy []string
		for k := range seen {
			viaProxy = append(viaProxy, k)
		}
		sort.Strings(viaProxy)
		sort.Strings(viaCluster)
		if len(viaProxy) != len(want) || !reflect.DeepEqual(viaProxy, viaCluster) {
			t.Fatalf("SCAN through the proxy: %d keys in %d rounds, straight %d, want %d", len(viaProxy), rounds, len(viaCluster), len(want))
		}
		total := int64(0)
		for _, n := range r.nodes {
			nc := n.client()
			v, _ := nc.DBSize(ctx).Result()
			total += v
			nc.Close()
		}
		if v, err := px.DBSize(ctx).Result(); err != nil || v != total {
			t.Fatalf("DBSIZE %d %v, the masters hold %d", v, err, total)
		}
	})
}
