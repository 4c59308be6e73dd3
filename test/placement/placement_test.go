// Package placement runs Debian's nutcracker and nuthatch side by side on
// the same real backends and checks that they put every key on the same
// server: keys written through one proxy are read through the other, and
// direct access to the backends shows where each key landed.
//
// Both configurations come from one description: a nutcracker.yml, which
// nutcracker runs as is and "nuthatch convert" turns into nuthatch's HCL
// (so this also proves the converter and its CLI).
//
// By default each hash x distribution pair writes 10,000 keys, pipelined in
// batches of 1000; NUTHATCH_PLACEMENT_KEYS overrides the count.
package placement

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/redis/go-redis/v9"
	"github.com/zclconf/go-cty/cty"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

const batch = 1000 // pipeline depth

// ports hands out loopback ports that stay reserved (a listener holds
// each) until release, so that one test never gets the same port twice;
// harness.FreePort closes its probe at once and may return a port again.
type ports struct {
	mu  sync.Mutex
	lns []net.Listener
}

func (ps *ports) next(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	ps.mu.Lock()
	ps.lns = append(ps.lns, ln)
	ps.mu.Unlock()
	return ln.Addr().(*net.TCPAddr).Port
}

// release frees the ports, just before the programs that use them start.
func (ps *ports) release() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, ln := range ps.lns {
		ln.Close()
	}
	ps.lns = nil
}

// keyCount is the number of keys per hash x distribution pair.
func keyCount(t *testing.T) int {
	if s := os.Getenv("NUTHATCH_PLACEMENT_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("NUTHATCH_PLACEMENT_KEYS=%q is not a number of at least 10", s)
		}
		return n
	}
	if testing.Short() {
		return 1000
	}
	return 10000
}

// hashes are twemproxy's twelve key hashes.
var hashes = []string{"one_at_a_time", "md5", "crc16", "crc32", "crc32a",
	"fnv1_64", "fnv1a_64", "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins"}

// backend is one servers entry and the process behind it.
type backend struct {
	proc   *harness.Proc
	addr   string // host:port
	name   string // "" = unnamed
	weight int
}

func (b backend) entry() string {
	s := fmt.Sprintf("%s:%d", b.addr, b.weight)
	if b.name != "" {
		s += " " + b.name
	}
	return s
}

// poolDesc is one pool of the shared description.
type poolDesc struct {
	name, hash, dist string
	db               int    // redis_db (redis pools)
	extra            string // more YAML keys, each "  key: value\n"
	// nutListen and hatchListen are the two proxies' listen addresses.
	nutListen, hatchListen string
}

// setup is a nutcracker and a nuthatch running the same pools.
type setup struct {
	pools    []*poolDesc
	backends []backend
	cfg      *config.Config // nuthatch's, for predictions
	nut      *harness.Proc
	hatch    *harness.Proc
}

// yamlFor renders the description with the listen addresses of one proxy.
func yamlFor(pools []*poolDesc, backends []backend, redisPools bool, listen func(*poolDesc) string) string {
	var b strings.Builder
	for _, p := range pools {
		fmt.Fprintf(&b, "%s:\n  listen: %s\n  hash: %s\n  distribution: %s\n  hash_tag: \"{}\"\n  timeout: 5000\n",
			p.name, listen(p), p.hash, p.dist)
		if redisPools {
			fmt.Fprintf(&b, "  redis: true\n  redis_db: %d\n", p.db)
		}
		b.WriteString(p.extra)
		b.WriteString("  servers:\n")
		for _, be := range backends {
			fmt.Fprintf(&b, "   - %s\n", be.entry())
		}
	}
	return b.String()
}

