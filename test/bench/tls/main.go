// Command tls is make bench's TLS group: redis-benchmark --tls GET/SET,
// unpipelined and 16 deep, 50 clients, through nuthatch (TLS to clients;
// TLS on both sides; the same pool's plaintext listener as the baseline),
// stunnel4 in front of nutcracker (the usual workaround) and redis-server's
// own TLS (the ceiling of one instance), with the CPU per request of every
// process in the path. It writes a markdown table.
package main

import (
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
)

var (
	bin     = flag.String("nuthatch", "bin/nuthatch", "nuthatch binary")
	out     = flag.String("out", "bin/bench/tls.md", "report")
	n       = flag.Int("n", 100000, "requests per unpipelined run (x5 pipelined)")
	workers = flag.Int("workers", 1, "nuthatch worker_processes")
)

type proc struct {
	name string
	cmd  *exec.Cmd
}

var procs []*proc

func start(name string, args ...string) *proc {
	cmd := exec.Command(name, args...)
	logf, _ := os.Create(filepath.Join(dir, filepath.Base(name)+"-"+strconv.Itoa(len(procs))+".log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		fatal(fmt.Errorf("%s: %w", name, err))
	}
	p := &proc{name: name, cmd: cmd}
	procs = append(procs, p)
	return p
}

func stopAll() {
	for _, p := range procs {
		p.cmd.Process.Signal(os.Interrupt)
	}
	for _, p := range procs {
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench/tls:", err)
	stopAll()
	if dir != "" {
		// The processes' logs say why; then nothing is left behind.
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, l := range logs {
			if b, _ := os.ReadFile(l); len(b) > 0 {
				fmt.Fprintf(os.Stderr, "--- %s\n%s", filepath.Base(l), b[max(0, len(b)-2000):])
			}
		}
		os.RemoveAll(dir)
	}
	os.Exit(1)
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitPort(port int) {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
	}
	fatal(fmt.Errorf("port %d not accepting", port))
}

var dir string

// ticks is utime+stime of pid and its descendants.
func ticks(pids []int) int64 {
	var t int64
	for _, pid := range pids {
		for _, p := range tree(pid) {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
			if err != nil {
				continue
			}
			f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			t += u + s
		}
	}
	return t
}

func tree(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	kids := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		pp, _ := strconv.Atoi(f[1])
		kids[pp] = append(kids[pp], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i]]...)
	}
	return out
}

type target struct {
	name  string
	port  int
	tls   bool
	path  []int // pids of the proxy path (CPU counted)
	backs []int // backends' pids
}

type row struct {
	target, test    string
	depth           int
	rps             float64
	p99             float64
	pathUS, backsUS float64 // CPU µs per request
}

func bench(t target, depth int, ca string) []row {
	reqs := *n
	if depth > 1 {
		reqs *= 5
	}
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(t.port), "-c", "50", "-n", strconv.Itoa(reqs), "-P", strconv.Itoa(depth),
		"-r", "10000", "-d", "100", "-t", "get,set", "--csv"}
	if t.tls {
		args = append(args, "--tls", "--cacert", ca, "--sni", "localhost")
	}
	var rows []row
	// One run per test, so that the CPU is that test's.
	for _, test := range []string{"set", "get"} {
		a := append([]string{}, args...)
		a[len(a)-len(args)+13] = test // -t value
		p0, b0 := ticks(t.path), ticks(t.backs)
		outb, err := exec.Command("redis-benchmark", a...).Output()
		if err != nil {
			fatal(fmt.Errorf("redis-benchmark %s: %w", t.name, err))
		}
		p1, b1 := ticks(t.path), ticks(t.backs)
		recs, err := csv.NewReader(bytes.NewReader(outb)).ReadAll()
		if err != nil || len(recs) < 2 {
			fatal(fmt.Errorf("redis-benchmark output %q", outb))
		}
		rps, _ := strconv.ParseFloat(recs[1][1], 64)
		p99, _ := strconv.ParseFloat(recs[1][6], 64)
		tick := 1e6 / 100.0 // µs per clock tick (CLK_TCK 100)
		rows = append(rows, row{target: t.name, test: strings.ToUpper(test), depth: depth, rps: rps, p99: p99,
			pathUS: float64(p1-p0) * tick / float64(reqs), backsUS: float64(b1-b0) * tick / float64(reqs)})
		fmt.Fprintf(os.Stderr, "%-28s %s P%-2d %9.0f rps  p99 %6.2f ms  path %5.2f µs/req  backends %5.2f µs/req\n",
			t.name, strings.ToUpper(test), depth, rps, p99, rows[len(rows)-1].pathUS, rows[len(rows)-1].backsUS)
	}
	return rows
}

