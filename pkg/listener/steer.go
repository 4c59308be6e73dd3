package listener

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// Classic BPF ancillary loads (linux/filter.h), which golang.org/x/sys
// does not name. SKF_AD_OFF is -0x1000, here as the uint32 it is in a
// sock_filter.
const (
	skfAdOff     = 0xfffff000
	skfAdIfindex = 8
	skfAdCPU     = 36
	// loopbackIfindex is the loopback device's index in every network
	// namespace (LOOPBACK_IFINDEX).
	loopbackIfindex = 1
	// noSocket is past the end of any group: the kernel then picks a
	// socket by hash, as it does without a program.
	noSocket = 0xffffffff
)

// steerProgram returns the reuseport program for mode over n sockets, or
// nil for the kernel's hash.
//
// By CPU, a client's connections land on one worker per CPU its packets
// are processed on: a single-threaded client (redis-benchmark, one
// application process) is served by one event loop that batches all of
// its connections, instead of by n loops that each wake for a share of
// them (measured in docs/performance.md). Loopback packets are processed
// on the sending thread's CPU; a remote client's on the CPU its NIC queue
// interrupts, which on a NIC with one queue and no RPS is always the same
// one, so SteerAuto steers only loopback connections by CPU and leaves
// the others to the hash.
func steerProgram(mode config.Steering, n int) []unix.SockFilter {
	byCPU := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdCPU},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
	switch mode {
	case config.SteerCPU:
		return byCPU
	case config.SteerAuto:
		prog := []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdIfindex},
			// Not loopback: jump over the CPU steering to the hash.
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: loopbackIfindex, Jt: 0, Jf: uint8(len(byCPU))},
		}
		prog = append(prog, byCPU...)
		return append(prog, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: noSocket})
	}
	return nil
}

// Steer sets how the kernel spreads new connections over the SO_REUSEPORT
// group f belongs to, which must hold n sockets in the order of the
// workers that accept from them. The program belongs to the group, not to
// f: set on any member, it steers them all, and a later call replaces it.
func Steer(f *os.File, n int, mode config.Steering) error {
	if n < 1 {
		return fmt.Errorf("listener: steer over %d sockets", n)
	}
	prog := steerProgram(mode, n)
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("listener: steer: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if prog == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
			// No program attached, or a kernel before 5.3 that cannot
			// detach one (and so never had one from us).
			if errors.Is(serr, unix.ENOENT) || errors.Is(serr, unix.ENOPROTOOPT) {
				serr = nil
			}
			return
		}
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return fmt.Errorf("listener: steer: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("listener: steer %s: %w", mode, serr)
	}
	return nil
}
