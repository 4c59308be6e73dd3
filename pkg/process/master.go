package process

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/listener"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// Timing of the master. Variables so that tests can shorten them.
var (
	readyTimeout      = 10 * time.Second       // a new generation must be serving by then
	heartbeatInterval = time.Second            // master -> worker pings
	heartbeatDeadline = 10 * time.Second       // a worker silent for this long is wedged
	killGrace         = 2 * time.Second        // after a stop deadline, before SIGKILL
	respawnBackoffMax = 10 * time.Second       // cap of the delay between quick deaths
	stableAfter       = 10 * time.Second       // a worker alive this long resets back-off
	fastStopTimeout   = 2 * time.Second        // INT: how long workers get to close
	tickInterval      = 100 * time.Millisecond // deadlines are checked this often
	statusInterval    = time.Second            // STATUS= (and its request rate) refresh
	channelDrainBound = 30 * time.Second       // reading an exited worker's last messages
)

// Master owns the configuration, the listening sockets and the workers. It
// never touches client traffic. One goroutine (Run) owns all of its state;
// signals, worker messages and exits arrive on channels.
type Master struct {
	Log        *logrus.Logger
	Spawner    Spawner
	ConfigPath string
	// Signals delivers the process's signals; Run subscribes to the real
	// ones when nil.
	Signals chan os.Signal
	// Notify, when set, receives lifecycle states ("READY=1",
	// "RELOADING=1", "STOPPING=1", "STATUS=…") for the service manager.
	Notify func(state string)

	// Binary is the path a binary upgrade executes: the path this master
	// was started as, which a package upgrade replaces.
	Binary string
	// Args are the command-line arguments a binary upgrade passes on.
	Args []string
	// Inherited sockets (systemd's, or the previous master's on upgrade).
	Inherited []Inherited
	// Parent is the channel to the master this one replaces (upgrade).
	Parent *Channel
	// NotifySocket and WatchdogInterval are passed to a new master on
	// upgrade; Barrier waits until the service manager processed the
	// notifications sent so far.
	NotifySocket     string
	WatchdogInterval time.Duration
	Barrier          func(timeout time.Duration) error

	// Topology, when set, follows the servers whose address moves
	// (Sentinel pools) and tells the master each new address; nil leaves
	// such servers without an address.
	Topology TopologySource
	// Cluster, when set, reads the slot maps of cluster pools.
	Cluster ClusterSource

	// openSocket replaces listener.Open in tests.
	openSocket func(addr config.Address, o listener.Options) (*os.File, error)

	entry   *logrus.Entry
	sockets *socketSet
	genSeq  uint64
	cur     *generation
	next    *generation // a reload in progress
	workers map[*workerState]struct{}
	events  chan event
	backoff []time.Duration
	stop    *stopState
	beatSeq uint64

	upgrade    *upgradeState // a new binary starting (old master side)
	parent     *Channel      // the old master (new master side, until handover)
	oldMaster  *Channel      // the old master after handover, until it exits
	handedOver bool          // an upgrade replaced this master
	reloads    int
	lastDog    time.Time
	stats      *statsService
	statsTick  *time.Ticker  // every statsEvery: ask the workers for their counters
	statsEvery time.Duration // statsPeriod of the serving configuration
	lastStatus time.Time
	rate       rateMeter
	addresses  map[[2]string]proxy.ServerAddress // (pool, server) -> the latest from Topology
	counters   *counterSegment                   // where new generations count their clients
	slotMaps   map[string]proxy.SlotMap          // cluster pool -> the latest from Cluster
	tallies    []*handoverTally                  // hand-overs not yet logged
	tallySeq   uint64
	tickets    ticketKeyring // session ticket keys for every worker (tls.go)
	expiryAt   time.Time     // when certificate expiry was last checked
}

// ClusterSource reads cluster pools' slot maps, one per master.
type ClusterSource interface {
	Watch(cfg *config.Config)
	Maps() <-chan proxy.SlotMap
	// Hint asks for the pool's map to be read again soon.
	Hint(pool string)
}

// TopologySource is where the addresses of servers that move come from:
// one per master, whatever the number of workers, so that the sentinels
// see one set of connections per host.
type TopologySource interface {
	// Watch starts following cfg's servers that move; servers it follows
	// already keep their state.
	Watch(cfg *config.Config)
	// Updates delivers new addresses, and confirmations of unchanged ones
	// after a Hint, with growing versions.
	Updates() <-chan proxy.ServerAddress
	// Hint asks for a server to be resolved again now.
	Hint(pool, server string)
}

