// Command profile runs nuthatch's proxy engine in-process — what one
// worker does, without the master — and writes a CPU profile of it, for
// `go tool pprof`. The benchmark driver starts it in place of a worker
// and drives load at it.
//
//	profile -c bench.hcl -cpuprofile cpu.pprof
//
// Profiling starts once every pool listens (the line "listening" on
// stdout) and stops on SIGINT or SIGTERM, when the profile is written.
// Cluster pools get their slot maps from a cluster watcher in the same
// process, as the master would push them to a worker.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/cluster"
	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	file := flag.String("c", "", "nuthatch configuration file")
	out := flag.String("cpuprofile", "cpu.pprof", "where to write the CPU profile")
	flag.Parse()
	src, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	cfg, err := config.Parse(src, *file)
	if err != nil {
		return err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	px, err := proxy.New(cfg, logrus.NewEntry(log))
	if err != nil {
		return err
	}
	px.Start()
	defer px.Close()
	if hasCluster(cfg) {
		w := cluster.New(logrus.NewEntry(log))
		defer w.Close()
		px.SetHintFunc(func(pool, _, _ string) { go w.Hint(pool) })
		go func() {
			for m := range w.Maps() {
				sm := proxy.SlotMap{Pool: m.Pool, Version: m.Version, Nodes: m.Nodes, Replicas: m.Replicas}
				for _, r := range m.Ranges {
					sm.Ranges = append(sm.Ranges, proxy.SlotRange{Start: r.Start, End: r.End, Node: r.Node})
				}
				px.SetSlotMap(sm)
			}
		}()
		w.Watch(cfg)
	}
	for _, p := range cfg.Pools {
		ln, err := net.Listen(p.Listen.Network, p.Listen.Addr)
		if err != nil {
			return fmt.Errorf("pool %s: %w", p.Name, err)
		}
		if err := px.Serve(p.Name, ln); err != nil {
			return err
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	fmt.Println("listening")
	<-sigs
	pprof.StopCPUProfile()
	return nil
}

func hasCluster(cfg *config.Config) bool {
	for _, p := range cfg.Pools {
		if p.Cluster != nil {
			return true
		}
	}
	return false
}
