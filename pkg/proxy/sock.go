package proxy

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// The event loop does its socket I/O with pkg/sysio: raw system calls on
// non-blocking descriptors.

// maxIovecs stays under IOV_MAX (1024).
const maxIovecs = 512

// coalesceMax is the largest reply writeOut copies next to others.
const coalesceMax = 256

// rawFD duplicates the descriptor behind a net.Listener or net.Conn, close
// on exec, so that the event loop can own a descriptor of its own while
// the Go object is closed or kept by its owner. The duplicate shares the
// socket and its O_NONBLOCK flag.
func rawFD(c any) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("proxy: %T has no file descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("proxy: %w", err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("proxy: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("proxy: dup: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("proxy: %w", err)
	}
	return fd, nil
}

// sockaddrString formats a peer address for logs, as net.Addr would.
func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return (&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}).String()
	case *unix.SockaddrInet6:
		return (&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}).String()
	case *unix.SockaddrUnix:
		return a.Name
	}
	return ""
}

// isAgain reports a non-blocking call that would have blocked.
func isAgain(err error) bool {
	return err == unix.EAGAIN || err == unix.EWOULDBLOCK
}