type generation struct {
	id      uint64
	cfg     *config.Config
	src     []byte
	sockets map[string][]*os.File
	slots   []*workerState
	ready   int
	started time.Time
	cred    *syscall.Credential
	// counters holds the clients of the generation's pools, rows[slot]
	// being each slot's share; nil: each worker counts its own.
	counters *counterSegment
	rows     []int
	ended    bool // its rows are given back
	// tlsPrint fingerprints the contents of its TLS files (tls.go).
	tlsPrint [32]byte
}

type workerState struct {
	clients  int64     // connected clients at the last stats report
	asked    time.Time // when its counters were asked for, zero once answered
	proc     WorkerProc
	gen      *generation
	slot     int
	started  time.Time
	ready    bool
	draining bool
	deadline time.Time // kill after this when draining (zero: none)
	lastBeat time.Time
	exited   bool
	adopts   bool // it takes handed-over clients (said in MsgReady)
	relayed  int  // clients relayed to it since its last stats report
}

type stopState struct {
	fast     bool
	deadline time.Time
}

type eventKind int

const (
	evExit eventKind = iota
	evMsg
	evRespawn
)

type event struct {
	kind eventKind
	w    *workerState
	exit ExitStatus
	msg  *Message
	slot int
	gen  *generation
}

// Run starts the workers for cfg (whose source is src) and supervises them
// until a stop signal has been handled. It returns an error when the first
// generation cannot start.
func (m *Master) Run(cfg *config.Config, src []byte) error {
	m.entry = m.Log.WithField("role", "master")
	m.sockets = newSocketSet()
	if m.openSocket != nil {
		m.sockets.opener = m.openSocket
	}
	m.sockets.adopt(m.Inherited)
	m.stats = newStatsService(m.entry)
	if r, ok := m.Topology.(interface{ Reachable() map[string][2]int }); ok {
		m.stats.reach = r.Reachable
	}
	defer m.stats.close()
	if m.Parent != nil {
		m.parent = m.Parent
		go m.watchParent(m.Parent)
	}
	m.workers = make(map[*workerState]struct{})
	m.events = make(chan event, 64)
	if m.Signals == nil {
		m.Signals = make(chan os.Signal, 16)
		signal.Notify(m.Signals, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT,
			syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU)
		defer signal.Stop(m.Signals)
	}
	defer m.sockets.closeAll()

	g, err := m.prepare(cfg, src)
	if err != nil {
		return err
	}
	m.sockets.closeUnused(m.entry)
	if m.Parent == nil {
		// Nothing else accepts from these sockets yet (an upgrade's old
		// workers do, so it waits for promote): steer at once, so that
		// clients connecting while the workers start are not left spread
		// by hash for the life of their connections.
		steer(g.sockets, cfg.ReuseportSteering, m.entry)
	}
	m.next = g
	m.startGeneration(g)

	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	// Its own ticker, not tickInterval's: stats.interval may be shorter.
	m.statsEvery = statsPeriod(cfg)
	m.statsTick = time.NewTicker(m.statsEvery)
	defer m.statsTick.Stop()
	lastBeat := time.Now()
	var topo <-chan proxy.ServerAddress
	if m.Topology != nil {
		topo = m.Topology.Updates()
	}
	var slots <-chan proxy.SlotMap
	if m.Cluster != nil {
		slots = m.Cluster.Maps()
	}
	for {
		select {
		case sig := <-m.Signals:
			m.onSignal(sig.(syscall.Signal))
		case a := <-topo:
			m.onAddress(a)
		case sm := <-slots:
			m.onSlotMap(sm)
		case ev := <-m.events:
			m.onEvent(ev)
		case now := <-m.statsTick.C:
			m.pollStats(now)
		case now := <-tick.C:
			m.checkDeadlines(now)
			if now.Sub(lastBeat) >= heartbeatInterval {
				lastBeat = now
				m.heartbeat(now)
			}
			m.watchdog(now)
			m.reportStatus(now)
			m.tlsTick(now)
		}
		if m.cur == nil && m.next == nil && m.stop == nil {
			return errors.New("process: the workers could not start")
		}
		if m.stop != nil && len(m.workers) == 0 {
			m.logTallies(time.Now(), true)
			m.entry.Info("all workers exited, master stopping")
			if m.cur != nil && m.cur.cfg.PidFile != "" && !m.handedOver {
				os.Remove(m.cur.cfg.PidFile)
			}
			if u := m.upgrade; u != nil && !u.ready {
				u.cmd.Process.Signal(syscall.SIGKILL)
			} else if u != nil {
				// Hand the counters of every worker this master had over.
				u.ch.Send(&Message{Type: MsgStats, Stats: m.stats.agg.MarshalState()})
			}
			return nil
		}
	}
}

