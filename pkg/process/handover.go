package process

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// Hand-over of idle client connections on reload and upgrade (issue #24).
//
// When a new generation serves, the master sends the old workers
// MsgDrain with HandOver set. Each old worker drains as before, except
// that every client that waits for nothing is taken out of its loop and
// sent, descriptor (SCM_RIGHTS) and session, in MsgClients to the master.
// The master reads no client byte: it relays the descriptors to the new
// generation's workers, the least loaded first (or, during a binary
// upgrade, to the new master, which relays them to its workers). A new
// worker adopts each into its pool if the pool is still there at the
// same listen address and under client_connections, else closes it, and
// answers MsgAdopted with the counts, which the master logs per reload.

// Batches of handed-over clients: at most this many descriptors, or this
// many bytes of state, per MsgClients (the kernel takes 253 descriptors
// per message, maxMessage bounds the datagram).
const (
	handoverBatch      = 64
	handoverBatchBytes = 256 << 10
)

// outbox queues the clients the loop hands over for the goroutine that
// sends them: the loop never blocks on the channel.
type outbox struct {
	mu     sync.Mutex
	queue  []proxy.Handoff
	closed bool
	wake   chan struct{}
}

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

// put is the engine's give: on the loop, never blocking.
func (o *outbox) put(h proxy.Handoff) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		unix.Close(h.FD)
		return
	}
	o.queue = append(o.queue, h)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take returns the next batch, waiting for one; nil once closed and empty.
func (o *outbox) take() []proxy.Handoff {
	for {
		o.mu.Lock()
		if len(o.queue) > 0 {
			n, size := 0, 0
			for n < len(o.queue) && n < handoverBatch && size < handoverBatchBytes {
				size += len(o.queue[n].State) + 64
				n++
			}
			b := append([]proxy.Handoff(nil), o.queue[:n]...)
			o.queue = o.queue[n:]
			o.mu.Unlock()
			return b
		}
		closed := o.closed
		o.mu.Unlock()
		if closed {
			return nil
		}
		<-o.wake
	}
}

func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// handOver drains the worker, passing its idle clients to the master.
func (w *worker) handOver(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	o := newOutbox()
	sent := make(chan int)
	go func() {
		failed := 0
		for b := o.take(); b != nil; b = o.take() {
			fds := make([]int, len(b))
			for i := range b {
				fds[i] = b[i].FD
			}
			if err := w.ch.SendFDs(&Message{Type: MsgClients, Clients: b}, fds); err != nil {
				failed += len(b)
				w.entry.WithError(err).WithField("clients", len(b)).Warn("cannot hand clients over, closing them")
				proxy.EndClients(fds)
				continue
			}
			closeFDs(fds) // in flight now: the master has them
		}
		sent <- failed
	}()
	rep, err := w.px.HandOver(ctx, o.put)
	o.close()
	failed := <-sent
	fields := logrus.Fields{"handed_over": rep.HandedOver - failed}
	for why, k := range rep.Closed {
		fields["closed_"+why] = k
	}
	if failed > 0 {
		fields["closed_send_failed"] = failed
	}
	log := w.entry.WithFields(fields)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("worker_shutdown_timeout reached, clients handed over and the busy ones closed")
		return
	}
	log.Info("clients handed over to the new workers")
}

// adopt takes the clients of a MsgClients into the engine and tells the
// master what became of them.
func (w *worker) adopt(m *Message) {
	hs := m.Clients
	for i := range hs {
		hs[i].FD = m.FDs[i]
	}
	errs := w.px.Adopt(hs)
	reply := &Message{Type: MsgAdopted, Seq: m.Seq}
	for i, err := range errs {
		if err == nil {
			reply.Adopted++
			continue
		}
		if reply.Refused == nil {
			reply.Refused = map[string]int{}
		}
		reply.Refused[proxy.AdoptRefusal(err)]++
		w.entry.WithError(err).WithField("pool", hs[i].Pool).Debug("handed-over client refused, closed")
	}
	w.ch.Send(reply)
}

// handoverTally is what became of the clients one source handed over:
// an old generation's workers, or (new master side) the old master.
type handoverTally struct {
	id      uint64
	label   string
	gen     *generation // the source generation; nil: the old master
	relayed int         // received from the source
	adopted int
	refused map[string]int
	lost    int // closed by the master: no new worker, or a send failed
	toNew   int // forwarded to the new master of an upgrade
	done    time.Time
}

func (t *handoverTally) settled() bool {
	n := t.adopted + t.lost + t.toNew
	for _, k := range t.refused {
		n += k
	}
	return n >= t.relayed
}

