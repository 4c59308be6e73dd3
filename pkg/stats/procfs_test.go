package stats

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestReadProcStatsSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	// Burn a little CPU so that the figure cannot be zero.
	for end := time.Now().Add(30 * time.Millisecond); time.Now().Before(end); {
	}
	ps, err := ReadProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ps.RSSBytes < 1<<20 || ps.VirtualBytes < ps.RSSBytes {
		t.Errorf("rss %d virtual %d", ps.RSSBytes, ps.VirtualBytes)
	}
	if ps.CPUSeconds <= 0 || ps.Threads < 1 || ps.OpenFDs < 3 || ps.MaxFDs == 0 {
		t.Errorf("%+v", ps)
	}
	if age := time.Since(ps.StartTime); age < 0 || age > time.Hour {
		t.Errorf("start time %v is %v ago", ps.StartTime, age)
	}
	if _, err := ReadProcStats(1 << 30); err == nil {
		t.Error("no error for a pid that cannot exist")
	}
}

// A fake /proc tree: a command name with spaces and parentheses, USER_HZ
// ticks, kB sizes, the boot time.
func TestReadProcStatsFake(t *testing.T) {
	root := t.TempDir()
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })
	dir := filepath.Join(root, "42")
	os.MkdirAll(filepath.Join(dir, "fd"), 0o755)
	for _, fd := range []string{"0", "1", "2", "7"} {
		os.WriteFile(filepath.Join(dir, "fd", fd), nil, 0o644)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime(14) stime(15) cutime cstime priority nice
	// threads(20) itrealvalue starttime(22) vsize rss ...
	write("42/stat", "42 (a) b (c)) S 1 42 42 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 6 0 1000 123456 789 18446744073709551615\n")
	write("42/status", "Name:\ta) b (c\nVmSize:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n")
	write("42/limits", "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n")
	write("stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n")
	ps, err := ReadProcStats(42)
	if err != nil {
		t.Fatal(err)
	}
	want := ProcStats{CPUSeconds: 3, RSSBytes: 1 << 20, VirtualBytes: 2 << 20, Threads: 7, OpenFDs: 4, MaxFDs: 1024,
		StartTime: time.Unix(1700000010, 0)}
	if ps != want {
		t.Errorf("got  %+v\nwant %+v", ps, want)
	}
}

func TestParseProcStatRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"42 no parens S 1",
		"42 (x) S 1 2 3",
		"42 (x) S 1 42 42 0 -1 4194560 10 0 0 0 abc 50 0 0 20 0 6 0 1000 123456 789",
	} {
		if _, err := parseProcStat([]byte(in)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("%q: err = %v, want ErrProcFormat", in, err)
		}
	}
	for _, in := range []string{"VmRSS:\n", "VmRSS: x kB\n", "VmRSS: 12 MB\n", "Threads: -1\n"} {
		if _, err := parseProcStatus([]byte(in)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("%q: err = %v, want ErrProcFormat", in, err)
		}
	}
}

func FuzzParseProc(f *testing.F) {
	f.Add([]byte("42 (a) b (c)) S 1 42 42 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 6 0 1000 123456 789\n"))
	f.Add([]byte("VmSize:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n"))
	f.Add([]byte("btime 1700000000\nMax open files 1024 4096 files\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseProcStat(b); err != nil && !errors.Is(err, ErrProcFormat) {
			t.Fatalf("stat error %v does not wrap ErrProcFormat", err)
		}
		if _, err := parseProcStatus(b); err != nil && !errors.Is(err, ErrProcFormat) {
			t.Fatalf("status error %v does not wrap ErrProcFormat", err)
		}
		parseBootTime(b)
		parseMaxFDs(b)
	})
}