// prepare validates what a new generation needs and acquires its sockets,
// touching nothing that is running (nginx's ngx_init_cycle).
func (m *Master) prepare(cfg *config.Config, src []byte) (*generation, error) {
	warnSecretsReadable(cfg, m.entry)
	if m.Topology != nil {
		m.Topology.Watch(cfg)
	}
	if m.Cluster != nil {
		m.Cluster.Watch(cfg)
	}
	cred, err := workerCredential(cfg, m.entry)
	if err != nil {
		return nil, err
	}
	socks, err := m.sockets.want(cfg)
	if err != nil {
		return nil, err
	}
	m.genSeq++
	g := &generation{id: m.genSeq, cfg: cfg, src: src, sockets: socks,
		slots: make([]*workerState, cfg.WorkerProcesses), cred: cred, tlsPrint: tlsFingerprint(cfg)}
	m.checkTLS(cfg)
	m.assignCounters(g)
	return g, nil
}

// assignCounters gives g its rows of the client counters, in the segment
// of the generations before it when they fit, so that the clients the
// old generation still drains count against the new one's limits.
func (m *Master) assignCounters(g *generation) {
	names := make([]string, len(g.cfg.Pools))
	for i, p := range g.cfg.Pools {
		names[i] = p.Name
	}
	if m.counters != nil {
		if rows, ok := m.counters.reserve(names, len(g.slots)); ok {
			g.counters, g.rows = m.counters, rows
			return
		}
		m.entry.WithField("generation", g.id).Info("client counters full, the new generation counts its clients from zero")
	}
	seg, err := newCounterSegment(len(names), len(g.slots))
	if err != nil {
		m.entry.WithError(err).Warn("no shared client counters: client_connections holds per worker")
		return
	}
	g.counters = seg
	g.rows, _ = seg.reserve(names, len(g.slots))
	if old := m.counters; old != nil && old.gens == 0 {
		old.close()
	}
	m.counters = seg
}

// maybeEnd gives back the rows of a generation that neither serves nor
// starts and has no worker left.
func (m *Master) maybeEnd(g *generation) {
	if g == nil || g == m.cur || g == m.next || g.ended || g.counters == nil {
		return
	}
	for _, w := range g.slots {
		if w != nil {
			return
		}
	}
	g.ended = true
	g.counters.release(g.rows)
	if g.counters.gens == 0 && g.counters != m.counters {
		g.counters.close()
	}
}

// workerCredential is the user workers run as when the master is root.
func workerCredential(cfg *config.Config, log *logrus.Entry) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(cfg.User)
	if err != nil && cfg.User == config.DefaultUser {
		// The package creates the user; a hand-run master without it
		// falls back to nobody rather than serve as root.
		log.WithField("user", cfg.User).Warn("user does not exist, workers run as nobody")
		u, err = user.Lookup("nobody")
	}
	if err != nil {
		return nil, fmt.Errorf("process: worker user %q: %w", cfg.User, err)
	}
	gname := cfg.Group
	g, err := user.LookupGroup(gname)
	if err != nil {
		if gname != config.DefaultGroup {
			return nil, fmt.Errorf("process: worker group %q: %w", gname, err)
		}
		g = &user.Group{Gid: u.Gid}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false, Groups: []uint32{}}, nil
}

func (m *Master) startGeneration(g *generation) {
	g.started = time.Now()
	m.backoff = make([]time.Duration, len(g.slots))
	fields := logrus.Fields{"generation": g.id, "workers": len(g.slots)}
	if g.cfg.WorkerProcessesAuto {
		// Say what "auto" was worked out from, so that an operator who
		// expected one worker per CPU sees why.
		b := config.HostCPUs()
		fields["worker_processes"] = "auto"
		fields["cpus_usable"] = b.Usable()
		if b.Quota > 0 {
			fields["cpu_quota"] = b.Quota
		}
	}
	m.entry.WithFields(fields).Info("starting workers")
	for slot := range g.slots {
		m.spawn(g, slot)
	}
}

