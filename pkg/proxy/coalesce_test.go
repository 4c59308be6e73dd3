package proxy

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// collect reads everything the client has been sent so far.
func (r *rig) collect() string {
	var b []byte
	for got := r.clientGot(); got != nil; got = r.clientGot() {
		b = append(b, got...)
	}
	return string(b)
}

// serverAll reads everything server i has been sent so far.
func (r *rig) serverAll(i int) string {
	var b []byte
	for got := r.serverGot(i); got != nil; got = r.serverGot(i) {
		b = append(b, got...)
	}
	return string(b)
}

func TestCoalescedGets(t *testing.T) {
	const pipeline = "get a\r\nget b c\r\nget a\r\nset x 0 0 1\r\nx\r\nget d\r\ngets e\r\ngets f\r\ngat 10 g\r\nget h\r\n"
	const coalesced = "VALUE a 1 1\r\nA\r\nVALUE c 3 1\r\nC\r\nVALUE a 1 1\r\nA\r\nEND\r\n" +
		"STORED\r\n" +
		"END\r\n" +
		"VALUE f 6 1 99\r\nF\r\nEND\r\n" +
		"VALUE g 7 1\r\nG\r\nEND\r\n" +
		"VALUE h 8 1\r\nH\r\nEND\r\n"
	const want = "VALUE a 1 1\r\nA\r\nEND\r\n" + // get a
		"VALUE c 3 1\r\nC\r\nEND\r\n" + // get b c: b missed
		"VALUE a 1 1\r\nA\r\nEND\r\n" + // get a again
		"STORED\r\n" +
		"END\r\n" + // get d
		"END\r\n" + // gets e
		"VALUE f 6 1 99\r\nF\r\nEND\r\n" +
		"VALUE g 7 1\r\nG\r\nEND\r\n" +
		"VALUE h 8 1\r\nH\r\nEND\r\n"
	for _, tc := range []struct {
		name, extra, wire, reply string
	}{
		// Consecutive gets share a line; the set between them is kept in
		// its place, get and gets are not mixed, gat goes alone.
		{"on", "", "get a b c a\r\nset x 0 0 1\r\nx\r\nget d\r\ngets e f\r\ngat 10 g\r\nget h\r\n", coalesced},
		// Without coalescing the server sees the client's requests and
		// answers each on its own.
		{"off", "coalesce_gets = false", pipeline, want},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigWith(t, "memcache", 1, tc.extra)
			r.request([]byte(pipeline))
			if got := r.serverAll(0); got != tc.wire {
				t.Fatalf("server got %q, want %q", got, tc.wire)
			}
			r.reply(0, []byte(tc.reply))
			if got := r.collect(); got != want {
				t.Fatalf("client got %q, want %q", got, want)
			}
			st := &r.px.order[0].servers[0].stats
			if req, rep := st.Requests.Load(), st.Responses.Load(); req != 9 || rep != 9 {
				t.Errorf("server stats: %d requests, %d responses; want 9 and 9 (one per client request)", req, rep)
			}
		})
	}
}

// A fragment of a multi-server get and a plain get for the same server
// share a line; each client request still gets its own merged reply.
func TestCoalescedFragments(t *testing.T) {
	r := newRig(t, "memcache", 2) // modula over fnv1a_64: a on 0, b on 1
	r.request([]byte("get a b\r\nget a\r\nget b a\r\n"))
	wires := []string{r.serverAll(0), r.serverAll(1)}
	if wires[0] != "get a a a\r\n" || wires[1] != "get b b\r\n" {
		t.Fatalf("servers got %q", wires)
	}
	r.reply(0, []byte("VALUE a 0 2\r\nva\r\nVALUE a 0 2\r\nva\r\nVALUE a 0 2\r\nva\r\nEND\r\n"))
	r.reply(1, []byte("VALUE b 0 2\r\nvb\r\nVALUE b 0 2\r\nvb\r\nEND\r\n"))
	const want = "VALUE a 0 2\r\nva\r\nVALUE b 0 2\r\nvb\r\nEND\r\n" +
		"VALUE a 0 2\r\nva\r\nEND\r\n" +
		"VALUE b 0 2\r\nvb\r\nVALUE a 0 2\r\nva\r\nEND\r\n"
	if got := r.collect(); got != want {
		t.Fatalf("client got %q, want %q", got, want)
	}
}

