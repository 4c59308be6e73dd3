package process

import (
	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
	"github.com/nuthatch-proxy/nuthatch/pkg/sentinel"
)

// SentinelTopology makes a sentinel watcher the master's TopologySource.
func SentinelTopology(w *sentinel.Watcher) TopologySource {
	s := &sentinelSource{w: w, out: make(chan proxy.ServerAddress, 256)}
	go func() {
		for u := range w.Updates() {
			s.out <- proxy.ServerAddress{Pool: u.Pool, Server: u.Server, Addr: u.Addr, Version: u.Version, Paused: u.Paused,
				Replicas: u.Replicas}
		}
	}()
	return s
}

type sentinelSource struct {
	w   *sentinel.Watcher
	out chan proxy.ServerAddress
}

func (s *sentinelSource) Watch(cfg *config.Config)            { s.w.Watch(cfg) }
func (s *sentinelSource) Updates() <-chan proxy.ServerAddress { return s.out }
func (s *sentinelSource) Hint(pool, server string)            { s.w.Hint(pool, server) }