// spawn starts the worker of slot in g and sends its init message.
func (m *Master) spawn(g *generation, slot int) {
	proc, err := m.Spawner.Spawn(WorkerSpec{Slot: slot, Generation: g.id, Credential: g.cred})
	if err != nil {
		m.entry.WithError(err).WithField("slot", slot).Error("cannot start worker")
		m.scheduleRespawn(g, slot)
		return
	}
	w := &workerState{proc: proc, gen: g, slot: slot, started: time.Now(), lastBeat: time.Now()}
	g.slots[slot] = w
	m.workers[w] = struct{}{}
	files, specs := forSlot(g.cfg, g.sockets, slot)
	cpu := -1
	if g.cfg.WorkerCPUAffinity {
		cpu = slot % runtime.NumCPU()
	}
	init := &Message{Type: MsgInit, Generation: g.id, Worker: slot, Config: g.src, ConfigFile: g.cfg.File,
		Listeners: specs, CPU: cpu, GoMaxProcs: goMaxProcs(len(g.slots)), Topology: m.addressesFor(g.cfg),
		Slots: m.slotMapsFor(g.cfg), TicketKeys: m.ticketKeysFor(g.cfg), TLSFiles: g.cfg.TLSFiles}
	if g.counters != nil {
		names := make([]string, len(g.cfg.Pools))
		for i, p := range g.cfg.Pools {
			names[i] = p.Name
		}
		init.Counters = g.counters.spec(names, g.rows[slot])
		files = append(files, g.counters.f)
	}
	if err := proc.Channel().Send(init, files...); err != nil {
		m.entry.WithError(err).WithField("slot", slot).Error("cannot initialise worker")
		proc.Signal(syscall.SIGKILL)
	}
	go m.watch(w)
	m.entry.WithFields(logrus.Fields{"slot": slot, "pid": proc.Pid(), "generation": g.id}).Debug("worker started")
}

// goMaxProcs gives each worker its share of the CPUs.
//
// At least 2: a worker's event loop is one goroutine, and with a single P
// the runtime's sysmon takes the P away during every blocking epoll_wait
// longer than 20 µs, which the loop then pays to get back. Measured with
// two workers on two CPUs: 12.2 against 9.5 µs of CPU per unpipelined GET.
func goMaxProcs(workers int) int {
	return max(2, config.HostCPUs().Usable()/max(workers, 1))
}

// watch forwards a worker's messages and its exit to the master loop.
func (m *Master) watch(w *workerState) {
	ch := w.proc.Channel()
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			msg, files, err := ch.Recv()
			closeAll(files)
			if errors.Is(err, errTruncated) {
				m.entry.WithError(err).WithField("slot", w.slot).Error("worker message lost")
				continue
			}
			if err != nil {
				if !errors.Is(err, errChannelClosed) {
					m.entry.WithError(err).WithField("slot", w.slot).Error("worker channel unreadable")
				}
				return
			}
			// A MsgClients' descriptors travel in msg.FDs to the loop,
			// which relays and closes them.
			m.events <- event{kind: evMsg, w: w, msg: msg}
		}
	}()
	st := w.proc.Wait()
	// The worker's last messages (its final counters, the clients it
	// handed over) come before its exit: read them all, up to the EOF its
	// exit makes. Closing the channel sooner would drop what is still
	// queued, and with it handed-over clients (the kernel closes their
	// descriptors: a reset). The bound only guards against an end that
	// something else keeps open; the reader is slow only while the master
	// loop is (a loaded machine), and it always catches up.
	select {
	case <-read:
	case <-time.After(channelDrainBound):
		m.entry.WithField("slot", w.slot).Warn("worker exited but its channel is still open, closing it")
	}
	ch.Close()
	<-read
	m.events <- event{kind: evExit, w: w, exit: st}
}

func (m *Master) onEvent(ev event) {
	switch ev.kind {
	case evMsg:
		m.onMessage(ev.w, ev.msg)
	case evExit:
		m.onExit(ev.w, ev.exit)
	case evRespawn:
		if m.stop == nil && ev.gen == m.cur && ev.gen.slots[ev.slot] == nil {
			m.spawn(ev.gen, ev.slot)
		}
	case evUpgradeReady:
		if m.upgrade != nil && ev.msg != nil {
			m.upgrade.adopts = ev.msg.Adopts
		}
		m.upgradeReady()
	case evUpgradeExit:
		if m.upgrade != nil {
			m.upgradeFailed("the new binary exited: " + ev.exit.String())
		}
	case evParentMsg:
		switch ev.msg.Type {
		case MsgHandover:
			m.takeOver()
		case MsgClients:
			m.relayClients(nil, ev.msg)
		case MsgStats:
			if err := m.stats.agg.LoadState(ev.msg.Stats); err != nil {
				m.entry.WithError(err).Warn("counters from the old master unreadable")
			}
		}
	case evParentGone:
		m.sourceGone(nil)
		if m.parent != nil && m.cur != nil {
			m.takeOver()
		}
		if m.oldMaster != nil {
			m.oldMaster.Close()
			m.oldMaster = nil
		}
	}
}

