package integration

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
	"github.com/nuthatch-proxy/nuthatch/test/redisdiff"
)

// The RESP3 differential test: the differential script, sent after
// HELLO 3, to a redis-server and to nuthatch over two servers. Wherever
// nuthatch's RESP2 reply is redis-server's own (the proxy forwarded it,
// or answers as redis does), its RESP3 reply must be redis-server's RESP3
// reply, byte for byte. Each run has fresh servers, so every run starts
// from the same state. The RESP3 run is repeated with each request
// written a byte at a time and in random pieces.

var hello3 = []byte("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")

func TestRedisRESP3Differential(t *testing.T) {
	harness.Need(t, "redis-server")
	var script []diffStep
	for _, st := range diffScript() {
		if strings.HasPrefix(strings.ToUpper(st.What), "HELLO") {
			continue // switches the protocol: the run stays in one
		}
		if name := strings.ToUpper(strings.Fields(st.What + " x")[0]); name == "TTL" || name == "PTTL" {
			continue // counts down between runs
		}
		if st.Diff == redisdiff.Refused || st.Diff == redisdiff.WholePool {
			// Refused by the proxy, run by redis-server, where they would
			// block (BLPOP), queue (MULTI) or flush (FLUSHALL).
			continue
		}
		script = append(script, st)
	}
	nuthatch := func() string {
		return startNuthatchDiff(t, []*harness.Proc{harness.Redis(t), harness.Redis(t)}, "ketama")
	}
	run := func(addr string, hello []byte, split func([]byte) [][]byte) []string {
		s := newRespSession(t, addr)
		s.Hello, s.Split = hello, split
		out := make([]string, len(script))
		for i, st := range script {
			out[i] = s.Do(st.Req)
			if st.Norm != nil {
				out[i] = normalize(t, st.Norm, out[i])
			}
		}
		s.Close()
		return out
	}
	direct2 := run(harness.Redis(t).Addr, nil, nil)
	direct3 := run(harness.Redis(t).Addr, hello3, nil)
	proxied2 := run(nuthatch(), nil, nil)

	rng := rand.New(rand.NewSource(1))
	for _, v := range []struct {
		name  string
		split func([]byte) [][]byte
	}{
		{"whole", nil},
		{"byte-at-a-time", func(b []byte) [][]byte {
			parts := make([][]byte, len(b))
			for i := range b {
				parts[i] = b[i : i+1]
			}
			return parts
		}},
		{"random-splits", func(b []byte) [][]byte {
			var parts [][]byte
			for len(b) > 0 {
				n := min(len(b), 1+rng.Intn(12))
				parts, b = append(parts, b[:n]), b[n:]
			}
			return parts
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			proxied3 := run(nuthatch(), hello3, v.split)
			compared, differ := 0, 0
			for i, st := range script {
				if proxied2[i] != direct2[i] {
					continue // a documented difference from redis in RESP2 already
				}
				compared++
				if proxied3[i] != direct3[i] {
					differ++
					t.Errorf("step %d %s: RESP2 replies agree (%q) but RESP3 differ\n redis-server: %q\n nuthatch:     %q",
						i, short(st.What), short(direct2[i]), short(direct3[i]), short(proxied3[i]))
				}
			}
			resp3Only := 0
			for i := range script {
				if direct3[i] != direct2[i] {
					resp3Only++
				}
			}
			t.Logf("%d steps, %d compared, %d differ; %d steps where redis-server's RESP3 reply differs from its RESP2 one",
				len(script), compared, differ, resp3Only)
			if resp3Only < 10 {
				t.Errorf("only %d steps reply differently in RESP3: the script does not exercise RESP3 types", resp3Only)
			}
		})
	}
}
