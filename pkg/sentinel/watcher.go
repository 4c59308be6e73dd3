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
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
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
}

// Timeouts of the conversations with sentinels and data nodes: short, as
// the Sentinel client guidelines ask, so that a dead sentinel costs little.
const (
	askTimeout = 300 * time.Millisecond
	resubEvery = time.Second
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
	kick                 chan struct{} // resolve now
	confirm              bool          // a Hint asked: announce even an unchanged address

	addr    string
	epoch   int64
	version uint64
	paused  bool
	lastErr string
}

// sentinel is one sentinel's connections: one for commands, shared by
// every target that names it, and one subscribed to its events.
type sentinel struct {
	addr, user, pass string
	mu               sync.Mutex
	cmd              *conn
	up               bool
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
			if t, ok := w.targets[k]; ok && t.master == s.Master && sameSentinels(t.sentinels, sents) {
				continue
			}
			t := &target{pool: p.Name, server: s.Name, master: s.Master, sentinels: sents,
				dataPass: p.RedisAuth, refresh: sc.RefreshInterval, kick: make(chan struct{}, 1)}
			if old, ok := w.targets[k]; ok {
				close(old.kick) // its goroutine ends
			}
			w.targets[k] = t
			go w.follow(t)
		}
	}
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
			s.cmd.close()
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
	unknown, reached := 0, 0
	refused := ""
	for i, a := range answers {
		if errs[i] != nil {
			if re, ok := errs[i].(replyError); ok {
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
			best = a
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
	if failover {
		// Writes wait from here: once the replica is promoted, what the
		// old master acknowledges is lost. The answer after the failover
		// lifts the pause.
		if !t.paused && t.addr != "" {
			t.paused = true
			t.version++
			log.WithField("address", t.addr).Info("failover in progress, writes wait for the new master")
			w.send(Update{Pool: t.pool, Server: t.server, Addr: t.addr, Version: t.version, Paused: true})
		}
		return
	}
	if best.addr == t.addr && best.epoch >= t.epoch && !confirm && !t.paused {
		t.lastErr = ""
		return
	}
	if best.epoch < t.epoch && best.addr != t.addr {
		// A sentinel with an older view; the newer one stands.
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
	changed := best.addr != t.addr
	old := t.addr
	t.addr, t.epoch, t.lastErr, t.paused = best.addr, best.epoch, "", false
	t.version++
	if changed {
		log.WithFields(logrus.Fields{"from": old, "to": best.addr, "config_epoch": best.epoch}).Info("server master resolved")
	}
	w.send(Update{Pool: t.pool, Server: t.server, Addr: t.addr, Version: t.version})
}

func (w *Watcher) send(u Update) {
	select {
	case w.updates <- u:
	case <-w.closed:
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
		c, err := dial(s.addr, askTimeout, s.user, s.pass)
		if err != nil {
			s.up = false
			return nil, err
		}
		s.cmd = c
	}
	v, err := s.cmd.do(askTimeout, "SENTINEL", "MASTER", name)
	if err != nil {
		if _, isReply := err.(replyError); !isReply {
			s.cmd.close()
			s.cmd, s.up = nil, false
		}
		return nil, err
	}
	s.up = true
	f := fields(v)
	if f["ip"] == "" || f["port"] == "" {
		return nil, replyError("ERR no address for " + name)
	}
	epoch, _ := strconv.ParseInt(f["config-epoch"], 10, 64)
	return &answer{addr: joinHostPort(f["ip"], f["port"]), epoch: epoch,
		failover: strings.Contains(f["flags"], "failover_in_progress")}, nil
}

func joinHostPort(ip, port string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + port
	}
	return ip + ":" + port
}

// roleOf asks a data node for its role (ROLE's first element).
func roleOf(addr, user, pass string) (string, error) {
	c, err := dial(addr, askTimeout, user, pass)
	if err != nil {
		return "", err
	}
	defer c.close()
	v, err := c.do(askTimeout, "ROLE")
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
		if err != nil {
			w.log.WithField("sentinel", s.addr).WithError(err).Debug("sentinel subscription lost")
		}
		select {
		case <-w.closed:
			return
		case <-time.After(resubEvery):
		}
	}
}

func (w *Watcher) listen(s *sentinel) error {
	c, err := dial(s.addr, askTimeout, s.user, s.pass)
	if err != nil {
		return err
	}
	defer c.close()
	go func() {
		<-w.closed
		c.close()
	}()
	args := [][]byte{[]byte("SUBSCRIBE")}
	for _, e := range events {
		args = append(args, []byte(e))
	}
	c.c.SetDeadline(time.Now().Add(askTimeout))
	if _, err := c.c.Write(resp.AppendCommand(nil, args)); err != nil {
		return err
	}
	w.kickAll(s)
	for {
		c.c.SetDeadline(time.Time{})
		v, err := c.read()
		if err != nil {
			return err
		}
		if re, ok := v.(replyError); ok {
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