func TestCoalescedLineLimit(t *testing.T) {
	r := newRig(t, "memcache", 1)
	var req, rep, want strings.Builder
	var keys []string
	for i := range maxBatch { // all in flight at once
		k := fmt.Sprintf("some:longer:key:%04d", i)
		keys = append(keys, k)
		fmt.Fprintf(&req, "get %s\r\n", k)
		fmt.Fprintf(&want, "VALUE %s 0 %d\r\n%s\r\nEND\r\n", k, len(k), k)
	}
	r.request([]byte(req.String()))
	wire := r.serverAll(0)
	lines := strings.Split(strings.TrimSuffix(wire, "\r\n"), "\r\n")
	var got []string
	for _, l := range lines {
		if len(l)+2 > maxCoalescedLine {
			t.Fatalf("a line of %d bytes, over %d", len(l)+2, maxCoalescedLine)
		}
		f := strings.Fields(l)
		if f[0] != "get" {
			t.Fatalf("line %q", l)
		}
		got = append(got, f[1:]...)
	}
	if len(lines) < 2 || strings.Join(got, " ") != strings.Join(keys, " ") {
		t.Fatalf("%d lines carrying %d keys; want them all, in order, over several lines", len(lines), len(got))
	}
	for _, l := range lines {
		for _, k := range strings.Fields(l)[1:] {
			fmt.Fprintf(&rep, "VALUE %s 0 %d\r\n%s\r\n", k, len(k), k)
		}
		rep.WriteString("END\r\n")
	}
	r.reply(0, []byte(rep.String()))
	if got := r.collect(); got != want.String() {
		t.Fatalf("client got %d bytes, want %d", len(got), want.Len())
	}
}

func TestCoalescedFailures(t *testing.T) {
	t.Run("error reply", func(t *testing.T) {
		r := newRig(t, "memcache", 1)
		r.request([]byte("get a\r\nget b\r\n"))
		if got := r.serverAll(0); got != "get a b\r\n" {
			t.Fatalf("server got %q", got)
		}
		r.reply(0, []byte("VALUE a 0 1\r\nA\r\nSERVER_ERROR out of memory writing get response\r\n"))
		const line = "SERVER_ERROR out of memory writing get response\r\n"
		if got := r.collect(); got != line+line {
			t.Fatalf("client got %q, want the error line for each request", got)
		}
	})
	t.Run("value for a key not asked for", func(t *testing.T) {
		r := newRig(t, "memcache", 1)
		r.request([]byte("get a\r\nget b\r\n"))
		r.serverAll(0)
		r.reply(0, []byte("VALUE z 0 1\r\nZ\r\nEND\r\n"))
		got := r.collect()
		if strings.Count(got, "SERVER_ERROR ") != 2 || strings.Contains(got, "VALUE") {
			t.Fatalf("client got %q, want two SERVER_ERROR lines", got)
		}
	})
	t.Run("server closes", func(t *testing.T) {
		r := newRig(t, "memcache", 1)
		r.request([]byte("get a\r\nget b\r\nget c\r\n"))
		r.serverAll(0)
		unix.Close(r.speers[0])
		r.speers[0] = -1
		r.links[0].read()
		r.lp.settle()
		got := r.collect()
		if n := strings.Count(got, "SERVER_ERROR "); n != 3 || strings.Count(got, "\r\n") != 3 {
			t.Fatalf("client got %q, want three SERVER_ERROR lines", got)
		}
	})
}
