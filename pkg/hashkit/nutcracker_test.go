package hashkit

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit/hashkittest"
)

var update = flag.Bool("update", false, "rewrite "+goldenFile+" from a live nutcracker")

const (
	liveKeys  = 2000 // keys per normal case
	ejectKeys = 1000 // keys per ejection case
	ejected   = 1    // index of the server killed for the ejection cases
)

// TestNutcrackerPlacement runs the real nutcracker in front of redis
// servers, writes keys through it, finds which backend holds each key, and
// compares with this package. With -update it rewrites the golden file.
func TestNutcrackerPlacement(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nutcracker and redis-server")
	}
	for _, bin := range []string{"nutcracker", "redis-server"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	dir := t.TempDir()
	var ports portPool
	defer ports.release()
	freePort := ports.next

	// Five backends: unnamed, named with weight, unnamed on 11211 (its
	// port is dropped from the ring name), unnamed, unix socket. The
	// weights total 25 with five servers live, which hits float32
	// rounding in ketama's point count.
	addr11211 := free11211(t)
	sock := filepath.Join(dir, "r4.sock")
	type backend struct {
		srv           goldenServer
		conf          string // the "servers:" entry
		network, addr string
	}
	var backends []backend
	add := func(network, addr, name string, weight int) {
		label, conf := addr, fmt.Sprintf("%s:%d", addr, weight)
		if name != "" {
			label = name
			conf += " " + name
		}
		backends = append(backends, backend{goldenServer{label, name != "", weight}, conf, network, addr})
	}
	add("tcp", "127.0.0.1:"+freePort(t), "", 1)
	add("tcp", "127.0.0.1:"+freePort(t), "alpha", 3)
	add("tcp", addr11211, "", 2)
	add("tcp", "127.0.0.1:"+freePort(t), "", 14)
	add("unix", sock, "", 5)

	// One pool per case; ejection pools are used only after the kill.
	type pool struct {
		c      goldenCase
		listen string
		keys   int
	}
	var pools []pool
	all := []bool{true, true, true, true, true}
	eject := []bool{true, true, true, true, true}
	eject[ejected] = false
	for _, d := range []string{Ketama, Modula} {
		for _, h := range HashNames() {
			pools = append(pools, pool{goldenCase{hash: h, dist: d, live: all}, "127.0.0.1:" + freePort(t), liveKeys})
		}
	}
	for _, d := range []string{Ketama, Modula} {
		for _, h := range []string{"fnv1a_64", "murmur"} {
			pools = append(pools, pool{goldenCase{hash: h, dist: d, tag: "{}", live: all}, "127.0.0.1:" + freePort(t), liveKeys})
		}
	}
	for _, d := range []string{Ketama, Modula} {
		for _, h := range HashNames() {
			pools = append(pools, pool{goldenCase{hash: h, dist: d, live: eject}, "127.0.0.1:" + freePort(t), ejectKeys})
		}
	}

	var conf strings.Builder
	for i, p := range pools {
		autoEject := !p.c.live[ejected]
		fmt.Fprintf(&conf, "p%d:\n  listen: %s\n  hash: %s\n  distribution: %s\n", i, p.listen, p.c.hash, p.c.dist)
		if p.c.tag != "" {
			fmt.Fprintf(&conf, "  hash_tag: %q\n", p.c.tag)
		}
		fmt.Fprintf(&conf, "  redis: true\n  timeout: 5000\n  auto_eject_hosts: %v\n", autoEject)
		if autoEject {
			conf.WriteString("  server_failure_limit: 1\n  server_retry_timeout: 600000\n")
		}
		conf.WriteString("  servers:\n")
		for _, b := range backends {
			fmt.Fprintf(&conf, "   - %s\n", b.conf)
		}
	}
	statsPort := freePort(t)
	ports.release()

	redis := make([]*exec.Cmd, len(backends))
	servers := make([]goldenServer, len(backends))
	for i, b := range backends {
		redis[i] = startRedis(t, dir, i, b.network, b.addr)
		servers[i] = b.srv
	}

	confPath := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nutcracker", "-t", "-c", confPath).CombinedOutput(); err != nil {
		t.Fatalf("nutcracker -t: %v\n%s\n%s", err, out, conf.String())
	}
	nc := exec.Command("nutcracker", "-c", confPath, "-o", filepath.Join(dir, "nutcracker.log"),
		"-s", statsPort, "-a", "127.0.0.1", "-p", filepath.Join(dir, "nutcracker.pid"))
	startProc(t, nc)
	for _, p := range pools {
		waitDial(t, "tcp", p.listen)
	}

	direct := make([]*respConn, len(backends))
	for i, b := range backends {
		direct[i] = dialResp(t, b.network, b.addr)
	}

	var cases []goldenCase
	killed := false
	for _, p := range pools {
		keys := hashkittest.GoldenKeys(p.keys)
		if !p.c.live[ejected] && !killed {
			stopProc(redis[ejected])
			killed = true
		}
		for i, d := range direct {
			if p.c.live[i] {
				d.mustOK(t, [][]byte{[]byte("FLUSHALL")})
			}
		}
		px := dialResp(t, "tcp", p.listen)
		if !p.c.live[ejected] {
			// Ring as nutcracker has it before the ejection.
			before := predict(t, servers, goldenCase{hash: p.c.hash, dist: p.c.dist, live: all}, keys)
			if !triggerEjection(t, px, before, keys) {
				// crc32 yields 15-bit hashes, which ketama sends to a
				// sliver of the ring: nothing reaches the dead server, so
				// nutcracker never ejects it.
				t.Logf("%s/%s: no key reaches server %d, ejection case skipped", p.c.hash, p.c.dist, ejected)
				continue
			}
		}
		cmds := make([][][]byte, len(keys))
		for i, k := range keys {
			cmds[i] = [][]byte{[]byte("SET"), k, []byte(strconv.Itoa(i))}
		}
		for i, r := range px.pipeline(t, cmds) {
			if r != "+OK" {
				t.Fatalf("pool %s/%s: SET key %d through nutcracker: %q", p.c.hash, p.c.dist, i, r)
			}
		}
		px.c.Close()

		owner := make([]byte, len(keys))
		for i := range owner {
			owner[i] = '?'
		}
		for s, d := range direct {
			if !p.c.live[s] {
				continue
			}
			ex := make([][][]byte, len(keys))
			for i, k := range keys {
				ex[i] = [][]byte{[]byte("EXISTS"), k}
			}
			for i, r := range d.pipeline(t, ex) {
				if r == ":1" {
					if owner[i] != '?' {
						t.Fatalf("key %d on servers %c and %d", i, owner[i], s)
					}
					owner[i] = byte('0' + s)
				}
			}
		}
		c := p.c
		c.servers = string(owner)
		if strings.IndexByte(c.servers, '?') >= 0 { // includes keys sent to a dead server
			t.Fatalf("pool %s/%s: some keys found on no backend: %s", c.hash, c.dist, c.servers)
		}
		if got := predict(t, servers, c, keys); got != c.servers {
			i := 0
			for got[i] == c.servers[i] {
				i++
			}
			t.Errorf("%s/%s tag=%q live=%s: key %d (%q) placed on %c, nutcracker used %c",
				c.hash, c.dist, c.tag, c.liveString(), i, keys[i], got[i], c.servers[i])
		}
		cases = append(cases, c)
	}
	if *update {
		if err := writeGolden(goldenFile, servers, cases); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d cases)", goldenFile, len(cases))
	}
}

