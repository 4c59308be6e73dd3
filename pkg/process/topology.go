package process

import (
	"github.com/nuthatch-proxy/nuthatch/pkg/cluster"
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
func (s *sentinelSource) Reachable() map[string][2]int        { return s.w.Reachable() }

// ClusterTopology makes a cluster watcher the master's ClusterSource.
func ClusterTopology(w *cluster.Watcher) ClusterSource {
	s := &clusterSource{w: w, out: make(chan proxy.SlotMap, 64)}
	go func() {
		for m := range w.Maps() {
			sm := proxy.SlotMap{Pool: m.Pool, Version: m.Version, Nodes: m.Nodes}
			for _, rs := range m.Replicas {
				if len(rs) > 0 {
					sm.Replicas = m.Replicas
					break
				}
			}
			for _, r := range m.Ranges {
				sm.Ranges = append(sm.Ranges, proxy.SlotRange{Start: r.Start, End: r.End, Node: r.Node})
			}
			s.out <- sm
		}
	}()
	return s
}

type clusterSource struct {
	w   *cluster.Watcher
	out chan proxy.SlotMap
}

func (s *clusterSource) Watch(cfg *config.Config)   { s.w.Watch(cfg) }
func (s *clusterSource) Maps() <-chan proxy.SlotMap { return s.out }
func (s *clusterSource) Hint(pool string)           { s.w.Hint(pool) }
