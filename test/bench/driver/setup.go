package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// target is one thing the load is pointed at: the backends directly, or a
// proxy in front of them.
type target struct {
	name  string
	redis []string // addresses for Redis load; nil: not supported
	mc    []string // addresses for memcached load; nil: not supported
	proc  *proc    // nil for direct
	note  string
	args  []string // how proc was started, for restart
	// nuthatch marks nuthatch builds, compared with the targets.
	nuthatch bool
	// only, when set, limits the target to the scenarios it accepts (and
	// keeps it out of the idle, redis-benchmark and syscall runs).
	only func(scenario) bool
	// pinnable targets take part in the pinned (per-core) group.
	pinnable bool
	// resp3 targets speak RESP3 (HELLO 3) and take part in the RESP3
	// group and the RESP3 redis-benchmark rows; nutcracker and predixy
	// close the connection on HELLO 3.
	resp3 bool
	// backendPids, when set, are the servers whose CPU measure charges as
	// the backends' (the cluster group's nodes) instead of the standalone
	// backends.
	backendPids []int
}

// runs reports whether t takes part in sc.
func (t *target) runs(sc scenario) bool {
	if sc.pinned {
		return t.pinnable
	}
	if sc.group == groupRESP3 {
		return t.resp3
	}
	return t.only == nil || t.only(sc)
}

// restart stops the target's program and starts it again, fresh, on the
// same ports.
func (e *env) restart(ctx context.Context, t *target) error {
	if t.proc == nil {
		return nil
	}
	e.procs.stop(t.proc)
	p, err := e.procs.start(t.proc.name, t.args...)
	if err != nil {
		return err
	}
	t.proc = p
	for _, a := range append(slices.Clone(t.redis), t.mc...) {
		if err := waitPort(ctx, p, a); err != nil {
			return err
		}
	}
	return nil
}

func (t *target) pid() int {
	if t.proc == nil {
		return 0
	}
	return t.proc.pid()
}

func (t *target) addrs(redis bool) []string {
	if redis {
		return t.redis
	}
	return t.mc
}

type backends struct {
	redis, mc []string
}