func (m *Master) onMessage(w *workerState, msg *Message) {
	switch msg.Type {
	case MsgReady:
		if w.ready {
			return
		}
		w.ready = true
		w.adopts = msg.Adopts
		w.lastBeat = time.Now()
		w.gen.ready++
		if w.gen == m.next && w.gen.ready == len(w.gen.slots) {
			m.promote(w.gen)
		}
	case MsgHeartbeat:
		w.lastBeat = time.Now()
	case MsgClients:
		m.relayClients(w, msg)
	case MsgAdopted:
		m.adopted(msg)
	case MsgHint:
		if m.Topology != nil && msg.Hint != nil {
			m.Topology.Hint(msg.Hint.Pool, msg.Hint.Server)
		}
		if m.Cluster != nil && msg.Hint != nil {
			m.Cluster.Hint(msg.Hint.Pool)
		}
	case MsgStats:
		at := w.asked
		if at.IsZero() {
			at = time.Now() // unasked: a worker's final counters
		}
		w.asked = time.Time{}
		m.stats.update(w, msg.Stats, at)
	}
}

// onAddress records a server's new address and tells every worker.
func (m *Master) onAddress(a proxy.ServerAddress) {
	if m.addresses == nil {
		m.addresses = map[[2]string]proxy.ServerAddress{}
	}
	k := [2]string{a.Pool, a.Server}
	if old, ok := m.addresses[k]; ok && old.Version > a.Version {
		return
	}
	m.addresses[k] = a
	m.broadcast(&Message{Type: MsgTopology, Topology: []proxy.ServerAddress{a}})
}

// onSlotMap records a cluster pool's map and tells every worker.
func (m *Master) onSlotMap(sm proxy.SlotMap) {
	if m.slotMaps == nil {
		m.slotMaps = map[string]proxy.SlotMap{}
	}
	if old, ok := m.slotMaps[sm.Pool]; ok && old.Version > sm.Version {
		return
	}
	m.slotMaps[sm.Pool] = sm
	m.broadcast(&Message{Type: MsgSlots, Slots: []proxy.SlotMap{sm}})
}

// slotMapsFor is what a new worker of cfg starts with.
func (m *Master) slotMapsFor(cfg *config.Config) []proxy.SlotMap {
	var out []proxy.SlotMap
	for _, p := range cfg.Pools {
		if sm, ok := m.slotMaps[p.Name]; ok && p.Cluster != nil {
			out = append(out, sm)
		}
	}
	return out
}

// addressesFor is what a new worker of cfg starts with: the addresses
// known now, not the file's.
func (m *Master) addressesFor(cfg *config.Config) []proxy.ServerAddress {
	var out []proxy.ServerAddress
	for _, p := range cfg.Pools {
		if p.Sentinel == nil {
			continue
		}
		for _, s := range p.Servers {
			if a, ok := m.addresses[[2]string{p.Name, s.Name}]; ok {
				out = append(out, a)
			}
		}
	}
	return out
}

// promote makes g the serving generation once all its workers are ready,
// and sends the previous one to drain.
func (m *Master) promote(g *generation) {
	old := m.cur
	m.cur, m.next = g, nil
	m.sockets.commit(g.sockets, g.cfg.ReuseportSteering, m.Log.WithField("component", "master"))
	m.stats.configure(g.cfg)
	m.setStatsPeriod(g.cfg)
	if old != nil {
		handOver := false
		for _, w := range g.slots {
			handOver = handOver || (w != nil && w.adopts)
		}
		for _, w := range old.slots {
			if w != nil {
				m.drainWorker(w, g.cfg.WorkerShutdownTimeout, handOver)
			}
		}
		m.maybeEnd(old)
		m.entry.WithFields(logrus.Fields{"generation": g.id, "workers": len(g.slots)}).Info("configuration reloaded")
		m.notify("READY=1\n" + m.status())
		m.reloadDone("")
		return
	}
	m.entry.WithFields(logrus.Fields{"generation": g.id, "workers": len(g.slots)}).Info("workers ready")
	if m.parent != nil {
		// Started by an upgrade: the old master hands over the main PID.
		if err := m.parent.Send(&Message{Type: MsgReady, Adopts: true}); err != nil {
			m.takeOver()
		}
		return
	}
	m.becameMain()
}

// becameMain: this master serves and is the service's main process.
func (m *Master) becameMain() {
	if m.cur.cfg.PidFile != "" {
		if err := WritePidFile(m.cur.cfg.PidFile); err != nil {
			m.entry.WithError(err).Error("cannot write the pid file")
		}
	}
	m.notify("READY=1\n" + m.status())
}

