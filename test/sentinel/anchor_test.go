package sentinel

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The client-side anchor: the same kill -9 of the master, at the same
// moment, seen by three loads of the same shape (SET k, GET k, 8 clients
// each): through nuthatch, through go-redis's own FailoverClient
// connected straight to the sentinels with load()'s options (no client
// retry), and with go-redis's default retries (3, backoff 8-512 ms).
// nuthatch's error window must be no longer than go-redis's.
func TestSentinelKillMasterVersusGoRedis(t *testing.T) {
	redis.SetLogger(quiet{}) // a line per connection otherwise
	r := startRig(t, "shard-a")
	addr, _ := r.proxy(t, "")
	failover := func(retries int) func() *redis.Client {
		return func() *redis.Client {
			return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "shard-a", SentinelAddrs: r.sentAddrs,
				MaxRetries: retries, PoolSize: 1, ReadTimeout: 10 * time.Second, DialTimeout: time.Second})
		}
	}
	stop := make(chan struct{})
	waitNut := load(addr, 8, stop)
	waitGo := loadWith(failover(-1), "g", 8, stop)
	waitGo3 := loadWith(failover(3), "r", 8, stop)
	time.Sleep(time.Second)
	sh := r.shards[0]
	r.waitInSync(t, sh)
	old := sh.nodeAt(r.masterOf(t, sh.name))
	killed := time.Now()
	old.proc.Kill()
	switched := r.waitSwitch(t, sh.name, old.addr())
	time.Sleep(3 * time.Second)
	close(stop)
	newMaster := sh.nodeAt(r.masterOf(t, sh.name))
	type outcome struct {
		name                    string
		ok, failed, acked, lost int
		window                  time.Duration
		errs                    map[string]int
	}
	measure := func(name string, results []result) outcome {
		shardOf := func(string) string { return "shard-a" }
		rep := summarize(results, shardOf)["shard-a"]
		o := outcome{name: name, ok: rep.ok, failed: rep.failed, errs: rep.errs}
		if rep.failed > 0 {
			o.window = rep.last.Sub(rep.first)
		}
		o.acked, o.lost = lostOn(t, newMaster, results, shardOf, "shard-a")
		return o
	}
	outs := []outcome{measure("nuthatch", waitNut()), measure("go-redis FailoverClient", waitGo()),
		measure("go-redis FailoverClient, MaxRetries 3", waitGo3())}
	var line strings.Builder
	for _, o := range outs {
		line.WriteString("\n  ")
		line.WriteString(o.name)
		line.WriteString(": ")
		line.WriteString(strings.Join([]string{
			itoa(o.ok) + " ok", itoa(o.failed) + " failed", "error window " + o.window.Round(time.Millisecond).String(),
			itoa(o.lost) + " of " + itoa(o.acked) + " acknowledged writes lost"}, ", "))
		for e, n := range o.errs {
			line.WriteString("\n      " + itoa(n) + " × " + e)
		}
	}
	t.Logf("kill -9 of the master, switch after %v:%s", switched.Sub(killed).Round(time.Millisecond), line.String())
	nut, gor := outs[0], outs[1]
	if nut.window > gor.window {
		t.Errorf("nuthatch's error window %v is longer than go-redis's %v", nut.window, gor.window)
	}
	if nut.lost > 0 {
		t.Errorf("nuthatch lost %d acknowledged writes", nut.lost)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
