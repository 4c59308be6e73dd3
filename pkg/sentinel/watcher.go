// Package sentinel follows Redis Sentinel for the pools whose servers are
// Sentinel master names: it is the one place that talks to sentinels (the
// master process runs it), and what it learns is data, the current master
// address of each server, that the workers route by.
//
// For each server it asks every configured sentinel SENTINEL MASTER
// <name> every refresh_interval, and at once when a sentinel publishes an
// event about the name or a worker reports trouble (Hint). Of the answers
// it takes the address of the highest config-epoch, so that a sentinel
// restarted with a stale view cannot flip it back, and it checks with
// ROLE that the address is a master before announcing it: after a manual
// failover the old master still says master, but the sentinels' epoch has
// moved on, so the new master is announced as soon as it says so.
package sentinel

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
	"github.com/nuthatch-proxy/nuthatch/pkg/respconn"
)

// Update is a server's master address; Version grows with each one.
// Confirmed updates (after a Hint) may repeat the address.
type Update struct {
	Pool, Server, Addr string
	Version            uint64
	// Paused: a sentinel is failing the master over; writes should wait
	// for the new one (the old master's acknowledgements from here on may
	// be lost). Reads may still go to Addr.
	Paused bool
	// Replicas are the server's replicas fit for reads (sorted), for a
	// pool whose read_from is not "master"; nil otherwise.
	Replicas []string
}

// Timeouts of the conversations with sentinels and data nodes: short, as
// the Sentinel client guidelines ask, so that a dead sentinel costs little.
const (
	askTimeout = 300 * time.Millisecond
	resubEvery = time.Second
	// refusedResubEvery: a sentinel that refused the subscription is
	// asked again this rarely (its ACL may be fixed).
	refusedResubEvery = 30 * time.Second
)

// events are the sentinel channels that say a master may be moving.
var events = []string{"+switch-master", "+try-failover", "+odown", "-odown", "+sdown", "-sdown",
	"+failover-end", "+config-update-from", "-failover-abort-not-elected",
	"-failover-abort-no-good-slave", "-failover-abort-slave-timeout", "+elected-leader"}

// Watcher follows the servers of every sentinel pool it was given.
type Watcher struct {
	log     *logrus.Entry
	updates chan Update

	mu        sync.Mutex
	targets   map[[2]string]*target
	sentinels map[string]*sentinel // by address and credentials
	closed    chan struct{}
}

// target is one server followed: its master name, its sentinels.
type target struct {
	pool, server, master string
	sentinels            []*sentinel
	dataUser, dataPass   string // for ROLE on the data nodes
	refresh              time.Duration
	replicas             bool          // read_from wants the server's replicas
	kick                 chan struct{} // resolve now
	confirm              bool          // a Hint asked: announce even an unchanged address

	// What was last announced; written under Watcher.mu (a reload's
	// Watch carries it over to a replacing target).
	addr     string
	epoch    int64
	version  uint64
	paused   bool
	replList []string

	lastErr   string
	lastStale string
}

// sentinel is one sentinel's connections: one for commands, shared by
// every target that names it, and one subscribed to its events.
type sentinel struct {
	addr, user, pass string
	mu               sync.Mutex
	cmd              *respconn.Conn
	up               bool
	eventsRefused    bool // logged: the sentinel refuses SUBSCRIBE (ACL)
}

// New returns a watcher; Watch gives it pools.
func New(log *logrus.Entry) *Watcher {
	return &Watcher{
		log:       log.WithField("component", "sentinel"),
		updates:   make(chan Update, 256),
		targets:   map[[2]string]*target{},
		sentinels: map[string]*sentinel{},
		closed:    make(chan struct{}),
	}
}

// Updates delivers addresses as they are learned.
func (w *Watcher) Updates() <-chan Update { return w.updates }