func (e *env) startBackends(ctx context.Context, n int) (*backends, error) {
	b := &backends{}
	for i := range n {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p, err := e.procs.start(fmt.Sprintf("redis-%d", i), "redis-server",
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--maxclients", "20000", "--dir", e.dir)
		if err != nil {
			return nil, err
		}
		if err := waitPort(ctx, p, addr); err != nil {
			return nil, err
		}
		b.redis = append(b.redis, addr)
	}
	for i := range n {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		args := []string{"memcached", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "512", "-c", "20000", "-t", "1"}
		if os.Getuid() == 0 {
			args = append(args, "-u", "root") // memcached refuses root without it
		}
		p, err := e.procs.start(fmt.Sprintf("memcached-%d", i), args...)
		if err != nil {
			return nil, err
		}
		if err := waitPort(ctx, p, addr); err != nil {
			return nil, err
		}
		b.mc = append(b.mc, addr)
	}
	return b, nil
}

func (e *env) nutcracker(ctx context.Context, b *backends) (*target, error) {
	bin, err := exec.LookPath(e.nutcrackerBin)
	if err != nil {
		return nil, fmt.Errorf("bench: nutcracker: %w", err)
	}
	rp, mp, sp, err := freePorts3()
	if err != nil {
		return nil, err
	}
	var y strings.Builder
	fmt.Fprintf(&y, "redis:\n  listen: 127.0.0.1:%d\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  servers:\n", rp)
	for _, a := range b.redis {
		fmt.Fprintf(&y, "   - %s:1\n", a)
	}
	fmt.Fprintf(&y, "memcache:\n  listen: 127.0.0.1:%d\n  hash: fnv1a_64\n  distribution: ketama\n  servers:\n", mp)
	for _, a := range b.mc {
		fmt.Fprintf(&y, "   - %s:1\n", a)
	}
	conf := filepath.Join(e.dir, "nutcracker.yml")
	if err := os.WriteFile(conf, []byte(y.String()), 0o644); err != nil {
		return nil, err
	}
	// -v 4: the default -v 5 logs each client's address with a
	// getpeername() per connection event; 4 is nutcracker at its best.
	args := []string{bin, "-c", conf, "-v", "4", "-s", strconv.Itoa(sp), "-a", "127.0.0.1"}
	p, err := e.procs.start("nutcracker", args...)
	if err != nil {
		return nil, err
	}
	t := &target{name: "nutcracker", proc: p, args: args, pinnable: true,
		redis: []string{fmt.Sprintf("127.0.0.1:%d", rp)}, mc: []string{fmt.Sprintf("127.0.0.1:%d", mp)}}
	for _, a := range append(t.redis, t.mc...) {
		if err := waitPort(ctx, p, a); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (e *env) predixy(ctx context.Context, b *backends) (*target, string) {
	if _, err := os.Stat(e.predixyBin); err != nil {
		return nil, fmt.Sprintf("predixy skipped: no binary at %s (set PREDIXY_BIN; docs/performance.md says how it was built)", e.predixyBin)
	}
	var c strings.Builder
	c.WriteString("StandaloneServerPool {\n    Hash crc16\n    Distribution modula\n    RefreshMethod fixed\n")
	for i, a := range b.redis {
		fmt.Fprintf(&c, "    Group g%d {\n        + %s\n    }\n", i, a)
	}
	c.WriteString("}\n")
	p, addr, conf, err := e.startPredixy(ctx, "predixy", c.String())
	if err != nil {
		return nil, "predixy skipped: " + err.Error()
	}
	return &target{name: "predixy", proc: p, redis: []string{addr}, args: []string{e.predixyBin, conf},
		note: "1 worker thread; Redis only", pinnable: true}, ""
}

// startPredixy writes NAME.conf, predixy's common settings (one worker
// thread, no client timeout, quiet logs, writes allowed) and then pool, its
// server pool section, and starts predixy on a free port.
func (e *env) startPredixy(ctx context.Context, name, pool string) (p *proc, addr, conf string, err error) {
	port, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	var c strings.Builder
	fmt.Fprintf(&c, "Name %s\nBind 127.0.0.1:%d\nWorkerThreads 1\nClientTimeout 0\n", name, port)
	c.WriteString("LogVerbSample 0\nLogDebugSample 0\nLogInfoSample 0\nLogNoticeSample 1\nLogWarnSample 1\nLogErrorSample 1\n")
	c.WriteString("Authority {\n    Auth {\n        Mode write\n    }\n}\n")
	c.WriteString(pool)
	conf = filepath.Join(e.dir, name+".conf")
	if err := os.WriteFile(conf, []byte(c.String()), 0o644); err != nil {
		return nil, "", "", err
	}
	if p, err = e.procs.start(name, e.predixyBin, conf); err != nil {
		return nil, "", "", err
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitPort(ctx, p, addr); err != nil {
		e.procs.stop(p)
		return nil, "", "", err
	}
	return p, addr, conf, nil
}

// nuthatchConfig is an HCL file with a Redis and a memcached pool;
// quickack sets tcp_quickack = true in both.
func nuthatchConfig(workers string, quickack bool, rp, mp int, b *backends) string {
	var c strings.Builder
	qa := ""
	if quickack {
		qa = "  tcp_quickack = true\n"
	}
	fmt.Fprintf(&c, "worker_processes = %s\nlog {\n  level = \"warn\"\n}\nstats {\n  listen = \"\"\n}\n", workers)
	fmt.Fprintf(&c, "pool \"redis\" {\n  listen = \"127.0.0.1:%d\"\n  protocol = \"redis\"\n  hash = \"fnv1a_64\"\n  distribution = \"ketama\"\n%s", rp, qa)
	for _, a := range b.redis {
		fmt.Fprintf(&c, "  server %q {}\n", a)
	}
	fmt.Fprintf(&c, "}\npool \"memcache\" {\n  listen = \"127.0.0.1:%d\"\n  protocol = \"memcache\"\n  hash = \"fnv1a_64\"\n  distribution = \"ketama\"\n%s", mp, qa)
	for _, a := range b.mc {
		fmt.Fprintf(&c, "  server %q {}\n", a)
	}
	c.WriteString("}\n")
	return c.String()
}

// nuthatch starts a nuthatch target; settings are extra top-level
// attributes, one per line (a -compare variant's).
func (e *env) nuthatch(ctx context.Context, b *backends, name, bin, workers, settings string, quickack bool) (*target, error) {
	rp, mp, _, err := freePorts3()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(e.dir, name+".hcl")
	if err := os.WriteFile(conf, []byte(settings+nuthatchConfig(workers, quickack, rp, mp, b)), 0o644); err != nil {
		return nil, err
	}
	args := []string{bin, "-c", conf}
	p, err := e.procs.start(name, args...)
	if err != nil {
		return nil, err
	}
	t := &target{name: name, proc: p, args: args, nuthatch: true,
		redis: []string{fmt.Sprintf("127.0.0.1:%d", rp)}, mc: []string{fmt.Sprintf("127.0.0.1:%d", mp)}}
	for _, a := range append(t.redis, t.mc...) {
		if err := waitPort(ctx, p, a); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func freePorts3() (int, int, int, error) {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return 0, 0, 0, err
		}
		ports[i] = p
	}
	if ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
		return freePorts3()
	}
	return ports[0], ports[1], ports[2], nil
}