func (m *Master) status() string {
	var clients int64
	for w := range m.workers {
		clients += w.clients
	}
	return fmt.Sprintf("STATUS=generation %d, %d workers, %d pools, %d clients, %.0f requests/s",
		m.cur.id, len(m.cur.slots), len(m.cur.cfg.Pools), clients, m.rate.value)
}

// setStatsPeriod makes the stats poll follow cfg's stats.interval.
func (m *Master) setStatsPeriod(cfg *config.Config) {
	d := statsPeriod(cfg)
	if d == m.statsEvery {
		return
	}
	m.entry.WithFields(logrus.Fields{"from": m.statsEvery, "to": d}).Info("stats interval changed")
	m.statsEvery = d
	m.statsTick.Reset(d)
}

// pollStats asks every worker for its counters. A worker still busy with
// the previous request (draining, or loaded) is not asked again, so that
// a short interval cannot pile requests up in its channel.
func (m *Master) pollStats(now time.Time) {
	m.beatSeq++
	total := m.stats.agg.Total()
	for w := range m.workers {
		if w.ready && !w.exited && w.asked.IsZero() {
			own, _ := m.stats.agg.Live(workerID(w))
			if w.proc.Channel().Send(&Message{Type: MsgStats, Seq: m.beatSeq, Peers: proxy.PeerTotalsOf(total, own)}) == nil {
				w.asked = now
			}
		}
	}
	m.stats.setWorkers(m.workers)
}

// reportStatus refreshes STATUS= once a second, whatever stats.interval:
// the service manager needs no more, and the rate is measured between
// aggregates, not between reports.
func (m *Master) reportStatus(now time.Time) {
	if now.Sub(m.lastStatus) < statusInterval {
		return
	}
	m.lastStatus = now
	m.rate.sample(m.stats.agg.Total(), m.stats.aggregatedAt())
	if m.cur != nil && m.next == nil && m.upgrade == nil && m.parent == nil && !m.handedOver && m.stop == nil {
		m.notify(m.status())
	}
}

// reloadDone records the outcome of a reload next to the pid file, where
// `nuthatch -s reload -w` waits for it.
func (m *Master) reloadDone(failure string) {
	if m.cur == nil || m.cur.cfg.PidFile == "" {
		return
	}
	m.reloads++
	line := fmt.Sprintf("%d %d ok\n", os.Getpid(), m.reloads)
	if failure != "" {
		line = fmt.Sprintf("%d %d failed: %s\n", os.Getpid(), m.reloads, strings.ReplaceAll(failure, "\n", "; "))
	}
	if err := writeFileAtomic(m.cur.cfg.PidFile+".reload", line); err != nil {
		m.entry.WithError(err).Warn("cannot record the reload status")
	}
}

func (m *Master) notify(state string) {
	if m.Notify != nil {
		m.Notify(state)
	}
}

// drainWorker sends w to drain; with handOver, its idle clients come back
// in MsgClients for the next generation (handover.go).
func (m *Master) drainWorker(w *workerState, timeout time.Duration, handOver bool) {
	if w.draining || w.exited {
		return
	}
	w.draining = true
	w.deadline = time.Now().Add(timeout + killGrace)
	if err := w.proc.Channel().Send(&Message{Type: MsgDrain, HandOver: handOver}); err != nil {
		w.proc.Signal(syscall.SIGKILL)
	}
}

func (m *Master) onExit(w *workerState, st ExitStatus) {
	w.exited = true
	delete(m.workers, w)
	m.stats.agg.Retire(workerID(w))
	g := w.gen
	if g.slots[w.slot] == w {
		g.slots[w.slot] = nil
	}
	fields := logrus.Fields{"slot": w.slot, "pid": w.proc.Pid(), "generation": g.id, "status": st.String()}
	if g.counters != nil {
		// The worker is reaped: its clients are gone with it, and nothing
		// writes its row until the slot is respawned.
		if n := g.counters.retire(g.rows[w.slot]); n != 0 {
			fields["clients_uncounted"] = n
		}
	}
	defer m.maybeEnd(g)
	m.sourceGone(g)
	switch {
	case w.draining || m.stop != nil:
		m.entry.WithFields(fields).Debug("worker exited")
	case g == m.next:
		// A worker of a reload died before the reload completed: abandon
		// the new configuration, keep serving the old one.
		m.entry.WithFields(fields).Error("new worker died while starting, reload abandoned")
		m.abandon(g)
	case g == m.cur:
		lived := time.Since(w.started)
		m.entry.WithFields(fields).WithField("lived", lived.Round(time.Millisecond)).Error("worker died, respawning")
		if lived >= stableAfter {
			m.backoff[w.slot] = 0
		}
		m.scheduleRespawn(g, w.slot)
	default:
		m.entry.WithFields(fields).Warn("worker of an old generation exited")
	}
}

