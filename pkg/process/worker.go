package process

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/listener"
	"github.com/nuthatch-proxy/nuthatch/pkg/logging"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// Environment of a worker process, set by the master.
const (
	EnvRole    = "NUTHATCH_ROLE" // "worker"
	RoleWorker = "worker"
	// The control channel is the first inherited descriptor.
	workerChannelFd = 3
)

// IsWorker reports whether this process was started as a worker.
func IsWorker() bool { return os.Getenv(EnvRole) == RoleWorker }

// RunWorker is the body of a worker process: it receives its configuration
// and listeners from the master, serves them, and obeys the master until
// told to stop or until the master goes away.
func RunWorker() int {
	ch := ChannelFromFile(os.NewFile(workerChannelFd, "master"))
	log := logrus.New()
	m, files, err := ch.Recv()
	if err != nil || m.Type != MsgInit {
		fmt.Fprintf(os.Stderr, "nuthatch worker: no init message from the master: %v\n", err)
		return 1
	}
	cfg, err := config.ParseWithFiles(m.Config, m.ConfigFile, m.TLSFiles)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nuthatch worker: configuration: %v\n", err)
		return 1
	}
	if err := logging.Setup(log, cfg.Log.Level, cfg.Log.Format); err != nil {
		fmt.Fprintf(os.Stderr, "nuthatch worker: %v\n", err)
		return 1
	}
	entry := log.WithFields(logrus.Fields{"role": "worker", "worker": m.Worker, "generation": m.Generation})
	w := &worker{ch: ch, log: log, entry: entry, cfg: cfg, init: m}
	return w.run(files)
}

type worker struct {
	ch    *Channel
	log   *logrus.Logger
	entry *logrus.Entry
	cfg   *config.Config
	init  *Message
	px    *proxy.Proxy
}

func (w *worker) run(files []*os.File) int {
	m := w.init
	if m.CPU >= 0 {
		var set unix.CPUSet
		set.Set(m.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			w.entry.WithError(err).WithField("cpu", m.CPU).Warn("cannot pin worker to its CPU")
		}
	}
	if m.GoMaxProcs > 0 && os.Getenv("GOMAXPROCS") == "" {
		// An operator's GOMAXPROCS in the environment wins.
		runtime.GOMAXPROCS(m.GoMaxProcs)
	}
	px, err := proxy.New(w.cfg, w.entry)
	if err != nil {
		w.entry.WithError(err).Error("cannot build the proxy")
		return 1
	}
	w.px = px
	px.SetHintFunc(func(pool, server, reason string) {
		// On the proxy's loop: a datagram to the master, never waited for.
		w.ch.Send(&Message{Type: MsgHint, Hint: &HintInfo{Pool: pool, Server: server, Reason: reason}})
	})
	if len(m.Topology) > 0 {
		px.SetServerAddresses(m.Topology)
	}
	if len(m.TicketKeys) > 0 {
		px.SetSessionTicketKeys(ticketKeys(m.TicketKeys))
	}
	for _, sm := range m.Slots {
		px.SetSlotMap(sm)
	}
	if m.Counters != nil && len(files) == len(m.Listeners)+1 {
		w.shareCounters(files[len(files)-1], m.Counters)
		files = files[:len(files)-1]
	}
	if len(files) != len(m.Listeners) {
		w.entry.Errorf("got %d listeners for %d specs", len(files), len(m.Listeners))
		return 1
	}
	for i, f := range files {
		spec := m.Listeners[i]
		ln, err := listener.FromFile(f)
		f.Close()
		if err != nil {
			w.entry.WithError(err).Error("bad listener")
			return 1
		}
		if spec.Pool == StatsListener {
			ln.Close() // served by the master
			continue
		}
		serve := px.Serve
		if spec.TLS {
			serve = px.ServeTLS
		}
		if err := serve(spec.Pool, ln); err != nil {
			ln.Close()
			w.entry.WithError(err).Error("cannot serve")
			return 1
		}
	}
	px.Start()
	w.handleSignals()
	if err := w.ch.Send(&Message{Type: MsgReady, Adopts: true}); err != nil {
		w.entry.WithError(err).Error("cannot report ready")
		return 1
	}
	w.entry.WithField("pid", os.Getpid()).Debug("worker ready")
	return w.control()
}