// Watch starts following every server of cfg's sentinel pools that is not
// followed yet (a reload keeps what is known of the others).
func (w *Watcher) Watch(cfg *config.Config) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range cfg.Pools {
		sc := p.Sentinel
		if sc == nil {
			continue
		}
		var sents []*sentinel
		for _, a := range sc.Addresses {
			key := a + "\x00" + sc.Username + "\x00" + sc.Password
			s := w.sentinels[key]
			if s == nil {
				s = &sentinel{addr: a, user: sc.Username, pass: sc.Password}
				w.sentinels[key] = s
				go w.subscribe(s)
			}
			sents = append(sents, s)
		}
		for _, s := range p.Servers {
			k := [2]string{p.Name, s.Name}
			t := &target{pool: p.Name, server: s.Name, master: s.Master, sentinels: sents,
				dataUser: p.RedisUsername, dataPass: p.RedisAuth, refresh: sc.RefreshInterval, replicas: sc.ReadFrom != config.ReadFromMaster,
				kick: make(chan struct{}, 1)}
			old, ok := w.targets[k]
			if ok && old.sameSettings(t) {
				continue
			}
			if ok {
				close(old.kick) // its goroutine ends
				if old.master == t.master {
					// The same group: what is known of it stands, and
					// versions go on from the last one announced (the
					// master and the workers drop lower ones).
					t.addr, t.epoch, t.paused, t.replList = old.addr, old.epoch, old.paused, old.replList
				}
				t.version = old.version
				t.confirm = true
			}
			w.targets[k] = t
			go w.follow(t)
		}
	}
}

// sameSettings: a reload that changes none of these keeps the target.
func (t *target) sameSettings(n *target) bool {
	return t.master == n.master && sameSentinels(t.sentinels, n.sentinels) && t.dataPass == n.dataPass && t.dataUser == n.dataUser &&
		t.refresh == n.refresh && t.replicas == n.replicas
}

func sameSentinels(a, b []*sentinel) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Reachable reports, per pool, how many sentinels it names and how many
// answered their last question.
func (w *Watcher) Reachable() map[string][2]int {
	w.mu.Lock()
	byPool := map[string][]*sentinel{}
	for k, t := range w.targets {
		if _, ok := byPool[k[0]]; !ok {
			byPool[k[0]] = t.sentinels
		}
	}
	w.mu.Unlock()
	out := make(map[string][2]int, len(byPool))
	for pool, sents := range byPool {
		up := 0
		for _, s := range sents {
			s.mu.Lock()
			if s.up {
				up++
			}
			s.mu.Unlock()
		}
		out[pool] = [2]int{len(sents), up}
	}
	return out
}

// Hint asks for a server to be resolved again now, and announced even if
// unchanged: a worker saw it fail.
func (w *Watcher) Hint(pool, server string) {
	w.mu.Lock()
	t := w.targets[[2]string{pool, server}]
	if t != nil {
		t.confirm = true
	}
	w.mu.Unlock()
	if t != nil {
		w.kickTarget(t)
	}
}

func (w *Watcher) kickTarget(t *target) {
	defer func() { recover() }() // a replaced target's closed channel
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Close stops every goroutine of the watcher.
func (w *Watcher) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.closed:
		return
	default:
	}
	close(w.closed)
	for _, t := range w.targets {
		close(t.kick)
	}
	for _, s := range w.sentinels {
		s.mu.Lock()
		if s.cmd != nil {
			s.cmd.Close()
		}
		s.mu.Unlock()
	}
}

// follow resolves t every refresh interval and whenever kicked.
func (w *Watcher) follow(t *target) {
	tick := time.NewTicker(t.refresh)
	defer tick.Stop()
	for {
		w.resolve(t)
		select {
		case <-w.closed:
			return
		case _, ok := <-t.kick:
			if !ok {
				return
			}
		case <-tick.C:
		}
	}
}

// answer is one sentinel's view of a master.
type answer struct {
	addr     string
	epoch    int64
	failover bool // flags has failover_in_progress
}

