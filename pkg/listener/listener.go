// Package listener opens nuthatch's listening sockets: TCP with the
// configured backlog and SO_REUSEPORT, or unix sockets with a file mode.
package listener

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// Options of a listening socket.
type Options struct {
	Backlog int
	// ReusePort sets SO_REUSEPORT so that several sockets (one per worker)
	// can listen on one address and the kernel spreads connections.
	ReusePort bool
}

// Open creates a listening socket for addr and returns it as an *os.File,
// the form that is passed between processes. The caller owns the file.
func Open(addr config.Address, o Options) (*os.File, error) {
	if o.Backlog <= 0 {
		o.Backlog = 512
	}
	switch addr.Network {
	case "unix":
		return openUnix(addr, o)
	case "tcp", "":
		return openTCP(addr.Addr, o)
	}
	return nil, fmt.Errorf("listener: unknown network %q", addr.Network)
}

func openTCP(hostport string, o Options) (*os.File, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("listener: %s: %w", hostport, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("listener: %s: bad port", hostport)
	}
	var ip netip.Addr
	switch host {
	case "", "0.0.0.0", "*":
		ip = netip.IPv4Unspecified()
	default:
		ip, err = netip.ParseAddr(host)
		if err != nil {
			ips, lerr := net.LookupIP(host)
			if lerr != nil || len(ips) == 0 {
				return nil, fmt.Errorf("listener: %s: cannot resolve %q", hostport, host)
			}
			ip, _ = netip.AddrFromSlice(ips[0])
		}
	}
	ip = ip.Unmap()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("listener: socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listener: SO_REUSEADDR: %w", err)
	}
	if o.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("listener: SO_REUSEPORT: %w", err)
		}
	}
	if family == unix.AF_INET6 {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listener: bind %s: %w", hostport, err)
	}
	if err := unix.Listen(fd, o.Backlog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listener: listen %s: %w", hostport, err)
	}
	return os.NewFile(uintptr(fd), "tcp:"+hostport), nil
}

func openUnix(addr config.Address, o Options) (*os.File, error) {
	path := addr.Addr
	// A stale socket file from a previous run would make bind fail; only
	// remove it when nobody answers on it.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listener: %s: address already in use", path)
		}
		os.Remove(path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("listener: socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listener: bind %s: %w", path, err)
	}
	if addr.Perm != 0 {
		if err := os.Chmod(path, os.FileMode(addr.Perm)); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("listener: chmod %s: %w", path, err)
		}
	}
	if err := unix.Listen(fd, o.Backlog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listener: listen %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "unix:"+path), nil
}

// FromFile wraps a listening socket file as a net.Listener; the listener
// holds its own duplicate of the descriptor.
func FromFile(f *os.File) (net.Listener, error) {
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listener: %s: %w", f.Name(), err)
	}
	return ln, nil
}
