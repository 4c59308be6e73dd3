package stats

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStats are the resource figures of one process, read from /proc.
type ProcStats struct {
	CPUSeconds   float64   // user + system time
	RSSBytes     uint64    // resident set size (VmRSS)
	VirtualBytes uint64    // virtual memory size (VmSize)
	Threads      int       // kernel threads
	OpenFDs      int       // open file descriptors; -1 when /proc/<pid>/fd is unreadable
	MaxFDs       uint64    // the soft RLIMIT_NOFILE; 0 when unknown
	StartTime    time.Time // when the process started
}

// ErrProcFormat is wrapped when a /proc file does not read as expected.
var ErrProcFormat = errors.New("stats: unexpected /proc format")

// procRoot is where proc is mounted; tests point it at a fake tree.
var procRoot = "/proc"

// userHZ is the unit of the clock-tick fields of /proc/<pid>/stat. The
// kernel exports them in USER_HZ, which is 100 on every Linux architecture
// Go supports (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// ReadProcStats reads /proc/<pid>/stat, /proc/<pid>/status,
// /proc/<pid>/limits, /proc/<pid>/fd and the boot time from /proc/stat.
func ReadProcStats(pid int) (ProcStats, error) {
	dir := procRoot + "/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return ProcStats{}, fmt.Errorf("stats: %w", err)
	}
	st, err := parseProcStat(stat)
	if err != nil {
		return ProcStats{}, err
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return ProcStats{}, fmt.Errorf("stats: %w", err)
	}
	ps, err := parseProcStatus(status)
	if err != nil {
		return ProcStats{}, err
	}
	ps.CPUSeconds = float64(st.utime+st.stime) / userHZ
	if ps.Threads == 0 {
		ps.Threads = st.threads
	}
	if sys, err := os.ReadFile(procRoot + "/stat"); err == nil {
		if btime, ok := parseBootTime(sys); ok {
			ticks := time.Duration(st.startTicks) * (time.Second / userHZ)
			ps.StartTime = time.Unix(btime, 0).Add(ticks)
		}
	}
	if lim, err := os.ReadFile(dir + "/limits"); err == nil {
		ps.MaxFDs = parseMaxFDs(lim)
	}
	ps.OpenFDs = -1
	if ents, err := os.ReadDir(dir + "/fd"); err == nil {
		ps.OpenFDs = len(ents)
	}
	return ps, nil
}

type procStat struct {
	utime, stime, startTicks uint64
	threads                  int
}

// parseProcStat reads /proc/<pid>/stat. The command name, field 2, is in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("%w: stat has no command name", ErrProcFormat)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	const utime, stime, threads, start = 14, 15, 20, 22
	if len(f) < start-2 {
		return procStat{}, fmt.Errorf("%w: stat has %d fields", ErrProcFormat, len(f)+2)
	}
	var st procStat
	var err error
	num := func(n int) uint64 {
		v, e := strconv.ParseUint(f[n-3], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("%w: stat field %d: %q", ErrProcFormat, n, f[n-3])
		}
		return v
	}
	st.utime, st.stime, st.startTicks = num(utime), num(stime), num(start)
	st.threads = int(num(threads))
	return st, err
}

// parseProcStatus reads VmRSS, VmSize and Threads from
// /proc/<pid>/status. Kernel threads have no Vm lines; they read as 0.
func parseProcStatus(b []byte) (ProcStats, error) {
	var ps ProcStats
	for line := range bytes.Lines(b) {
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var dst *uint64
		kb := true
		switch string(key) {
		case "VmRSS":
			dst = &ps.RSSBytes
		case "VmSize":
			dst = &ps.VirtualBytes
		case "Threads":
			kb = false
		default:
			continue
		}
		f := strings.Fields(string(val))
		if len(f) == 0 {
			return ps, fmt.Errorf("%w: status %s has no value", ErrProcFormat, key)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return ps, fmt.Errorf("%w: status %s: %q", ErrProcFormat, key, f[0])
		}
		if !kb {
			ps.Threads = int(v)
			continue
		}
		if len(f) < 2 || f[1] != "kB" {
			return ps, fmt.Errorf("%w: status %s is not in kB", ErrProcFormat, key)
		}
		*dst = v * 1024
	}
	return ps, nil
}

// parseBootTime reads "btime" from /proc/stat.
func parseBootTime(b []byte) (int64, bool) {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			v, err := strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// parseMaxFDs reads the soft "Max open files" limit of /proc/<pid>/limits.
func parseMaxFDs(b []byte) uint64 {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("Max open files")); ok {
			f := strings.Fields(string(rest))
			if len(f) > 0 {
				if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
					return v
				}
			}
		}
	}
	return 0
}