// resolve asks every sentinel of t and announces the master it agrees on.
func (w *Watcher) resolve(t *target) {
	w.mu.Lock()
	confirm := t.confirm
	t.confirm = false
	w.mu.Unlock()

	var wg sync.WaitGroup
	answers := make([]*answer, len(t.sentinels))
	errs := make([]error, len(t.sentinels))
	for i, s := range t.sentinels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = s.master(t.master)
		}()
	}
	wg.Wait()
	var best *answer
	bestAt := -1
	unknown, reached := 0, 0
	refused := ""
	for i, a := range answers {
		if errs[i] != nil {
			if re, ok := errs[i].(respconn.ReplyError); ok {
				reached++
				if isAuthError(string(re)) {
					refused = string(re)
				} else {
					unknown++
				}
			} else if strings.Contains(errs[i].Error(), "AUTH") {
				reached++
				refused = errs[i].Error()
			}
			continue
		}
		reached++
		if best == nil || a.epoch > best.epoch {
			best, bestAt = a, i
		}
	}
	log := w.log.WithFields(logrus.Fields{"pool": t.pool, "server": t.server, "master_name": t.master})
	switch {
	case reached == 0:
		w.noteErr(t, log, "no sentinel reachable")
		return
	case best == nil && refused != "":
		w.noteErr(t, log, "the sentinels refuse the proxy: "+refused+" (set username/password in the sentinel block)")
		return
	case best == nil && unknown > 0:
		w.noteErr(t, log, "the sentinels do not know this master name")
		return
	case best == nil:
		return
	}
	failover := false
	for i, a := range answers {
		if errs[i] == nil && a.failover {
			failover = true
		}
	}
	w.noteStale(t, log, answers, errs, best)
	if failover {
		// Writes wait from here: once the replica is promoted, what the
		// old master acknowledges is lost. The answer after the failover
		// lifts the pause.
		if !t.paused && t.addr != "" {
			log.WithField("address", t.addr).Info("failover in progress, writes wait for the new master")
			w.announce(t, func() { t.paused = true })
		}
		return
	}
	if best.epoch < t.epoch && best.addr != t.addr {
		// Every sentinel that answered has an older view than the one
		// followed (noteStale said so): it stands.
		return
	}
	var repl []string
	replChanged := false
	if t.replicas {
		var err error
		repl, err = t.sentinels[bestAt].replicas(t.master, best.addr)
		if err != nil {
			repl = t.replList // keep what is known
		}
		replChanged = !slices.Equal(repl, t.replList)
		if replChanged {
			log.WithField("replicas", repl).Info("server replicas for reads")
		}
	}
	if best.addr == t.addr && best.epoch >= t.epoch && !confirm && !t.paused && !replChanged {
		t.lastErr = ""
		if best.epoch > t.epoch {
			w.mu.Lock()
			t.epoch = best.epoch
			w.mu.Unlock()
		}
		return
	}
	role, err := roleOf(best.addr, t.dataUser, t.dataPass)
	if err != nil || role != "master" {
		if err == nil {
			err = fmt.Errorf("it reports role %q", role)
		}
		w.noteErr(t, log.WithField("address", best.addr), "the sentinels' master is not one yet: "+err.Error())
		return
	}
	if best.addr != t.addr {
		log.WithFields(logrus.Fields{"from": t.addr, "to": best.addr, "config_epoch": best.epoch}).Info("server master resolved")
	}
	t.lastErr = ""
	w.announce(t, func() {
		t.addr, t.epoch, t.paused = best.addr, best.epoch, false
		if t.replicas {
			t.replList = repl
		}
	})
}

// announce applies change to t and sends its new state, unless a reload
// replaced t meanwhile.
func (w *Watcher) announce(t *target, change func()) {
	w.mu.Lock()
	if w.targets[[2]string{t.pool, t.server}] != t {
		w.mu.Unlock()
		return
	}
	change()
	t.version++
	u := Update{Pool: t.pool, Server: t.server, Addr: t.addr, Version: t.version, Paused: t.paused, Replicas: t.replList}
	w.mu.Unlock()
	w.send(u)
}