// convertCLI runs "nuthatch convert -" and makes the result test-friendly:
// one worker, no stats listener. It also runs "nuthatch -t" on it.
func convertCLI(t *testing.T, yml string) string {
	t.Helper()
	bin := harness.Binary(t)
	cmd := exec.Command(bin, "convert", "-")
	cmd.Stdin = strings.NewReader(yml)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nuthatch convert: %v\n%s", err, stderr.Bytes())
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" && !strings.HasPrefix(line, "nuthatch: warning: ") {
			t.Errorf("nuthatch convert wrote a non-warning to stderr: %q", line)
		}
	}
	f, diags := hclwrite.ParseConfig(stdout.Bytes(), "converted.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("converted HCL: %v\n%s", diags, stdout.Bytes())
	}
	f.Body().SetAttributeValue("worker_processes", cty.NumberIntVal(1))
	stats := f.Body().FirstMatchingBlock("stats", nil)
	if stats == nil {
		t.Fatalf("converted HCL has no stats block:\n%s", stdout.Bytes())
	}
	stats.Body().SetAttributeValue("listen", cty.StringVal(""))
	out := string(f.Bytes())

	path := filepath.Join(t.TempDir(), "nuthatch.hcl")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command(bin, "-t", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("nuthatch -t rejects the converted configuration: %v\n%s\n%s", err, res, out)
	}
	return out
}

// start writes one description, runs nutcracker on the YAML and nuthatch
// on its conversion.
func start(t *testing.T, pools []*poolDesc, backends []backend, redisPools bool) *setup {
	t.Helper()
	var nutPorts, hatchPorts ports
	defer nutPorts.release()
	defer hatchPorts.release()
	for _, p := range pools {
		p.nutListen = fmt.Sprintf("127.0.0.1:%d", nutPorts.next(t))
		p.hatchListen = fmt.Sprintf("127.0.0.1:%d", hatchPorts.next(t))
	}
	statsPort := nutPorts.next(t)
	nutYAML := yamlFor(pools, backends, redisPools, func(p *poolDesc) string { return p.nutListen })
	hatchHCL := convertCLI(t, yamlFor(pools, backends, redisPools, func(p *poolDesc) string { return p.hatchListen }))
	cfg, err := config.Parse([]byte(hatchHCL), "converted.hcl")
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{pools: pools, backends: backends, cfg: cfg}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nutcracker.yml:\n%s\nnuthatch.hcl:\n%s", nutYAML, hatchHCL)
			for _, p := range []*harness.Proc{s.nut, s.hatch} {
				if p != nil {
					t.Logf("%s output:\n%s", filepath.Base(p.Cmd.Path), p.Output())
				}
			}
		}
	})
	harness.Need(t, "nutcracker")
	conf := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(conf, []byte(nutYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	nutPorts.release()
	s.nut = harness.Start(t, "nutcracker", "-c", conf, "-s", strconv.Itoa(statsPort), "-a", "127.0.0.1", "-v", "4")
	var waits []string
	for _, p := range pools {
		harness.WaitPort(t, "tcp", p.nutListen, 10*time.Second)
		waits = append(waits, p.hatchListen)
	}
	hatchPorts.release()
	s.hatch = harness.Nuthatch(t, hatchHCL, waits...)
	t.Cleanup(func() {
		if s.nut.Exited() {
			t.Errorf("nutcracker died during the test; output:\n%s", s.nut.Output())
		}
		if s.hatch.Exited() {
			t.Errorf("nuthatch died during the test; output:\n%s", s.hatch.Output())
		}
	})
	return s
}

// predict places keys with pkg/hashkit from nuthatch's loaded
// configuration, as pkg/proxy builds its ring.
func (s *setup) predict(t *testing.T, pool string, live []bool, keys []string) []int {
	t.Helper()
	for _, p := range s.cfg.Pools {
		if p.Name != pool {
			continue
		}
		nodes := make([]hashkit.Node, len(p.Servers))
		for i, srv := range p.Servers {
			nodes[i] = hashkit.Node{Name: srv.PlacementName(), Weight: srv.Weight}
		}
		h, err := hashkit.Hash(p.Hash)
		if err != nil {
			t.Fatal(err)
		}
		r, err := hashkit.Build(p.Distribution, nodes, live)
		if err != nil {
			t.Fatal(err)
		}
		pl := hashkit.Placer{Hash: h, HashTag: p.HashTag, Ring: r}
		out := make([]int, len(keys))
		for i, k := range keys {
			out[i] = pl.Server([]byte(k))
		}
		return out
	}
	t.Fatalf("no pool %q in the converted configuration", pool)
	return nil
}

// loopback11211 returns a loopback address whose port 11211 is free,
// skipping the ones in taken; 127.0.0.1 is tried last, as a local
// memcached often holds it.
func loopback11211(t *testing.T, taken ...string) string {
	t.Helper()
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.1"} {
		if strings.Contains(strings.Join(taken, " "), ip) {
			continue
		}
		ln, err := net.Listen("tcp", ip+":11211")
		if err != nil {
			continue
		}
		ln.Close()
		return ip
	}
	t.Skip("no loopback address has port 11211 free")
	return ""
}

