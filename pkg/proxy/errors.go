package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Sentinel errors of the proxy engine.
var (
	// ErrTimeout is the error of a request whose server did not answer in time.
	ErrTimeout = errors.New("proxy: server timed out")
	// ErrNoServer is returned when every server of a pool is ejected.
	ErrNoServer = errors.New("proxy: no server available")
	// ErrClosed is the error of requests left on a connection that was closed.
	ErrClosed = errors.New("proxy: connection closed")
	// ErrServerProtocol is the error of a server that sent an unparseable reply.
	ErrServerProtocol = errors.New("proxy: invalid reply from server")
)

// errnoText returns the C library wording of an OS error, the text twemproxy
// puts in "-ERR <text>" and "SERVER_ERROR <text>", so clients that match on it
// keep working.
func errnoText(err error) string {
	if text, ok := proxyErrorText(err); ok {
		return text
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return "Connection timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrClosed):
		return "Connection reset by peer"
	case errors.Is(err, ErrNoServer):
		return "No server available"
	case errors.Is(err, ErrServerProtocol):
		return "Invalid argument"
	case errors.As(err, &errno):
		if s, ok := glibcErrno[errno]; ok {
			return s
		}
		return errno.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "Name or service not known"
	}
	return "Invalid argument"
}

var glibcErrno = map[syscall.Errno]string{
	syscall.ECONNREFUSED:  "Connection refused",
	syscall.ECONNRESET:    "Connection reset by peer",
	syscall.EPIPE:         "Broken pipe",
	syscall.ETIMEDOUT:     "Connection timed out",
	syscall.EHOSTUNREACH:  "No route to host",
	syscall.ENETUNREACH:   "Network is unreachable",
	syscall.ENOENT:        "No such file or directory",
	syscall.EACCES:        "Permission denied",
	syscall.EADDRNOTAVAIL: "Cannot assign requested address",
	syscall.EMFILE:        "Too many open files",
	syscall.ENOMEM:        "Cannot allocate memory",
}
