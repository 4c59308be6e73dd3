package stats

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var testInfo = Info{
	Source: "host-1", Version: "1.2.3", Uptime: 90*time.Second + 999*time.Millisecond,
	Timestamp: time.Unix(1700000000, 0), TotalConnections: 12, CurrConnections: 5,
}

func TestTwemproxyJSONGolden(t *testing.T) {
	a := NewAggregator()
	cfg := mustConfig(t, twoPools)
	a.SetConfig(cfg)
	a.Update("0", workerSnap(3, "alpha", "beta"))
	a.Update("1", workerSnap(4, "alpha", "beta"))
	info := testInfo
	info.Config = cfg
	got := TwemproxyJSON(a.Total(), info)
	golden(t, "twemproxy.golden", got)
	if !json.Valid(got) {
		t.Fatal("not JSON")
	}
	doc, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	// Servers are keyed by placement name, sorted as twemproxy sorts.
	var keys []string
	for _, p := range doc.Pools {
		for _, s := range p.Servers {
			keys = append(keys, p.Name+"/"+s.Name)
		}
	}
	want := []string{"beta/127.0.0.1", "alpha/cache-b", "alpha/127.0.0.1:6379"}
	if !slices.Equal(keys, want) {
		t.Errorf("servers = %v, want %v", keys, want)
	}
	if doc.Uptime != 90 || doc.Timestamp != 1700000000 || doc.Service != "nutcracker" || doc.Version != "1.2.3" {
		t.Errorf("header = %+v", doc)
	}
	if got := doc.Pool("alpha").Server("cache-b").Get("requests"); got != 7 {
		t.Errorf("requests = %d, want 7", got)
	}
}

func TestTwemproxyJSONEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		snap proxy.Snapshot
		info Info
		want string
	}{
		{"no pools", proxy.Snapshot{}, Info{Service: "x"},
			`{"service":"x", "source":"", "version":"", "uptime":0, "timestamp":-62135596800, "total_connections":0, "curr_connections":0}` + "\n"},
		{"pool without servers", proxy.Snapshot{Pools: []proxy.PoolSnapshot{{Name: "p", ClientEOF: 1}}}, Info{Timestamp: time.Unix(5, 0)},
			`{"service":"nutcracker", "source":"", "version":"", "uptime":0, "timestamp":5, "total_connections":0, "curr_connections":0, ` +
				`"p": {"client_eof":1, "client_err":0, "client_connections":0, "server_ejects":0, "forward_error":0, "fragments":0}}` + "\n"},
		{"odd host name is escaped", proxy.Snapshot{}, Info{Source: "a\"b", Timestamp: time.Unix(0, 0)},
			`{"service":"nutcracker", "source":"a\"b", "version":"", "uptime":0, "timestamp":0, "total_connections":0, "curr_connections":0}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(TwemproxyJSON(tt.snap, tt.info))
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Error("not JSON")
			}
		})
	}
}

func TestCompareNamesIsTwemproxyOrder(t *testing.T) {
	in := []string{"server2", "127.0.0.1:26379", "b", "aa", "a", "/tmp/mc.sock:", "127.0.0.1"}
	slices.SortFunc(in, compareNames)
	want := []string{"a", "b", "aa", "server2", "127.0.0.1", "/tmp/mc.sock:", "127.0.0.1:26379"}
	if !slices.Equal(in, want) {
		t.Errorf("got %v, want %v", in, want)
	}
}

func TestConnections(t *testing.T) {
	s := workerSnap(3, "alpha", "beta") // 2 pools x 1 client, 3 servers x 1 connection
	total, curr := Connections(s, 2)
	if curr != 2+2+3 || total != 2+6+3 {
		t.Errorf("total, curr = %d, %d; want 11, 7", total, curr)
	}
}

// readStats reads a stats port to EOF.
func readStats(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// numbers are the values nutcracker and nuthatch fill in differently.
var numbers = regexp.MustCompile(`":-?[0-9]+`)

// TestTwemproxyJSONMatchesNutcracker runs Debian's nutcracker on a
// configuration and renders the same configuration's (idle) totals: with
// the numbers and header strings masked, the two documents must be the
// same bytes — keys, order, separators, server names and final newline.
func TestTwemproxyJSONMatchesNutcracker(t *testing.T) {
	harness.Need(t, "nutcracker")
	dir := t.TempDir()
	sock := filepath.Join(dir, "mc.sock")
	p1, p2, p3, statsPort := harness.FreePort(t), harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)
	yaml := fmt.Sprintf(`alpha:
  listen: 127.0.0.1:%d
  redis: true
  servers:
   - 127.0.0.1:6379:1
   - 127.0.0.1:6380:1 server2
   - 127.0.0.1:6381:2 s3
beta:
  listen: 127.0.0.1:%d
  servers:
   - 127.0.0.1:11211:1
   - 127.0.0.1:11212:1
   - %s:1
zz:
  listen: 127.0.0.1:%d
  servers:
   - 10.0.0.1:11211:1 b
   - 10.0.0.2:11211:1 a
`, p1, p2, sock, p3)
	hcl := fmt.Sprintf(`
stats {
  listen = ""
}
pool "alpha" {
  listen   = "127.0.0.1:%d"
  protocol = "redis"
  server "127.0.0.1:6379" {}
  server "server2" {
    address = "127.0.0.1:6380"
  }
  server "s3" {
    address = "127.0.0.1:6381"
    weight  = 2
  }
}
pool "beta" {
  listen   = "127.0.0.1:%d"
  protocol = "memcache"
  server "127.0.0.1:11211" {}
  server "127.0.0.1:11212" {}
  server "unix:%s" {}
}
pool "zz" {
  listen   = "127.0.0.1:%d"
  protocol = "memcache"
  server "b" {
    address = "10.0.0.1:11211"
  }
  server "a" {
    address = "10.0.0.2:11211"
  }
}
`, p1, p2, sock, p3)
	conf := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	statsAddr := fmt.Sprintf("127.0.0.1:%d", statsPort)
	harness.Start(t, "nutcracker", "-c", conf, "-s", fmt.Sprint(statsPort), "-a", "127.0.0.1", "-i", "100", "-o", filepath.Join(dir, "log"))
	harness.WaitPort(t, "tcp", statsAddr, 10*time.Second)
	real := readStats(t, statsAddr)

	cfg := mustConfig(t, hcl)
	a := NewAggregator()
	a.SetConfig(cfg)
	mine := TwemproxyJSON(a.Total(), Info{Source: "x", Version: "x", Config: cfg})

	mask := func(b []byte) string {
		s := numbers.ReplaceAllString(string(b), `":N`)
		for _, k := range []string{"source", "version"} {
			s = regexp.MustCompile(`"`+k+`":"[^"]*"`).ReplaceAllString(s, `"`+k+`":"S"`)
		}
		return s
	}
	if mask(real) != mask(mine) {
		t.Errorf("layout differs from nutcracker's\nnutcracker: %s\nnuthatch:   %s", mask(real), mask(mine))
	}
	// And the same document model when parsed.
	dr, err := Parse(real)
	if err != nil {
		t.Fatalf("parse nutcracker: %v\n%s", err, real)
	}
	dm, err := Parse(mine)
	if err != nil {
		t.Fatal(err)
	}
	if dr.Service != dm.Service || len(dr.Extra) != 0 || len(dm.Extra) != 0 {
		t.Errorf("service %q vs %q, extras %v %v", dr.Service, dm.Service, dr.Extra, dm.Extra)
	}
	for _, p := range dr.Pools {
		for _, f := range p.Fields {
			if !slices.Contains(PoolKeys, f.Key) {
				t.Errorf("nutcracker has pool key %q that PoolKeys lacks", f.Key)
			}
		}
		for _, s := range p.Servers {
			var keys []string
			for _, f := range s.Fields {
				keys = append(keys, f.Key)
			}
			if !slices.Equal(keys, ServerKeys) {
				t.Errorf("nutcracker server keys %v, want %v", keys, ServerKeys)
			}
		}
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"array", `[]`},
		{"string pool stat", `{"p":{"client_eof":"x"}}`},
		{"nested too deep", `{"p":{"s":{"x":{}}}}`},
		{"float", `{"uptime":1.5}`},
		{"string top level", `{"foo":"bar"}`},
		{"array value", `{"p":[1]}`},
		{"trailing data", `{} {}`},
		{"truncated", `{"p":{"client_eof":1`},
		{"bool server stat", `{"p":{"s":{"requests":true}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.in)); !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestParseKeepsOrderAndExtras(t *testing.T) {
	d, err := Parse([]byte(`{"service":"s","zz":{"b":1,"srv":{"x":2,"a":3}},"extra":7,"aa":{}}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Pools) != 2 || d.Pools[0].Name != "zz" || d.Pools[1].Name != "aa" {
		t.Fatalf("pools = %+v", d.Pools)
	}
	if s := d.Pools[0].Servers[0]; s.Name != "srv" || s.Fields[0].Key != "x" || s.Get("a") != 3 {
		t.Errorf("server = %+v", s)
	}
	if len(d.Extra) != 1 || d.Extra[0] != (Field{"extra", 7}) {
		t.Errorf("extra = %v", d.Extra)
	}
	if d.Pool("nope") != nil || d.Pools[0].Server("nope") != nil || d.Pools[0].Get("nope") != 0 {
		t.Error("lookups of absent names")
	}
}

// docSnapshot turns a parsed document back into a snapshot.
func docSnapshot(d *Document) proxy.Snapshot {
	var s proxy.Snapshot
	for _, p := range d.Pools {
		ps := proxy.PoolSnapshot{Name: p.Name, ClientEOF: uint64(p.Get("client_eof")),
			ClientConnections: p.Get("client_connections")}
		for _, sv := range p.Servers {
			ps.Servers = append(ps.Servers, proxy.ServerSnapshot{Name: sv.Name,
				Requests: uint64(sv.Get("requests")), InQueue: sv.Get("in_queue")})
		}
		s.Pools = append(s.Pools, ps)
	}
	return s
}

func FuzzParse(f *testing.F) {
	f.Add(TwemproxyJSON(workerSnap(3, "alpha", "beta"), testInfo))
	f.Add([]byte(`{"service":"nutcracker", "a": {"client_eof":1, "s": {"requests":2}}}`))
	f.Add([]byte(`{"p":{"s":{"x":{}}}}`))
	f.Add([]byte(`{"uptime":-9223372036854775808}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		// What parses, rendered again as a snapshot, parses back to the
		// same pools, servers and values, in twemproxy's order.
		snap := docSnapshot(d)
		again, err := Parse(TwemproxyJSON(snap, Info{}))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		want := docSnapshot(again)
		slices.SortStableFunc(snap.Pools, func(x, y proxy.PoolSnapshot) int { return compareNames(x.Name, y.Name) })
		for i := range snap.Pools {
			slices.SortStableFunc(snap.Pools[i].Servers, func(x, y proxy.ServerSnapshot) int { return compareNames(x.Name, y.Name) })
		}
		if !reflect.DeepEqual(names(snap), names(want)) {
			t.Fatalf("names %v became %v", names(snap), names(want))
		}
		for i := range snap.Pools {
			if snap.Pools[i].ClientEOF != want.Pools[i].ClientEOF {
				t.Fatalf("client_eof %d became %d", snap.Pools[i].ClientEOF, want.Pools[i].ClientEOF)
			}
			for j := range snap.Pools[i].Servers {
				if snap.Pools[i].Servers[j].Requests != want.Pools[i].Servers[j].Requests {
					t.Fatal("requests changed")
				}
			}
		}
	})
}

// A Sentinel server's document carries its master as a string; it
// round-trips through TwemproxyJSON and Parse.
func TestSentinelServerMaster(t *testing.T) {
	snap := proxy.Snapshot{Pools: []proxy.PoolSnapshot{{Name: "p", Servers: []proxy.ServerSnapshot{
		{Name: "shard-a", Address: "127.0.0.1:6380", Switches: 2, Requests: 5},
		{Name: "127.0.0.1:6381", Requests: 1},
	}}}}
	d, err := Parse(TwemproxyJSON(snap, testInfo))
	if err != nil {
		t.Fatal(err)
	}
	s := d.Pools[0].Server("shard-a")
	if s == nil || s.Strings["master"] != "127.0.0.1:6380" || s.Get("master_switches") != 2 || s.Get("requests") != 5 {
		t.Fatalf("shard-a = %+v", s)
	}
	if o := d.Pools[0].Server("127.0.0.1:6381"); o == nil || o.Strings != nil {
		t.Fatalf("a plain server = %+v", o)
	}
}