// triggerEjection sends a GET for a key that lives on the dead server
// until nutcracker answers with an error; with server_failure_limit 1 that
// ejects it. before is the pre-ejection placement of keys. It reports
// false when no key maps to the dead server.
func triggerEjection(t *testing.T, px *respConn, before string, keys [][]byte) bool {
	t.Helper()
	probes := 0
	for i := range keys {
		if before[i] != byte('0'+ejected) {
			continue
		}
		probes++
		r := px.pipeline(t, [][][]byte{{[]byte("GET"), keys[i]}})[0]
		if strings.HasPrefix(r, "-") {
			// The ejection happens as the failed connection closes; let
			// the event loop finish it.
			time.Sleep(50 * time.Millisecond)
			return true
		}
	}
	if probes == 0 {
		return false
	}
	t.Fatalf("%d requests for the killed server all succeeded", probes)
	return false
}

// portPool hands out distinct free loopback ports: every port stays
// bound until release, so the kernel cannot hand one out twice.
type portPool struct{ held []net.Listener }

func (pp *portPool) next(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pp.held = append(pp.held, l)
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func (pp *portPool) release() {
	for _, l := range pp.held {
		l.Close()
	}
	pp.held = nil
}

// free11211 finds a loopback address whose port 11211 is free.
func free11211(t *testing.T) string {
	t.Helper()
	for _, host := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.1"} {
		addr := host + ":11211"
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Skip("port 11211 is taken on every loopback address tried")
	return ""
}

func startRedis(t *testing.T, dir string, i int, network, addr string) *exec.Cmd {
	t.Helper()
	args := []string{"--save", "", "--appendonly", "no", "--protected-mode", "no",
		"--dir", dir, "--dbfilename", fmt.Sprintf("r%d.rdb", i),
		"--logfile", filepath.Join(dir, fmt.Sprintf("r%d.log", i))}
	if network == "unix" {
		args = append(args, "--port", "0", "--unixsocket", addr, "--unixsocketperm", "700")
	} else {
		host, port, _ := net.SplitHostPort(addr)
		args = append(args, "--bind", host, "--port", port)
	}
	cmd := exec.Command("redis-server", args...)
	startProc(t, cmd)
	waitDial(t, network, addr)
	return cmd
}

func startProc(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() { stopProc(cmd) })
}

// stopProc kills cmd once and reaps it; later calls do nothing.
func stopProc(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

func waitDial(t *testing.T, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s never accepted: %v", network, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// respConn is the smallest RESP client the test needs: pipelined
// commands, replies flattened to their first line.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialResp(t *testing.T, network, addr string) *respConn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &respConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (rc *respConn) mustOK(t *testing.T, cmd [][]byte) {
	t.Helper()
	if r := rc.pipeline(t, [][][]byte{cmd})[0]; r != "+OK" {
		t.Fatalf("%s: %q", cmd[0], r)
	}
}

// pipeline writes all commands from a goroutine while reading replies, so
// neither side can fill a socket buffer and stall.
func (rc *respConn) pipeline(t *testing.T, cmds [][][]byte) []string {
	t.Helper()
	_ = rc.c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(rc.c, 64<<10)
		for _, cmd := range cmds {
			fmt.Fprintf(w, "*%d\r\n", len(cmd))
			for _, a := range cmd {
				fmt.Fprintf(w, "$%d\r\n", len(a))
				w.Write(a)
				w.WriteString("\r\n")
			}
		}
		werr <- w.Flush()
	}()
	out := make([]string, len(cmds))
	for i := range out {
		line, err := rc.readReply()
		if err != nil {
			t.Fatalf("reading reply %d of %d: %v", i, len(cmds), err)
		}
		out[i] = line
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	return out
}

func (rc *respConn) readReply() (string, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply line")
	}
	if line[0] == '$' {
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n >= 0 {
			if _, err := rc.r.Discard(n + 2); err != nil {
				return "", err
			}
		}
	}
	return line, nil
}