// shareCounters makes the pools count their clients in the master's
// segment, with the other workers'; without it each worker applies
// client_connections to its own clients.
func (w *worker) shareCounters(f *os.File, spec *CountersSpec) {
	defer f.Close() // the mapping stays
	counters, err := workerCounters(f, spec)
	if err != nil {
		w.entry.WithError(err).Warn("no shared client counters: client_connections holds per worker")
		return
	}
	for pool, c := range counters {
		if err := w.px.SetClientCounter(pool, c); err != nil {
			w.entry.WithError(err).Warn("shared client counter")
		}
	}
}

// control obeys the master. A closed channel means the master is gone: the
// worker drains and exits rather than serve a stale configuration alone.
// A drain runs beside the control loop, which goes on obeying: a draining
// worker's requests may be waiting for a server's new address (a reload
// or an upgrade during a Sentinel failover), which only MsgTopology brings.
func (w *worker) control() int {
	type recv struct {
		m   *Message
		err error
	}
	msgs := make(chan recv)
	go func() {
		for {
			m, files, err := w.ch.Recv()
			closeAll(files)
			if err == nil && m.Type == MsgClients {
				// Adopted here, not in the control loop: a draining
				// peer's batch must not wait behind a stats answer.
				w.adopt(m)
				continue
			}
			msgs <- recv{m, err}
			if err != nil {
				return
			}
		}
	}()
	var drained chan struct{}
	for {
		var r recv
		select {
		case r = <-msgs:
		case <-drained:
			w.finalStats()
			return 0
		}
		m, err := r.m, r.err
		if err != nil {
			w.entry.WithError(err).Warn("master gone, draining")
			if drained != nil {
				<-drained
				return 0
			}
			w.drain(masterGoneDrain)
			return 0
		}
		switch m.Type {
		case MsgHeartbeat:
			w.ch.Send(&Message{Type: MsgHeartbeat, Seq: m.Seq})
		case MsgDrain:
			if drained == nil {
				w.entry.Debug("draining")
				drained = make(chan struct{})
				handOver := m.HandOver
				go func() {
					if handOver {
						w.handOver(w.cfg.WorkerShutdownTimeout)
					} else {
						w.drain(w.cfg.WorkerShutdownTimeout)
					}
					close(drained)
				}()
			}
		case MsgStop:
			w.px.Close()
			w.finalStats()
			return 0
		case MsgReopen:
			// Logs go to stderr or the journal, which need no reopening.
		case MsgLogLevel:
			if lvl, err := logrus.ParseLevel(m.Level); err == nil {
				w.log.SetLevel(lvl)
			}
		case MsgTopology:
			w.px.SetServerAddresses(m.Topology)
		case MsgTLS:
			w.onTLS(m)
		case MsgSlots:
			for _, sm := range m.Slots {
				w.px.SetSlotMap(sm)
			}
		case MsgStats:
			if m.Peers != nil {
				w.px.SetPeerTotals(m.Peers)
			}
			w.ch.Send(&Message{Type: MsgStats, Seq: m.Seq, Stats: w.px.StatsJSON()})
		default:
			w.entry.WithField("type", m.Type).Warn("unknown control message")
		}
	}
}

// finalStats reports the counters one last time, so that the master's
// totals include everything this worker did.
func (w *worker) finalStats() {
	w.ch.Send(&Message{Type: MsgStats, Stats: w.px.StatsJSON()})
}

// handleSignals: a worker obeys its master, not the terminal. Signals sent
// to the whole process group (Ctrl-C) are ignored; QUIT and TERM sent to
// the worker itself stop it, gracefully or at once, as nginx's workers do.
func (w *worker) handleSignals() {
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		if sig == syscall.SIGQUIT {
			w.drain(w.cfg.WorkerShutdownTimeout)
		} else {
			w.px.Close()
		}
		os.Exit(0)
	}()
}

func (w *worker) drain(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := w.px.Shutdown(ctx); err != nil {
		w.entry.WithField("clients", w.px.Clients()).Warn("worker_shutdown_timeout reached, closing the remaining clients")
	}
}

// masterGoneDrain bounds the drain of a worker whose master died, so that
// no orphan keeps serving a configuration nobody supervises.
const masterGoneDrain = time.Second

// StatsListener is the pseudo pool name of the stats listener.
const StatsListener = "stats"
