package process

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/listener"
)

// Inherited is a listening socket this process did not open: passed by
// systemd (socket activation) or by the master it replaced (upgrade).
type Inherited struct {
	File *os.File
	// Name is systemd's FileDescriptorName= (a pool name, "stats", or the
	// unit's name), or the name the previous master gave it.
	Name string
	// FromSystemd sockets belong to the service manager: nuthatch never
	// closes them for good, since systemd holds them anyway and would
	// refuse a later re-bind of the same address.
	FromSystemd bool
}

// socketSet holds the master's listening sockets, by address. A TCP
// address has one SO_REUSEPORT socket per worker slot so that the kernel
// spreads connections over the workers; a unix socket is shared. Sockets
// passed by systemd are used as given, however many there are.
//
// The master keeps every socket open for as long as some configuration
// uses its address: workers come and go (respawn, reload) and always get
// the same sockets, so connections queued on a dead worker's socket are
// accepted by its replacement and a reload never re-binds a port.
type socketSet struct {
	byAddr    map[string][]*os.File
	inherited []*inheritedSocket
	keep      map[*os.File]bool // never closed: systemd's
	// opener opens one socket; a field so tests can avoid real binds.
	opener func(addr config.Address, o listener.Options) (*os.File, error)
}

type inheritedSocket struct {
	Inherited
	local string // network:addr as getsockname reports it
	used  bool
}

func newSocketSet() *socketSet {
	return &socketSet{byAddr: make(map[string][]*os.File), keep: make(map[*os.File]bool), opener: listener.Open}
}

func addrKey(a config.Address) string { return a.Network + ":" + a.Addr }

// adopt registers inherited sockets for matching by want.
func (s *socketSet) adopt(socks []Inherited) {
	for _, in := range socks {
		s.inherited = append(s.inherited, &inheritedSocket{Inherited: in, local: localAddr(in.File)})
		if in.FromSystemd {
			s.keep[in.File] = true
		}
	}
}

// closeUnused closes inherited sockets that no pool matched.
func (s *socketSet) closeUnused(log *logrus.Entry) {
	var left []*inheritedSocket
	for _, in := range s.inherited {
		if in.used {
			left = append(left, in)
			continue
		}
		log.WithFields(logrus.Fields{"name": in.Name, "address": in.local}).Warn("passed socket matches no pool, closing it")
		delete(s.keep, in.File)
		in.File.Close()
	}
	s.inherited = left
}

// match returns the inherited sockets for pool name at addr: those named
// after the pool, else those bound to its address.
func (s *socketSet) match(name string, addr config.Address) []*os.File {
	var byName, byAddr []*os.File
	for _, in := range s.inherited {
		switch {
		case in.Name == name:
			byName = append(byName, in.File)
			in.used = true
		case sameAddress(in.local, addr):
			byAddr = append(byAddr, in.File)
		}
	}
	if len(byName) > 0 {
		return byName
	}
	for _, in := range s.inherited {
		if sameAddress(in.local, addr) {
			in.used = true
		}
	}
	return byAddr
}

// want returns the sockets cfg needs, by address: inherited ones first,
// then those already open, opening the rest. It changes nothing on error.
func (s *socketSet) want(cfg *config.Config) (map[string][]*os.File, error) {
	out := make(map[string][]*os.File)
	var opened []*os.File
	for _, p := range cfg.Pools {
		for _, pl := range p.Listeners() {
			if err := s.wantOne(cfg, p, pl, out, &opened); err != nil {
				closeAll(opened)
				return nil, err
			}
		}
	}
	return out, nil
}

// listenerName is what a pool's listener is called between processes
// (systemd's FileDescriptorName=, an upgrade's hand-over): the pool's
// name, with "-tls" for its tls block's own listener.
func listenerName(p *config.Pool, pl config.Listener) string {
	if pl.TLS && p.TLS != nil && p.TLS.Listen.Network != "" {
		return p.Name + "-tls"
	}
	return p.Name
}

func (s *socketSet) wantOne(cfg *config.Config, p *config.Pool, pl config.Listener, out map[string][]*os.File, opened *[]*os.File) error {
	{
		key := addrKey(pl.Addr)
		if _, dup := out[key]; dup {
			return nil
		}
		if files := s.match(listenerName(p, pl), pl.Addr); len(files) > 0 {
			out[key] = files
			return nil
		}
		count := cfg.WorkerProcesses
		if pl.Addr.Network == "unix" {
			count = 1
		}
		have := s.byAddr[key]
		files := make([]*os.File, 0, count)
		for j := 0; j < count; j++ {
			if j < len(have) {
				files = append(files, have[j])
				continue
			}
			f, err := s.opener(pl.Addr, listener.Options{Backlog: p.Backlog, ReusePort: pl.Addr.Network != "unix"})
			if err != nil {
				return fmt.Errorf("process: pool %s: %w", p.Name, err)
			}
			*opened = append(*opened, f)
			files = append(files, f)
		}
		out[key] = files
	}
	return nil
}