func (m *Master) tallyFor(g *generation) *handoverTally {
	for _, t := range m.tallies {
		if t.gen == g && t.done.IsZero() {
			return t
		}
	}
	m.tallySeq++
	t := &handoverTally{id: m.tallySeq, gen: g, label: "old master"}
	if g != nil {
		t.label = "generation " + itoa(g.id)
	}
	m.tallies = append(m.tallies, t)
	return t
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// sourceGone: g's workers (nil: the old master) send no more clients once
// they have all exited.
func (m *Master) sourceGone(g *generation) {
	if g != nil {
		for _, w := range g.slots {
			if w != nil && !w.exited {
				return
			}
		}
	}
	for _, t := range m.tallies {
		if t.gen == g && t.done.IsZero() {
			t.done = time.Now()
		}
	}
}

// handOverUpgrade: a stop that is an upgrade's hand-over passes the idle
// clients to the new master.
func (m *Master) handOverUpgrade() bool {
	u := m.upgrade
	return u != nil && u.ready && u.adopts
}

// relayClients passes the clients of a MsgClients, never reading from
// them, to the serving generation's workers (least loaded first), or to
// the new master during an upgrade. The master's copies of the
// descriptors are closed once sent; a client nobody can take is closed.
func (m *Master) relayClients(from *workerState, msg *Message) {
	fds := msg.FDs
	// The master's copies, once sent; entries set to -1 are closed already
	// (EndClients), so that no number is closed twice: the master's
	// readers receive descriptors concurrently, which reuse numbers.
	defer func() { closeFDs(fds) }()
	var src *generation
	if from != nil {
		src = from.gen
	}
	t := m.tallyFor(src)
	t.relayed += len(fds)
	if len(fds) != len(msg.Clients) {
		t.lost += len(fds)
		proxy.EndClients(fds)
		fds = nil
		return
	}
	if u := m.upgrade; u != nil && u.ready {
		if !u.adopts || u.ch.SendFDs(&Message{Type: MsgClients, Clients: msg.Clients}, fds) != nil {
			t.lost += len(fds)
			proxy.EndClients(fds)
			fds = nil
			return
		}
		t.toNew += len(fds)
		return
	}
	var targets []*workerState
	if g := m.cur; g != nil && g != src {
		for _, w := range g.slots {
			if w != nil && w.ready && w.adopts && !w.draining && !w.exited {
				targets = append(targets, w)
			}
		}
	}
	if len(targets) == 0 {
		t.lost += len(fds)
		proxy.EndClients(fds)
		fds = nil
		return
	}
	per := make(map[*workerState][]int, len(targets))
	for i := range msg.Clients {
		best := targets[0]
		for _, w := range targets[1:] {
			if w.clients+int64(w.relayed) < best.clients+int64(best.relayed) {
				best = w
			}
		}
		best.relayed++
		per[best] = append(per[best], i)
	}
	for _, w := range targets {
		idx := per[w]
		if len(idx) == 0 {
			continue
		}
		out := &Message{Type: MsgClients, Seq: t.id, Clients: make([]proxy.Handoff, len(idx))}
		wfds := make([]int, len(idx))
		for j, i := range idx {
			out.Clients[j], wfds[j] = msg.Clients[i], fds[i]
		}
		if err := w.proc.Channel().SendFDs(out, wfds); err != nil {
			m.entry.WithError(err).WithField("slot", w.slot).Warn("cannot relay handed-over clients, closing them")
			t.lost += len(idx)
			proxy.EndClients(wfds)
			for _, i := range idx {
				fds[i] = -1
			}
		}
	}
}

// adopted records a new worker's MsgAdopted.
func (m *Master) adopted(msg *Message) {
	for _, t := range m.tallies {
		if t.id == msg.Seq {
			t.adopted += msg.Adopted
			for why, k := range msg.Refused {
				if t.refused == nil {
					t.refused = map[string]int{}
				}
				t.refused[why] += k
			}
			return
		}
	}
}

// logTallies logs each hand-over once its source is gone and every
// client is accounted for (or, at the latest, 5 s after; or now, when
// the master stops).
func (m *Master) logTallies(now time.Time, force bool) {
	keep := m.tallies[:0]
	for _, t := range m.tallies {
		if !force && (t.done.IsZero() || (!t.settled() && now.Sub(t.done) < 5*time.Second)) {
			keep = append(keep, t)
			continue
		}
		f := logrus.Fields{"from": t.label, "handed_over": t.relayed, "adopted": t.adopted}
		refused := 0
		for why, k := range t.refused {
			f["refused_"+why] = k
			refused += k
		}
		if t.lost > 0 {
			f["closed_no_worker"] = t.lost
		}
		if t.toNew > 0 {
			f["to_new_master"] = t.toNew
		}
		log := m.entry.WithFields(f)
		switch {
		case t.toNew > 0 && t.lost == 0:
			log.Info("idle clients handed over to the new master")
		case refused > 0 || t.lost > 0:
			log.Warn("idle clients handed over; some were closed")
		default:
			log.Info("idle clients handed over to the new workers")
		}
	}
	clear(m.tallies[len(keep):])
	m.tallies = keep
}