// ---------------------------------------------------------------- redis

func startRedis(t *testing.T, ip string, port int) *harness.Proc {
	t.Helper()
	harness.Need(t, "redis-server")
	p := harness.Start(t, "redis-server", "--port", strconv.Itoa(port), "--bind", ip,
		"--save", "", "--appendonly", "no", "--databases", "64", "--dir", t.TempDir())
	p.Port, p.Addr = port, net.JoinHostPort(ip, strconv.Itoa(port))
	harness.WaitPort(t, "tcp", p.Addr, 10*time.Second)
	return p
}

// redisBackends starts four redis-servers: unnamed and named, mixed
// weights, and (when ip11211 is set) one on port 11211, whose port
// twemproxy leaves out of the server's name.
func redisBackends(t *testing.T, ip11211 string) []backend {
	t.Helper()
	mk := func(ip string, port int, name string, weight int) backend {
		p := startRedis(t, ip, port)
		return backend{proc: p, addr: p.Addr, name: name, weight: weight}
	}
	third := mk("127.0.0.1", harness.FreePort(t), "", 2)
	if ip11211 != "" {
		third = mk(ip11211, 11211, "", 2)
	}
	return []backend{
		mk("127.0.0.1", harness.FreePort(t), "", 1),
		mk("127.0.0.1", harness.FreePort(t), "alpha", 3),
		third,
		mk("127.0.0.1", harness.FreePort(t), "delta", 5),
	}
}

// respConn is a pipelining RESP client for the proxies. go-redis cannot
// be used there: it opens every connection with HELLO, which nutcracker
// answers by closing the connection.
type respConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialRESP(t *testing.T, addr string) *respConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &respConn{c: c, r: bufio.NewReaderSize(c, 1<<16), w: bufio.NewWriterSize(c, 1<<16)}
}

func (rc *respConn) send(args ...string) {
	fmt.Fprintf(rc.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(rc.w, "$%d\r\n%s\r\n", len(a), a)
	}
}

// errReply is a RESP error reply.
type errReply string

func (e errReply) Error() string { return string(e) }

// reply reads one non-array reply: a status or bulk string, an integer as
// text, nil for a nil bulk, or an errReply.
func (rc *respConn) reply() (*string, error) {
	rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, fmt.Errorf("empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+', ':':
		return &body, nil
	case '-':
		return nil, errReply(body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return nil, err
		}
		v := string(buf[:n])
		return &v, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

// redisSet writes keys (value = index) through a proxy, pipelined.
func redisSet(rc *respConn, keys []string) error {
	for lo := 0; lo < len(keys); lo += batch {
		hi := min(lo+batch, len(keys))
		for i := lo; i < hi; i++ {
			rc.send("SET", keys[i], strconv.Itoa(i))
		}
		if err := rc.w.Flush(); err != nil {
			return err
		}
		for i := lo; i < hi; i++ {
			v, err := rc.reply()
			if err != nil || v == nil || *v != "OK" {
				return fmt.Errorf("SET %q: %v, %v", keys[i], v, err)
			}
		}
	}
	return nil
}

// redisGetAll reads keys through a proxy and checks every value.
func redisGetAll(rc *respConn, keys []string) error {
	for lo := 0; lo < len(keys); lo += batch {
		hi := min(lo+batch, len(keys))
		for i := lo; i < hi; i++ {
			rc.send("GET", keys[i])
		}
		if err := rc.w.Flush(); err != nil {
			return err
		}
		for i := lo; i < hi; i++ {
			v, err := rc.reply()
			if err != nil || v == nil || *v != strconv.Itoa(i) {
				got := "nil"
				if v != nil {
					got = strconv.Quote(*v)
				}
				return fmt.Errorf("key %d (%q): got %s, %v; want %d", i, keys[i], got, err, i)
			}
		}
	}
	return nil
}

func backendClient(t *testing.T, addr string, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db, Protocol: 2, DisableIdentity: true, PoolSize: 2})
	t.Cleanup(func() { c.Close() })
	return c
}

