package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// bullmqResult is test/clients/node/bullmq_queue.js's last line.
type bullmqResult struct {
	Event           string         `json:"event"`
	Jobs            int            `json:"jobs"`
	Ms              int64          `json:"ms"`
	Counts          map[string]int `json:"counts"`
	Returned        int            `json:"returned"`
	MissingCount    int            `json:"missingCount"`
	Missing         []int          `json:"missing"`
	DuplicatedCount int            `json:"duplicatedCount"`
	Duplicated      []int          `json:"duplicated"`
	ProcessorRuns   int            `json:"processorRuns"`
	Reruns          int            `json:"reruns"`
	Errors          map[string]int `json:"errors"`
	Completed       int            `json:"completed"`
	Error           string         `json:"error"`
}

// A BullMQ queue (npm bullmq 6.7, its own client library, ioredis)
// through nuthatch (two workers) over two redis-servers, with the queue's
// keys under one hash tag (prefix "{bq}", as BullMQ advises for Redis
// Cluster): a producer adds 3,000 jobs at 500 a second while two BullMQ
// workers (8 jobs at once each) process them; after 1,000 jobs one
// nuthatch worker is killed (kill -9), after 2,000 nuthatch is reloaded
// (nuthatch -s reload). Every job must complete exactly once, none fail.
func TestBullMQThroughKillAndReload(t *testing.T) {
	harness.Need(t, "redis-server")
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run test/scripts/deps.sh (make deps)")
	}
	script := filepath.Join(clientsDir(), "node", "bullmq_queue.js")
	if _, err := os.Stat(filepath.Join(clientsDir(), "node", "node_modules", "bullmq", "package.json")); err != nil {
		t.Fatal("test/clients/node has no bullmq: run test/scripts/deps.sh (make deps), which runs npm ci there")
	}
	a, b := harness.Redis(t), harness.Redis(t)
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	hcl := fmt.Sprintf(`
worker_processes        = 2
worker_shutdown_timeout = "5s"
pid_file                = %q
stats {
  listen = ""
}
pool "bq" {
  listen   = %q
  protocol = "redis"
  hash_tag = "{}"
  timeout  = "2s"
  server "s0" { address = %q }
  server "s1" { address = %q }
}
`, filepath.Join(dir, "nuthatch.pid"), addr, a.Addr, b.Addr)
	conf := filepath.Join(dir, "nuthatch.hcl")
	if err := os.WriteFile(conf, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	master := harness.Start(t, harness.Binary(t), "-c", conf)
	harness.WaitPort(t, "tcp", addr, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for len(harness.Children(master.Cmd.Process.Pid)) != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	const jobs = 3000
	cfg, _ := json.Marshal(map[string]any{"addr": addr, "jobs": jobs, "rate": 500, "workers": 2, "concurrency": 8,
		"prefix": "{bq}", "queue": "orders", "waitMs": 60000})
	cmd := exec.Command("node", script, string(cfg))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	killed, reloaded := false, false
	var res bullmqResult
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev bullmqResult
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bullmq_queue.js: %q", sc.Text())
		}
		switch ev.Event {
		case "progress":
			if ev.Completed >= jobs/3 && !killed {
				// The worker holding the most BullMQ connections.
				victim, most := 0, 0
				for _, pid := range harness.Children(master.Cmd.Process.Pid) {
					if n := clientSockets(t, pid, addr); n > most {
						victim, most = pid, n
					}
				}
				if most == 0 {
					t.Fatal("no nuthatch worker holds a client connection")
				}
				if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				t.Logf("after %d jobs: kill -9 of nuthatch worker %d, which held %d client connections", ev.Completed, victim, most)
				killed = true
			}
			if ev.Completed >= 2*jobs/3 && !reloaded {
				p := harness.Start(t, harness.Binary(t), "-s", "reload", "-c", conf)
				<-p.Done()
				if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
					t.Fatalf("nuthatch -s reload: exit %d\n%s", code, p.Output())
				}
				t.Logf("after %d jobs: nuthatch -s reload", ev.Completed)
				reloaded = true
			}
		case "error":
			t.Logf("client error: %s", ev.Error)
		case "fatal":
			t.Fatalf("bullmq_queue.js: %s", ev.Error)
		case "result":
			res = ev
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bullmq_queue.js: %v", err)
	}
	if !killed || !reloaded {
		t.Fatalf("the queue finished before the kill (%v) and the reload (%v)", killed, reloaded)
	}
	if res.Event != "result" {
		t.Fatal("bullmq_queue.js printed no result")
	}
	t.Logf("%d jobs in %d ms: counts %v, processor runs %d (%d again after a lost completion), errors %v",
		res.Jobs, res.Ms, res.Counts, res.ProcessorRuns, res.Reruns, res.Errors)
	if res.MissingCount != 0 || res.DuplicatedCount != 0 {
		t.Errorf("lost %d jobs (%v...), duplicated %d (%v...)", res.MissingCount, res.Missing, res.DuplicatedCount, res.Duplicated)
	}
	if res.Counts["completed"] != jobs || res.Counts["failed"] != 0 {
		t.Errorf("counts %v, want %d completed and none failed", res.Counts, jobs)
	}
	for e := range res.Errors {
		if strings.Contains(e, "not supported by nuthatch") || strings.Contains(e, "map to different servers") {
			t.Errorf("the proxy refused a BullMQ command: %s", e)
		}
	}
	if !strings.Contains(master.Output(), "generation=2") {
		t.Errorf("no second generation of workers after the reload; log:\n%s", master.Output())
	}
}

// clientSockets counts the established TCP connections of process pid
// whose local address is addr (its clients), from /proc.
func clientSockets(t *testing.T, pid int, addr string) int {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	host, port, _ := strings.Cut(addr, ":")
	ip := net.ParseIP(host).To4()
	var p int
	fmt.Sscan(port, &p)
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[3] == "01" && inodes[f[9]] {
			n++
		}
	}
	return n
}
