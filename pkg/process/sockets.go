package process

import (
	"fmt"
	"os"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/listener"
)

// socketSet holds the master's listening sockets, by address. A TCP
// address has one SO_REUSEPORT socket per worker slot so that the kernel
// spreads connections over the workers; a unix socket is shared.
//
// The master keeps every socket open for as long as some configuration
// uses its address: workers come and go (respawn, reload) and always get
// the same sockets, so connections queued on a dead worker's socket are
// accepted by its replacement and a reload never re-binds a port.
type socketSet struct {
	byAddr map[string][]*os.File
	// opener opens one socket; a field so tests can avoid real binds.
	opener func(addr config.Address, o listener.Options) (*os.File, error)
}

func newSocketSet() *socketSet {
	return &socketSet{byAddr: make(map[string][]*os.File), opener: listener.Open}
}

func addrKey(a config.Address) string { return a.Network + ":" + a.Addr }

// want returns the sockets a configuration with n workers needs, reusing
// what exists and opening the rest. It changes nothing on error.
func (s *socketSet) want(addrs []config.Address, backlog []int, n int) (map[string][]*os.File, error) {
	out := make(map[string][]*os.File)
	var opened []*os.File
	fail := func(err error) (map[string][]*os.File, error) {
		closeAll(opened)
		return nil, err
	}
	for i, a := range addrs {
		key := addrKey(a)
		if _, dup := out[key]; dup {
			continue
		}
		count := n
		if a.Network == "unix" {
			count = 1
		}
		have := s.byAddr[key]
		files := make([]*os.File, 0, count)
		for j := 0; j < count; j++ {
			if j < len(have) {
				files = append(files, have[j])
				continue
			}
			f, err := s.opener(a, listener.Options{Backlog: backlog[i], ReusePort: a.Network != "unix"})
			if err != nil {
				return fail(fmt.Errorf("process: listen %s: %w", a.String(), err))
			}
			opened = append(opened, f)
			files = append(files, f)
		}
		out[key] = files
	}
	return out, nil
}

// commit makes next the live set and closes the sockets no longer used.
func (s *socketSet) commit(next map[string][]*os.File) {
	keep := make(map[*os.File]bool)
	for _, files := range next {
		for _, f := range files {
			keep[f] = true
		}
	}
	for _, files := range s.byAddr {
		for _, f := range files {
			if !keep[f] {
				f.Close()
			}
		}
	}
	s.byAddr = next
}

// discard closes the sockets of next that are not in the live set (a
// configuration that was abandoned).
func (s *socketSet) discard(next map[string][]*os.File) {
	live := make(map[*os.File]bool)
	for _, files := range s.byAddr {
		for _, f := range files {
			live[f] = true
		}
	}
	for _, files := range next {
		for _, f := range files {
			if !live[f] {
				f.Close()
			}
		}
	}
}

// closeAll closes every socket.
func (s *socketSet) closeAll() {
	for _, files := range s.byAddr {
		closeAll(files)
	}
	s.byAddr = map[string][]*os.File{}
}

// forSlot returns the sockets and specs worker slot i serves for cfg.
func forSlot(cfg *config.Config, set map[string][]*os.File, slot int) ([]*os.File, []ListenerSpec) {
	var files []*os.File
	var specs []ListenerSpec
	for _, p := range cfg.Pools {
		socks := set[addrKey(p.Listen)]
		if len(socks) == 0 {
			continue
		}
		files = append(files, socks[slot%len(socks)])
		specs = append(specs, ListenerSpec{Pool: p.Name, Addr: p.Listen.String()})
	}
	return files, specs
}