func main() {
	flag.Parse()
	var err error
	if dir, err = os.MkdirTemp("", "nuthatch-bench-tls"); err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, err := tlstest.MakeCA(dir, "ca")
	if err != nil {
		fatal(err)
	}
	leaf, err := ca.MakeLeaf("server", "localhost")
	if err != nil {
		fatal(err)
	}
	redis := func(tlsPort bool) (*proc, int) {
		port := freePort()
		args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}
		if tlsPort {
			args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", leaf.CertFile,
				"--tls-key-file", leaf.KeyFile, "--tls-ca-cert-file", ca.File, "--tls-auth-clients", "no")
		} else {
			args = append(args, "--port", strconv.Itoa(port))
		}
		p := start("redis-server", args...)
		waitPort(port)
		return p, port
	}
	defer stopAll()
	b1, b1p := redis(false)
	b2, b2p := redis(false)
	backs := []int{b1.cmd.Process.Pid, b2.cmd.Process.Pid}
	var targets []target

	// nuthatch: one pool, plaintext listen and tls.listen, the same servers.
	plain, secure, stats := freePort(), freePort(), freePort()
	conf := filepath.Join(dir, "nuthatch.hcl")
	os.WriteFile(conf, []byte(fmt.Sprintf(`worker_processes = %d
stats {
  listen = "127.0.0.1:%d"
}
pool "bench" {
  listen = "127.0.0.1:%d"
  protocol = "redis"
  tls {
    listen = "127.0.0.1:%d"
    cert = %q
    key = %q
  }
  server "127.0.0.1:%d" {}
  server "127.0.0.1:%d" {}
}
`, *workers, stats, plain, secure, leaf.CertFile, leaf.KeyFile, b1p, b2p)), 0o644)
	nh := start(*bin, "-c", conf)
	waitPort(secure)
	waitPort(plain)
	targets = append(targets,
		target{name: "nuthatch plaintext", port: plain, path: []int{nh.cmd.Process.Pid}, backs: backs},
		target{name: "nuthatch TLS (clients)", port: secure, tls: true, path: []int{nh.cmd.Process.Pid}, backs: backs})

	// nuthatch with TLS on both sides.
	t1, t1p := redis(true)
	t2, t2p := redis(true)
	tback := []int{t1.cmd.Process.Pid, t2.cmd.Process.Pid}
	both, stats2 := freePort(), freePort()
	conf2 := filepath.Join(dir, "nuthatch-both.hcl")
	os.WriteFile(conf2, []byte(fmt.Sprintf(`worker_processes = %d
stats {
  listen = "127.0.0.1:%d"
}
pool "both" {
  listen = "127.0.0.1:%d"
  protocol = "redis"
  tls {
    cert = %q
    key = %q
  }
  server_tls {
    ca = %q
  }
  server "127.0.0.1:%d" {}
  server "127.0.0.1:%d" {}
}
`, *workers, stats2, both, leaf.CertFile, leaf.KeyFile, ca.File, t1p, t2p)), 0o644)
	nh2 := start(*bin, "-c", conf2)
	waitPort(both)
	targets = append(targets, target{name: "nuthatch TLS (both sides)", port: both, tls: true, path: []int{nh2.cmd.Process.Pid}, backs: tback})

	// stunnel4 -> nutcracker.
	if _, err := exec.LookPath("nutcracker"); err == nil {
		if _, err := exec.LookPath("stunnel4"); err == nil {
			nc := freePort()
			yml := filepath.Join(dir, "nutcracker.yml")
			os.WriteFile(yml, []byte(fmt.Sprintf("bench:\n  listen: 127.0.0.1:%d\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  servers:\n   - 127.0.0.1:%d:1\n   - 127.0.0.1:%d:1\n", nc, b1p, b2p)), 0o644)
			ncp := start("nutcracker", "-c", yml, "-s", strconv.Itoa(freePort()), "-a", "127.0.0.1")
			waitPort(nc)
			st := freePort()
			sconf := filepath.Join(dir, "stunnel.conf")
			os.WriteFile(sconf, []byte(fmt.Sprintf("foreground = yes\npid =\n[redis]\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\ncert = %s\nkey = %s\n", st, nc, leaf.CertFile, leaf.KeyFile)), 0o644)
			stp := start("stunnel4", sconf)
			waitPort(st)
			targets = append(targets, target{name: "stunnel4 -> nutcracker", port: st, tls: true, path: []int{stp.cmd.Process.Pid, ncp.cmd.Process.Pid}, backs: backs})
			if _, err := exec.LookPath("haproxy"); err == nil {
				// HAProxy terminating TLS (mode tcp, ssl crt) in front of
				// the same nutcracker.
				pem := filepath.Join(dir, "haproxy.pem")
				c, _ := os.ReadFile(leaf.CertFile)
				k, _ := os.ReadFile(leaf.KeyFile)
				os.WriteFile(pem, append(c, k...), 0o600)
				hp := freePort()
				hconf := filepath.Join(dir, "haproxy.cfg")
				os.WriteFile(hconf, []byte(fmt.Sprintf("global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"+
					"frontend f\n  bind 127.0.0.1:%d ssl crt %s\n  default_backend b\nbackend b\n  server nc 127.0.0.1:%d\n", hp, pem, nc)), 0o644)
				hpp := start("haproxy", "-db", "-f", hconf)
				waitPort(hp)
				targets = append(targets, target{name: "HAProxy (ssl) -> nutcracker", port: hp, tls: true, path: []int{hpp.cmd.Process.Pid, ncp.cmd.Process.Pid}, backs: backs})
			}
		}
	}
	// redis-server's own TLS: one instance, the ceiling.
	rt, rtp := redis(true)
	targets = append(targets, target{name: "redis-server TLS (direct)", port: rtp, tls: true, path: []int{rt.cmd.Process.Pid}})

	var rows []row
	for _, depth := range []int{1, 16} {
		for _, t := range targets {
			rows = append(rows, bench(t, depth, ca.File)...)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# TLS benchmark\n\nredis-benchmark -c 50 -d 100 -r 10000, %d requests unpipelined, %d at -P 16; nuthatch worker_processes = %d; "+
		"CPU is utime+stime per request of the proxy path (nuthatch master and workers; stunnel4 and nutcracker; redis-server) and of the backends. %s, %s.\n\n",
		*n, *n*5, *workers, time.Now().UTC().Format(time.RFC3339), "2 CPUs shared by the generator, the proxies and the backends")
	b.WriteString("| target | test | depth | req/s | p99 ms | path CPU µs/req | backends CPU µs/req |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.2f | %.2f | %.2f |\n", r.target, r.test, r.depth, r.rps, r.p99, r.pathUS, r.backsUS)
	}
	os.MkdirAll(filepath.Dir(*out), 0o755)
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fatal(err)
	}
	fmt.Print(b.String())
}