// scheduleRespawn restarts a slot at once the first time, then with a
// growing delay while the worker keeps dying young: never a busy loop.
func (m *Master) scheduleRespawn(g *generation, slot int) {
	if m.cur == nil && m.next == g {
		// The very first generation failed: give up, the operator must look.
		m.abandon(g)
		return
	}
	d := m.backoff[slot]
	m.backoff[slot] = min(max(2*d, 100*time.Millisecond), respawnBackoffMax)
	if d > 0 {
		m.entry.WithFields(logrus.Fields{"slot": slot, "delay": d}).Error("worker keeps dying, respawn delayed")
	}
	if d == 0 {
		m.spawn(g, slot)
		return
	}
	time.AfterFunc(d, func() { m.events <- event{kind: evRespawn, gen: g, slot: slot} })
}

// abandon stops a generation that never became ready.
func (m *Master) abandon(g *generation) {
	if m.next != g {
		return
	}
	m.next = nil
	for _, w := range g.slots {
		if w != nil && !w.exited {
			w.draining = true
			w.proc.Signal(syscall.SIGKILL)
		}
	}
	m.sockets.discard(g.sockets)
	m.maybeEnd(g)
	if m.cur != nil {
		m.notify("READY=1\n" + m.status() + "; last reload failed")
		m.reloadDone("the new workers did not start")
	}
}

func (m *Master) checkDeadlines(now time.Time) {
	m.logTallies(now, false)
	if u := m.upgrade; u != nil && !u.ready && now.After(u.deadline) {
		m.upgradeFailed("the new master was not ready within " + upgradeTimeout.String())
	}
	if g := m.next; g != nil && now.Sub(g.started) > readyTimeout {
		m.entry.WithField("generation", g.id).Error("new workers not ready in time, reload abandoned")
		m.abandon(g)
	}
	for w := range m.workers {
		if !w.deadline.IsZero() && now.After(w.deadline) {
			m.entry.WithFields(logrus.Fields{"slot": w.slot, "pid": w.proc.Pid()}).Warn("worker did not stop in time, killing it")
			w.proc.Signal(syscall.SIGKILL)
			w.deadline = time.Time{}
		}
		if w.ready && !w.draining && now.Sub(w.lastBeat) > heartbeatDeadline {
			m.entry.WithFields(logrus.Fields{"slot": w.slot, "pid": w.proc.Pid()}).Error("worker stopped answering, killing it")
			w.proc.Signal(syscall.SIGKILL)
			w.lastBeat = now
		}
	}
}

// watchdog pings the service manager only while every worker answers its
// heartbeats, so that a wedged nuthatch is restarted.
func (m *Master) watchdog(now time.Time) {
	if m.WatchdogInterval <= 0 || m.cur == nil || m.parent != nil || m.handedOver || now.Sub(m.lastDog) < m.WatchdogInterval {
		return
	}
	ready := 0
	for _, w := range m.cur.slots {
		if w == nil || !w.ready {
			continue
		}
		if now.Sub(w.lastBeat) > 3*heartbeatInterval {
			return
		}
		ready++
	}
	if ready == 0 {
		return
	}
	m.lastDog = now
	m.notify("WATCHDOG=1")
}

func (m *Master) heartbeat(now time.Time) {
	m.beatSeq++
	for w := range m.workers {
		if w.ready && !w.draining {
			w.proc.Channel().Send(&Message{Type: MsgHeartbeat, Seq: m.beatSeq})
		}
	}
}