// redisKeys returns n distinct keys: the empty key, plain, hash-tagged
// (whole and empty tags), binary (NUL, CR LF, high bytes) and long keys.
func redisKeys(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{"": true}
	keys := []string{""}
	for len(keys) < n {
		var k string
		switch i := len(keys); i % 6 {
		case 0:
			k = fmt.Sprintf("key:%d", i)
		case 1:
			k = fmt.Sprintf("user:{%d}:%d", r.IntN(500), i)
		case 2:
			b := make([]byte, 1+r.IntN(40))
			for j := range b {
				b[j] = byte(r.IntN(256))
			}
			k = string(b)
		case 3:
			k = fmt.Sprintf("{}%d{x}", i)
		case 4:
			b := make([]byte, 100+r.IntN(150))
			for j := range b {
				b[j] = byte(33 + r.IntN(94))
			}
			k = string(b)
		case 5:
			b := make([]byte, 1+r.IntN(8))
			for j := range b {
				b[j] = byte(0x80 + r.IntN(0x80))
			}
			k = string(b)
		}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// redisOwners scans database db of every backend and returns the index of
// the backend holding each key (-1 if none). A key on two backends, or a
// stray key, is an error. dead backends are skipped.
func redisOwners(ctx context.Context, t *testing.T, backends []backend, db int, keys []string, dead map[int]bool) ([]int, error) {
	index := make(map[string]int, len(keys))
	for i, k := range keys {
		index[k] = i
	}
	owners := make([]int, len(keys))
	for i := range owners {
		owners[i] = -1
	}
	for bi, b := range backends {
		if dead[bi] {
			continue
		}
		c := backendClient(t, b.addr, db)
		var cursor uint64
		for {
			page, next, err := c.Scan(ctx, cursor, "", 5000).Result()
			if err != nil {
				return nil, err
			}
			for _, k := range page {
				i, ok := index[k]
				if !ok {
					return nil, fmt.Errorf("backend %d holds unexpected key %q", bi, k)
				}
				if owners[i] >= 0 && owners[i] != bi {
					return nil, fmt.Errorf("key %q is on backends %d and %d", k, owners[i], bi)
				}
				owners[i] = bi
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return owners, nil
}

func redisFlush(ctx context.Context, t *testing.T, backends []backend, db int, dead map[int]bool) error {
	for bi, b := range backends {
		if !dead[bi] {
			if err := backendClient(t, b.addr, db).FlushDB(ctx).Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// compareOwners reports the first key placed differently.
func compareOwners(keys []string, what string, a, b []int) error {
	for i := range keys {
		if a[i] != b[i] {
			return fmt.Errorf("key %d (%q): %s differ: %d vs %d", i, keys[i], what, a[i], b[i])
		}
	}
	return nil
}

// roundTrip writes keys through from, reads them through to, and returns
// where they landed; it then empties the pool's database.
func roundTrip(ctx context.Context, t *testing.T, s *setup, from, to *respConn, db int, keys []string, dead map[int]bool) ([]int, error) {
	if err := redisSet(from, keys); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	if err := redisGetAll(to, keys); err != nil {
		return nil, fmt.Errorf("read back through the other proxy: %w", err)
	}
	owners, err := redisOwners(ctx, t, s.backends, db, keys, dead)
	if err != nil {
		return nil, err
	}
	for i, o := range owners {
		if o < 0 {
			return nil, fmt.Errorf("key %d (%q) is on no backend", i, keys[i])
		}
	}
	return owners, redisFlush(ctx, t, s.backends, db, dead)
}

func redisPools(withRandom bool) []*poolDesc {
	var pools []*poolDesc
	for _, d := range []string{hashkit.Ketama, hashkit.Modula} {
		for _, h := range hashes {
			pools = append(pools, &poolDesc{name: d + "_" + h, hash: h, dist: d, db: len(pools)})
		}
	}
	if withRandom {
		pools = append(pools, &poolDesc{name: "random", hash: "fnv1a_64", dist: hashkit.Random, db: len(pools)})
	}
	return pools
}

// TestRedisPlacement: for every hash x {ketama, modula}, keys written
// through nutcracker are read through nuthatch and the other way round,
// and land on the same redis-server either way, where pkg/hashkit says.
func TestRedisPlacement(t *testing.T) {
	harness.Need(t, "nutcracker", "redis-server")
	n := keyCount(t)
	s := start(t, redisPools(true), redisBackends(t, loopback11211(t)), true)
	keys := redisKeys(n)
	ctx := context.Background()

	t.Run("pairs", func(t *testing.T) {
		for _, p := range s.pools {
			if p.dist == hashkit.Random {
				continue
			}
			t.Run(p.name, func(t *testing.T) {
				t.Parallel()
				nut, hatch := dialRESP(t, p.nutListen), dialRESP(t, p.hatchListen)
				a, err := roundTrip(ctx, t, s, nut, hatch, p.db, keys, nil)
				if err != nil {
					t.Fatalf("nutcracker -> nuthatch: %v", err)
				}
				b, err := roundTrip(ctx, t, s, hatch, nut, p.db, keys, nil)
				if err != nil {
					t.Fatalf("nuthatch -> nutcracker: %v", err)
				}
				if err := compareOwners(keys, "nutcracker and nuthatch placements", a, b); err != nil {
					t.Fatal(err)
				}
				if err := compareOwners(keys, "nutcracker and pkg/hashkit placements", a, s.predict(t, p.name, nil, keys)); err != nil {
					t.Fatal(err)
				}
			})
		}
	})

	t.Run("random", func(t *testing.T) {
		p := s.pools[len(s.pools)-1]
		hatch := dialRESP(t, p.hatchListen)
		if err := redisSet(hatch, keys); err != nil {
			t.Fatal(err)
		}
		owners, err := redisOwners(ctx, t, s.backends, p.db, keys, nil)
		if err != nil {
			t.Fatal(err)
		}
		// random ignores weights: each of the four servers should get
		// about a quarter of the keys.
		counts := make([]int, len(s.backends))
		for _, o := range owners {
			if o < 0 {
				t.Fatal("a key written through nuthatch is on no backend")
			}
			counts[o]++
		}
		for i, c := range counts {
			if c < n/8 {
				t.Errorf("random: backend %d got %d of %d keys (counts %v)", i, c, n, counts)
			}
		}
	})
}

// TestRedisEjectedPlacement kills one backend and checks that, once both
// proxies have ejected it (auto_eject_hosts, server_failure_limit 1),
// they place keys identically over the remaining servers.
func TestRedisEjectedPlacement(t *testing.T) {
	harness.Need(t, "nutcracker", "redis-server")
	n := keyCount(t) / 2
	pools := []*poolDesc{
		{name: "eject_ketama", hash: "fnv1a_64", dist: hashkit.Ketama, db: 0},
		{name: "eject_modula", hash: "murmur", dist: hashkit.Modula, db: 1},
	}
	for _, p := range pools {
		p.extra = "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n"
	}
	backends := redisBackends(t, "")
	s := start(t, pools, backends, true)
	keys := redisKeys(n)
	ctx := context.Background()

	const deadIdx = 3 // "delta", the heaviest
	backends[deadIdx].proc.Kill()
	dead := map[int]bool{deadIdx: true}
	live := []bool{true, true, true, false}

	for _, p := range pools {
		t.Run(p.name, func(t *testing.T) {
			before := s.predict(t, p.name, nil, keys)
			var onDead []string
			for i, o := range before {
				if o == deadIdx {
					onDead = append(onDead, keys[i])
				}
			}
			nut, hatch := dialRESP(t, p.nutListen), dialRESP(t, p.hatchListen)
			for _, c := range []struct {
				name string
				cl   *respConn
			}{{"nutcracker", nut}, {"nuthatch", hatch}} {
				if err := ejectDead(c.cl, onDead); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
			}
			a, err := roundTrip(ctx, t, s, nut, hatch, p.db, keys, dead)
			if err != nil {
				t.Fatalf("nutcracker -> nuthatch during the outage: %v", err)
			}
			b, err := roundTrip(ctx, t, s, hatch, nut, p.db, keys, dead)
			if err != nil {
				t.Fatalf("nuthatch -> nutcracker during the outage: %v", err)
			}
			if err := compareOwners(keys, "nutcracker and nuthatch placements", a, b); err != nil {
				t.Fatal(err)
			}
			if err := compareOwners(keys, "nutcracker and pkg/hashkit placements", a, s.predict(t, p.name, live, keys)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// ejectDead sends GETs for keys owned by the dead server until one is
// answered without an error: the proxy has ejected the server and rebuilt
// its ring.
func ejectDead(rc *respConn, onDead []string) error {
	failed := false
	var last error
	for i := 0; i < 200; i++ {
		rc.send("GET", onDead[i%len(onDead)])
		if err := rc.w.Flush(); err != nil {
			return err
		}
		_, err := rc.reply()
		var er errReply
		switch {
		case err == nil && failed:
			return nil
		case err == nil:
			return fmt.Errorf("a key of the dead server was answered before any failure")
		case !errors.As(err, &er):
			return err
		}
		failed, last = true, err
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("the dead server was never ejected; last error: %v", last)
}

// ------------------------------------------------------------- memcache

// mcConn is a pipelining memcache text-protocol client.
type mcConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialMC(t *testing.T, addr string) *mcConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &mcConn{c: c, r: bufio.NewReaderSize(c, 1<<16), w: bufio.NewWriterSize(c, 1<<16)}
}

func (m *mcConn) line() (string, error) {
	m.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	s, err := m.r.ReadString('\n')
	return strings.TrimSuffix(s, "\r\n"), err
}

// set stores key=value (index) for every key, pipelined.
func (m *mcConn) set(keys []string) error {
	for lo := 0; lo < len(keys); lo += batch {
		hi := min(lo+batch, len(keys))
		for i := lo; i < hi; i++ {
			v := strconv.Itoa(i)
			fmt.Fprintf(m.w, "set %s 0 0 %d\r\n%s\r\n", keys[i], len(v), v)
		}
		if err := m.w.Flush(); err != nil {
			return err
		}
		for i := lo; i < hi; i++ {
			l, err := m.line()
			if err != nil || l != "STORED" {
				return fmt.Errorf("set %q: %q, %v", keys[i], l, err)
			}
		}
	}
	return nil
}

// get returns each key's value, or "" when missing, pipelined.
func (m *mcConn) get(keys []string) ([]string, error) {
	out := make([]string, len(keys))
	for lo := 0; lo < len(keys); lo += batch {
		hi := min(lo+batch, len(keys))
		for i := lo; i < hi; i++ {
			fmt.Fprintf(m.w, "get %s\r\n", keys[i])
		}
		if err := m.w.Flush(); err != nil {
			return nil, err
		}
		for i := lo; i < hi; i++ {
			l, err := m.line()
			if err != nil {
				return nil, err
			}
			if l == "END" {
				continue
			}
			f := strings.Fields(l)
			if len(f) != 4 || f[0] != "VALUE" || f[1] != keys[i] {
				return nil, fmt.Errorf("get %q: unexpected %q", keys[i], l)
			}
			v, err := m.line()
			if err != nil {
				return nil, err
			}
			out[i] = v
			if l, err = m.line(); err != nil || l != "END" {
				return nil, fmt.Errorf("get %q: %q instead of END (%v)", keys[i], l, err)
			}
		}
	}
	return out, nil
}

// del deletes keys and waits for every reply, so that a later write
// through a proxy cannot race with a pending delete.
func (m *mcConn) del(keys []string) error {
	for lo := 0; lo < len(keys); lo += batch {
		hi := min(lo+batch, len(keys))
		for _, k := range keys[lo:hi] {
			fmt.Fprintf(m.w, "delete %s\r\n", k)
		}
		if err := m.w.Flush(); err != nil {
			return err
		}
		for _, k := range keys[lo:hi] {
			if l, err := m.line(); err != nil || l != "DELETED" {
				return fmt.Errorf("delete %q: %q, %v", k, l, err)
			}
		}
	}
	return nil
}

// mcKeys returns n distinct memcache keys (printable, no spaces): plain,
// hash-tagged, random and long ones.
func mcKeys(n int) []string {
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[string]bool{}
	var keys []string
	for len(keys) < n {
		var k string
		switch i := len(keys); i % 4 {
		case 0:
			k = fmt.Sprintf("key:%d", i)
		case 1:
			k = fmt.Sprintf("user:{%d}:%d", r.IntN(500), i)
		case 2, 3:
			b := make([]byte, 1+r.IntN(40+200*(i%4-2)))
			for j := range b {
				b[j] = byte(33 + r.IntN(94))
			}
			k = string(b)
		}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// TestMemcachePlacement is TestRedisPlacement for memcached: three
// servers, one of them on port 11211 and one named.
func TestMemcachePlacement(t *testing.T) {
	harness.Need(t, "nutcracker", "memcached")
	n := keyCount(t)
	ip := loopback11211(t)
	mk := func(ip string, port int, name string, weight int) backend {
		args := []string{"-l", ip, "-p", strconv.Itoa(port), "-U", "0", "-m", "256"}
		if os.Getuid() == 0 {
			args = append(args, "-u", "root")
		}
		p := harness.Start(t, "memcached", args...)
		p.Port, p.Addr = port, net.JoinHostPort(ip, strconv.Itoa(port))
		harness.WaitPort(t, "tcp", p.Addr, 10*time.Second)
		return backend{proc: p, addr: p.Addr, name: name, weight: weight}
	}
	backends := []backend{
		mk("127.0.0.1", harness.FreePort(t), "", 1),
		mk(ip, 11211, "", 2),
		mk("127.0.0.1", harness.FreePort(t), "gamma", 3),
	}
	s := start(t, redisPools(false), backends, false)
	base := mcKeys(n)

	for pi, p := range s.pools {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			// Pools share the servers, so each uses its own key prefix.
			keys := make([]string, len(base))
			for i, k := range base {
				keys[i] = fmt.Sprintf("p%d:%s", pi, k)
			}
			nut, hatch := dialMC(t, p.nutListen), dialMC(t, p.hatchListen)
			direct := make([]*mcConn, len(backends))
			for i, b := range backends {
				direct[i] = dialMC(t, b.addr)
			}
			trip := func(from, to *mcConn) ([]int, error) {
				if err := from.set(keys); err != nil {
					return nil, fmt.Errorf("write: %w", err)
				}
				vals, err := to.get(keys)
				if err != nil {
					return nil, fmt.Errorf("read through the other proxy: %w", err)
				}
				for i, v := range vals {
					if v != strconv.Itoa(i) {
						return nil, fmt.Errorf("key %q: read %q through the other proxy, want %d", keys[i], v, i)
					}
				}
				owners := make([]int, len(keys))
				for i := range owners {
					owners[i] = -1
				}
				for bi, d := range direct {
					vals, err := d.get(keys)
					if err != nil {
						return nil, fmt.Errorf("backend %d: %w", bi, err)
					}
					var mine []string
					for i, v := range vals {
						if v == "" {
							continue
						}
						if owners[i] >= 0 {
							return nil, fmt.Errorf("key %q is on backends %d and %d", keys[i], owners[i], bi)
						}
						owners[i] = bi
						mine = append(mine, keys[i])
					}
					if err := d.del(mine); err != nil {
						return nil, err
					}
				}
				for i, o := range owners {
					if o < 0 {
						return nil, fmt.Errorf("key %q is on no backend", keys[i])
					}
				}
				return owners, nil
			}
			a, err := trip(nut, hatch)
			if err != nil {
				t.Fatalf("nutcracker -> nuthatch: %v", err)
			}
			b, err := trip(hatch, nut)
			if err != nil {
				t.Fatalf("nuthatch -> nutcracker: %v", err)
			}
			if err := compareOwners(keys, "nutcracker and nuthatch placements", a, b); err != nil {
				t.Fatal(err)
			}
			if err := compareOwners(keys, "nutcracker and pkg/hashkit placements", a, s.predict(t, p.name, nil, keys)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