// commit makes next the live set, closes the sockets no longer used
// (never systemd's) and sets how each address's group of sockets spreads
// connections over the workers. It steers only after the old sockets are
// gone, so that no connection is steered to one about to close.
func (s *socketSet) commit(next map[string][]*os.File, steering config.Steering, log *logrus.Entry) {
	inNext := make(map[*os.File]bool)
	for _, files := range next {
		for _, f := range files {
			inNext[f] = true
		}
	}
	for _, files := range s.byAddr {
		for _, f := range files {
			if !inNext[f] && !s.keep[f] {
				f.Close()
			}
		}
	}
	s.byAddr = next
	steer(next, steering, log)
}

// steer sets how each address's group of sockets in set spreads new
// connections over the workers.
func steer(set map[string][]*os.File, steering config.Steering, log *logrus.Entry) {
	for key, files := range set {
		if len(files) < 2 {
			continue
		}
		if err := listener.Steer(files[0], len(files), steering); err != nil {
			// Connections still arrive, spread by the kernel's hash.
			log.WithError(err).WithField("address", key).Warn("reuseport steering not set; connections spread by hash")
		}
	}
}

// discard closes the sockets of an abandoned configuration that the live
// set does not use.
func (s *socketSet) discard(next map[string][]*os.File) {
	live := make(map[*os.File]bool)
	for _, files := range s.byAddr {
		for _, f := range files {
			live[f] = true
		}
	}
	for _, in := range s.inherited {
		live[in.File] = true
	}
	for _, files := range next {
		for _, f := range files {
			if !live[f] && !s.keep[f] {
				f.Close()
			}
		}
	}
}

// closeAll closes every socket.
func (s *socketSet) closeAll() {
	seen := map[*os.File]bool{}
	for _, files := range s.byAddr {
		for _, f := range files {
			if !seen[f] {
				seen[f] = true
				f.Close()
			}
		}
	}
	for _, in := range s.inherited {
		if !seen[in.File] {
			in.File.Close()
		}
	}
	s.byAddr = map[string][]*os.File{}
	s.inherited = nil
}

// handOver lists the live sockets for a new master: systemd's keep their
// names, the others are named after the pool that uses them.
func (s *socketSet) handOver(cfg *config.Config) []Inherited {
	var out []Inherited
	for _, p := range cfg.Pools {
		for _, pl := range p.Listeners() {
			for _, f := range s.byAddr[addrKey(pl.Addr)] {
				name := listenerName(p, pl)
				for _, in := range s.inherited {
					if in.File == f {
						name = in.Name
					}
				}
				out = append(out, Inherited{File: f, Name: name, FromSystemd: s.keep[f]})
			}
		}
	}
	return out
}

// forSlot returns the sockets and specs worker slot i serves for cfg.
func forSlot(cfg *config.Config, set map[string][]*os.File, slot int) ([]*os.File, []ListenerSpec) {
	var files []*os.File
	var specs []ListenerSpec
	for _, p := range cfg.Pools {
		for _, pl := range p.Listeners() {
			socks := set[addrKey(pl.Addr)]
			if len(socks) == 0 {
				continue
			}
			files = append(files, socks[slot%len(socks)])
			// TLS marks only a tls block's own listener; a pool whose
			// listen is TLS knows it from its configuration.
			own := pl.TLS && p.TLS.Listen.Network != ""
			specs = append(specs, ListenerSpec{Pool: p.Name, Addr: pl.Addr.String(), TLS: own})
		}
	}
	return files, specs
}

// localAddr is "tcp:ip:port" or "unix:path" for a listening socket.
func localAddr(f *os.File) string {
	sa, err := unix.Getsockname(int(f.Fd()))
	if err != nil {
		return ""
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return "tcp:" + netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return "tcp:" + netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)).String()
	case *unix.SockaddrUnix:
		return "unix:" + a.Name
	}
	return ""
}

// sameAddress reports whether a socket bound at local serves addr. A
// wildcard on either side matches any address with the same port.
func sameAddress(local string, addr config.Address) bool {
	if local == "" {
		return false
	}
	if addr.Network == "unix" {
		return local == "unix:"+addr.Addr
	}
	if len(local) < 4 || local[:4] != "tcp:" {
		return false
	}
	lap, err := netip.ParseAddrPort(local[4:])
	if err != nil {
		return false
	}
	host, portStr, err := net.SplitHostPort(addr.Addr)
	if err != nil {
		return false
	}
	port, _ := strconv.Atoi(portStr)
	if int(lap.Port()) != port {
		return false
	}
	if lap.Addr().IsUnspecified() || host == "" || host == "0.0.0.0" || host == "::" || host == "*" {
		return true
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == lap.Addr() {
			return true
		}
	}
	return false
}