func (w *Watcher) send(u Update) {
	select {
	case w.updates <- u:
	case <-w.closed:
	}
}

// noteStale logs, once per view, a sentinel whose answer names another
// master with an older config-epoch than the one followed or the best
// answer: a sentinel restarted from an old config file, or cut off from
// the others. It is outvoted.
func (w *Watcher) noteStale(t *target, log *logrus.Entry, answers []*answer, errs []error, best *answer) {
	ref := best
	if t.addr != "" && t.epoch > best.epoch {
		ref = &answer{addr: t.addr, epoch: t.epoch}
	}
	for i, a := range answers {
		if errs[i] != nil || a.epoch >= ref.epoch || a.addr == ref.addr {
			continue
		}
		key := t.sentinels[i].addr + " " + a.addr + " " + strconv.FormatInt(a.epoch, 10)
		if key == t.lastStale {
			return
		}
		t.lastStale = key
		log.WithFields(logrus.Fields{"sentinel": t.sentinels[i].addr, "its_master": a.addr, "its_config_epoch": a.epoch,
			"master": ref.addr, "config_epoch": ref.epoch}).Warn("a sentinel has an older view of the master, ignored")
		return
	}
}

// isAuthError tells a refusal of credentials from other error replies.
func isAuthError(text string) bool {
	for _, p := range []string{"NOAUTH", "WRONGPASS", "NOPERM", "ERR AUTH"} {
		if strings.HasPrefix(text, p) {
			return true
		}
	}
	return false
}

// noteErr logs a resolution failure once per distinct text.
func (w *Watcher) noteErr(t *target, log *logrus.Entry, text string) {
	if t.lastErr != text {
		t.lastErr = text
		log.Warn("sentinel: " + text)
	}
}

// master asks the sentinel for its view of a master name.
func (s *sentinel) master(name string) (*answer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		c, err := respconn.Dial(s.addr, askTimeout, s.user, s.pass)
		if err != nil {
			s.up = false
			return nil, err
		}
		s.cmd = c
	}
	v, err := s.cmd.Do(askTimeout, "SENTINEL", "MASTER", name)
	if err != nil {
		if _, isReply := err.(respconn.ReplyError); !isReply {
			s.cmd.Close()
			s.cmd, s.up = nil, false
		}
		return nil, err
	}
	s.up = true
	f := respconn.Fields(v)
	if f["ip"] == "" || f["port"] == "" {
		return nil, respconn.ReplyError("ERR no address for " + name)
	}
	epoch, _ := strconv.ParseInt(f["config-epoch"], 10, 64)
	return &answer{addr: joinHostPort(f["ip"], f["port"]), epoch: epoch,
		failover: strings.Contains(f["flags"], "failover_in_progress")}, nil
}

// replicas asks the sentinel for the replicas of a master name, and keeps
// those fit for reads: not subjectively or objectively down, not
// disconnected, with their link to master (and that master) up. master
// itself is left out (a promoted replica is listed until the sentinel's
// next INFO round).
func (s *sentinel) replicas(name, master string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil, errors.New("sentinel: not connected")
	}
	v, err := s.cmd.Do(askTimeout, "SENTINEL", "REPLICAS", name)
	if err != nil {
		if _, isReply := err.(respconn.ReplyError); !isReply {
			s.cmd.Close()
			s.cmd, s.up = nil, false
		}
		return nil, err
	}
	return fitReplicas(v, master), nil
}