// onSignal logs every signal at info, by its name (signal=SIGTTIN, as
// twemproxy's "signal 21 (SIGTTIN) received") and with what it does, then
// acts; a signal that cannot be obeyed now is logged as a warning with why.
func (m *Master) onSignal(sig syscall.Signal) {
	name := unix.SignalName(sig)
	log := m.entry.WithField("signal", name)
	switch sig {
	case syscall.SIGHUP:
		if why := m.reloadRefused(); why != "" {
			log.Warn(name + " received, reload ignored: " + why)
			return
		}
		log.WithField("config", m.ConfigPath).Info(name + " received, reloading configuration")
		m.reload()
	case syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT:
		fast := sig == syscall.SIGINT
		if m.stop != nil && (m.stop.fast || !fast) {
			log.Info(name + " received, already stopping")
			return
		}
		what := "stopping gracefully"
		if fast {
			what = "stopping fast"
		}
		log.WithField("timeout", m.stopTimeout(fast)).Info(name + " received, " + what)
		m.shutdown(fast)
	case syscall.SIGUSR1:
		// Logs go to stderr or the journal: nothing to reopen, but the
		// workers are told, for when there is.
		log.Info(name + " received, reopening logs")
		m.broadcast(&Message{Type: MsgReopen})
	case syscall.SIGTTIN, syscall.SIGTTOU:
		m.changeLogLevel(sig, log)
	case syscall.SIGUSR2:
		if why := m.upgradeRefused(); why != "" {
			log.Warn(name + " received, upgrade refused: " + why)
			return
		}
		log.Info(name + " received, starting a binary upgrade")
		m.startUpgrade()
	default:
		log.Info(name + " received, ignored")
	}
}

// changeLogLevel moves the level of the master and the workers one step
// (TTIN up, TTOU down, between error and trace). The line is written at
// the more verbose of the two levels' sides: after raising, before
// lowering, so that it shows whenever either level shows info.
func (m *Master) changeLogLevel(sig syscall.Signal, log *logrus.Entry) {
	name := unix.SignalName(sig)
	from := m.Log.GetLevel()
	to := from
	switch {
	case sig == syscall.SIGTTIN && from < logrus.TraceLevel:
		to = from + 1
	case sig == syscall.SIGTTOU && from > logrus.ErrorLevel:
		to = from - 1
	}
	log = log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()})
	switch {
	case to == from && sig == syscall.SIGTTIN:
		log.Info(name + " received, log level already at its highest (" + to.String() + ")")
		return
	case to == from:
		log.Info(name + " received, log level already at its lowest (" + to.String() + ")")
		return
	case to > from:
		m.Log.SetLevel(to)
		log.Info(name + " received, raising log level to " + to.String())
	default:
		log.Info(name + " received, lowering log level to " + to.String())
		m.Log.SetLevel(to)
	}
	m.broadcast(&Message{Type: MsgLogLevel, Level: to.String()})
}

func (m *Master) broadcast(msg *Message) {
	for w := range m.workers {
		if !w.exited {
			w.proc.Channel().Send(msg)
		}
	}
}

// reload re-reads the configuration and, if it is valid and its sockets
// can be had, starts a new generation; on any error the running one goes
// on untouched.
func (m *Master) reload() {
	if m.reloadRefused() != "" {
		return
	}
	m.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	src, err := os.ReadFile(m.ConfigPath)
	var cfg *config.Config
	if err == nil {
		cfg, err = config.Parse(src, m.ConfigPath)
	}
	if err == nil && m.certsOnly(cfg, src) {
		m.reloadTLS(cfg)
		return
	}
	if err == nil {
		m.next, err = m.prepare(cfg, src)
	}
	if err != nil {
		m.entry.WithError(err).Error("reload failed, keeping the running configuration")
		m.notify("READY=1\n" + m.status() + "; last reload failed")
		m.reloadDone(err.Error())
		return
	}
	m.startGeneration(m.next)
}

// reloadRefused says why a reload cannot start now ("" when it can).
func (m *Master) reloadRefused() string {
	switch {
	case m.stop != nil:
		return "stopping"
	case m.next != nil:
		return fmt.Sprintf("the previous reload is still starting its workers (generation %d)", m.next.id)
	case m.upgrade != nil:
		return "a binary upgrade is in progress"
	}
	return ""
}

// stopTimeout bounds a stop: worker_shutdown_timeout, or fastStopTimeout.
func (m *Master) stopTimeout(fast bool) time.Duration {
	if !fast && m.cur != nil {
		return m.cur.cfg.WorkerShutdownTimeout
	}
	return fastStopTimeout
}

func (m *Master) shutdown(fast bool) {
	if m.stop != nil && (m.stop.fast || !fast) {
		return
	}
	if !m.handedOver {
		m.notify("STOPPING=1")
	}
	timeout := m.stopTimeout(fast)
	m.stop = &stopState{fast: fast, deadline: time.Now().Add(timeout)}
	m.entry.WithFields(logrus.Fields{"fast": fast, "timeout": timeout}).Debug("stopping")
	for w := range m.workers {
		if fast {
			w.draining = true
			w.deadline = time.Now().Add(timeout)
			if err := w.proc.Channel().Send(&Message{Type: MsgStop}); err != nil {
				w.proc.Signal(syscall.SIGKILL)
			}
			continue
		}
		m.drainWorker(w, timeout, !fast && m.handOverUpgrade())
	}
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}
