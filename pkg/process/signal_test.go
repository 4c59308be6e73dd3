package process

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// syncBuffer is a bytes.Buffer the master's log and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// waitLog waits for a JSON log record whose msg is msg.
func (s *syncBuffer) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		text := s.b.String()
		s.mu.Unlock()
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
				return rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log record %q in:\n%s", msg, text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every signal the master acts on is logged at info with its name, as a
// field and in the message, and what it does; a HUP during a reload is
// logged with why it was ignored.
func TestMasterLogsSignals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nuthatch.hcl")
	writeConfig(t, path, 1, "a")
	var out syncBuffer
	r := runMaster(t, path, &out)
	w := r.sp.wait(t)
	r.expectNote(t, "READY=1")

	expect := func(sig syscall.Signal, name, level, msg string) {
		t.Helper()
		r.sigs <- sig
		rec := out.waitLog(t, msg)
		if rec["level"] != level || rec["signal"] != name || !strings.HasPrefix(msg, name+" received, ") {
			t.Errorf("%s: record %v, want level=%s signal=%s", name, rec, level, name)
		}
	}
	expect(syscall.SIGTTIN, "SIGTTIN", "info", "SIGTTIN received, raising log level to debug")
	expect(syscall.SIGTTOU, "SIGTTOU", "info", "SIGTTOU received, lowering log level to info")
	expect(syscall.SIGTTOU, "SIGTTOU", "info", "SIGTTOU received, lowering log level to warning")
	expect(syscall.SIGTTIN, "SIGTTIN", "info", "SIGTTIN received, raising log level to info")
	expect(syscall.SIGUSR1, "SIGUSR1", "info", "SIGUSR1 received, reopening logs")
	expectMsg(t, w, MsgReopen)

	// A reload whose workers never become ready stays in progress.
	r.sp.mu.Lock()
	r.sp.notReady[2] = true
	r.sp.mu.Unlock()
	expect(syscall.SIGHUP, "SIGHUP", "info", "SIGHUP received, reloading configuration")
	r.sp.wait(t)
	expect(syscall.SIGHUP, "SIGHUP", "warning",
		"SIGHUP received, reload ignored: the previous reload is still starting its workers (generation 2)")
	expect(syscall.SIGTERM, "SIGTERM", "info", "SIGTERM received, stopping gracefully")
	if l := r.m.Log.GetLevel(); l != logrus.InfoLevel {
		t.Errorf("log level %v after TTIN, TTOU, TTOU, TTIN", l)
	}
}