// fitReplicas filters a SENTINEL REPLICAS reply (see replicas).
func fitReplicas(v any, master string) []string {
	arr, _ := v.([]any)
	out := []string{}
	for _, r := range arr {
		f := respconn.Fields(r)
		if f["ip"] == "" || f["port"] == "" {
			continue
		}
		addr := joinHostPort(f["ip"], f["port"])
		bad := addr == master || f["master-link-status"] != "ok"
		for _, flag := range strings.Split(f["flags"], ",") {
			if flag == "s_down" || flag == "o_down" || flag == "disconnected" {
				bad = true
			}
		}
		if mh, mp := f["master-host"], f["master-port"]; mh != "" && joinHostPort(mh, mp) != master {
			bad = true // it replicates from elsewhere (an old master)
		}
		if !bad && !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}

func joinHostPort(ip, port string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + port
	}
	return ip + ":" + port
}

// roleOf asks a data node for its role (ROLE's first element).
func roleOf(addr, user, pass string) (string, error) {
	c, err := respconn.Dial(addr, askTimeout, user, pass)
	if err != nil {
		return "", err
	}
	defer c.Close()
	v, err := c.Do(askTimeout, "ROLE")
	if err != nil {
		return "", err
	}
	arr, _ := v.([]any)
	if len(arr) == 0 {
		return "", fmt.Errorf("unreadable ROLE reply")
	}
	role, _ := arr[0].(string)
	return role, nil
}

// subscribe listens to one sentinel's events for as long as the watcher
// runs, reconnecting after failures; any event naming a followed master
// resolves it at once. A (re)subscription resolves everything, since
// events may have been missed meanwhile.
func (w *Watcher) subscribe(s *sentinel) {
	for {
		select {
		case <-w.closed:
			return
		default:
		}
		err := w.listen(s)
		wait := resubEvery
		if re, ok := err.(respconn.ReplyError); ok && isAuthError(string(re)) {
			// An ACL user without channel rights (&*): events are lost,
			// the refresh alone follows the masters. Said once.
			if !s.eventsRefused {
				s.eventsRefused = true
				w.log.WithField("sentinel", s.addr).WithField("reply", string(re)).
					Warn("sentinel refuses the event subscription; following its masters by polling every refresh_interval only")
			}
			wait = refusedResubEvery
		} else if err != nil {
			w.log.WithField("sentinel", s.addr).WithError(err).Debug("sentinel subscription lost")
		}
		select {
		case <-w.closed:
			return
		case <-time.After(wait):
		}
	}
}

func (w *Watcher) listen(s *sentinel) error {
	c, err := respconn.Dial(s.addr, askTimeout, s.user, s.pass)
	if err != nil {
		return err
	}
	defer c.Close()
	go func() {
		<-w.closed
		c.Close()
	}()
	args := [][]byte{[]byte("SUBSCRIBE")}
	for _, e := range events {
		args = append(args, []byte(e))
	}
	c.C.SetDeadline(time.Now().Add(askTimeout))
	if _, err := c.C.Write(resp.AppendCommand(nil, args)); err != nil {
		return err
	}
	w.kickAll(s)
	for {
		c.C.SetDeadline(time.Time{})
		v, err := c.Read()
		if err != nil {
			return err
		}
		if re, ok := v.(respconn.ReplyError); ok {
			return re
		}
		msg, _ := v.([]any)
		if len(msg) == 3 && msg[0] == "message" {
			payload, _ := msg[2].(string)
			w.onEvent(s, payload)
		}
	}
}

// onEvent resolves the masters an event names.
func (w *Watcher) onEvent(s *sentinel, payload string) {
	words := strings.Fields(payload)
	w.mu.Lock()
	var hit []*target
	for _, t := range w.targets {
		for _, word := range words {
			if word == t.master && containsSentinel(t.sentinels, s) {
				hit = append(hit, t)
				break
			}
		}
	}
	w.mu.Unlock()
	for _, t := range hit {
		w.kickTarget(t)
	}
}

func (w *Watcher) kickAll(s *sentinel) {
	w.mu.Lock()
	var hit []*target
	for _, t := range w.targets {
		if containsSentinel(t.sentinels, s) {
			hit = append(hit, t)
		}
	}
	w.mu.Unlock()
	for _, t := range hit {
		w.kickTarget(t)
	}
}

func containsSentinel(list []*sentinel, s *sentinel) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
