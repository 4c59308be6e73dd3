package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"strconv"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Version is reported by HELLO; cmd/ sets it from the build.
var Version = "dev"

type redisProto struct {
	pool    *pool
	lim     resp.Limits
	backend backendInfo // the servers' INFO, for the proxy's

	// learned is what the first server to answer COMMAND said about its
	// commands; dispatch consults it only for names resp.Lookup does not
	// know. learnState says whether COMMAND was sent (see learnCommands).
	learned    *resp.KeySpecTable
	learnState uint8
}

// learnState values.
const (
	learnNone    uint8 = iota // not asked yet, or the link failed first
	learnPending              // COMMAND is on a link
	learnDone                 // answered (learned holds the table) or refused
)

func newRedisProto(p *pool) *redisProto {
	return &redisProto{pool: p, lim: resp.DefaultLimits()}
}

func (r *redisProto) maxRequest() int { return int(r.lim.MaxBulkLen) + 64<<10 }

func (r *redisProto) tooManyClients(dst []byte) []byte {
	return resp.AppendError(dst, "ERR max number of clients reached")
}

func (r *redisProto) errorReply(dst []byte, err error) []byte {
	return resp.AppendError(dst, "ERR "+errnoText(err))
}

// replyLen frames with the link's own scanner: a reply that arrives in
// many reads (a large array) is scanned once, not again from its start on
// every read, and a small one does not pay for a fresh scanner each time.
func (r *redisProto) replyLen(l *link, m *msg, buf []byte) (n, need int, isErr bool, err error) {
	if l.rscan == nil {
		l.rscan = resp.NewReplyScanner(r.lim)
	}
	n, need, err = l.rscan.Scan(buf)
	// An error is '-' or, in RESP3, '!' (a blob error), perhaps after
	// attributes.
	return n, need, n > 0 && (buf[0] == '-' || buf[0] == '!' || (buf[0] == '|' && resp.IsErrorReply(buf[:n]))), err
}

// handshake authenticates and selects the database on a new server link;
// the replies are checked by pool.finish and never reach a client. The
// credentials are the server block's, else redis_username and
// redis_auth: AUTH [user] pass, or HELLO 3 AUTH on a RESP3 link.
func (r *redisProto) handshake(l *link) {
	cfg := r.pool.cfg
	user, pass := r.credentials(l.sc.srv)
	if l.sc.resp3 {
		// HELLO 3 switches the link to RESP3 and authenticates it at once.
		l.enqueueFunc(l.lp.newMsg(nil), func(dst []byte) []byte {
			args := [][]byte{[]byte("HELLO"), []byte("3")}
			if pass != "" {
				args = append(args, []byte("AUTH"), []byte(cmp.Or(user, "default")), []byte(pass))
			}
			return resp.AppendCommand(dst, args)
		})
	} else if pass != "" {
		l.enqueueFunc(l.lp.newMsg(nil), func(dst []byte) []byte {
			if user != "" {
				return resp.AppendCommand(dst, [][]byte{[]byte("AUTH"), []byte(user), []byte(pass)})
			}
			return resp.AppendCommand(dst, [][]byte{[]byte("AUTH"), []byte(pass)})
		})
	}
	if r.pool.cluster != nil && l.sc.srv.primary != nil {
		// A cluster replica serves reads of its master's slots only after
		// READONLY; it answers MOVED to the rest (and to writes).
		l.enqueueFunc(l.lp.newMsg(nil), func(dst []byte) []byte {
			return resp.AppendCommand(dst, argsReadonly)
		})
	}
	if db := linkDB(cfg, l.sc); db != 0 {
		l.enqueueFunc(l.lp.newMsg(nil), func(dst []byte) []byte {
			return resp.AppendCommand(dst, [][]byte{[]byte("SELECT"), strconv.AppendInt(nil, int64(db), 10)})
		})
	}
	if r.learnState == learnNone {
		r.learnCommands(l)
	}
}

// credentials are what the proxy authenticates with on s.
func (r *redisProto) credentials(s *server) (user, pass string) {
	if s != nil && s.cfg != nil {
		return r.pool.cfg.Credentials(s.cfg)
	}
	return r.pool.cfg.RedisUsername, r.pool.cfg.RedisAuth
}

// learnCommands sends COMMAND once per pool, on the first link that
// connects, after its handshake: an internal msg with one fragment, so
// that merge (opCommandFetch) gets the reply.
func (r *redisProto) learnCommands(l *link) {
	r.learnState = learnPending
	parent := l.lp.newMsg(nil)
	parent.op = opCommandFetch
	parent.pending = 1
	f := l.lp.newMsg(nil)
	f.parent, f.op, f.server, f.uncounted = parent, opCommandFetch, l.sc.srv, true
	parent.frags = append(parent.frags, f)
	if !l.enqueueFunc(f, func(dst []byte) []byte { return resp.AppendCommand(dst, commandFetchArgs) }) {
		r.learnState = learnNone
		parent.frags = parent.frags[:0]
		f.free()
		parent.free()
	}
}

var (
	commandFetchArgs = [][]byte{[]byte("COMMAND")}
	argsReadonly     = [][]byte{[]byte("READONLY")}
)

// commandsLearned reads the reply to learnCommands' COMMAND. A link that
// failed first leaves the next link to ask; an error reply (a server that
// refuses COMMAND) or a reply without key specs leaves the built-in table
// alone, and is not asked again.
func (r *redisProto) commandsLearned(f *msg) {
	log := r.pool.log
	if f.err != nil {
		r.learnState = learnNone
		log.WithError(f.err).Debug("COMMAND not answered; asking on the next server connection")
		return
	}
	r.learnState = learnDone
	if f.isErr {
		log.WithField("reply", string(bytes.TrimSpace(f.reply))).Info("server refused COMMAND; only the built-in command table routes")
		return
	}
	t, err := resp.ParseCommandReply(f.reply)
	if err != nil {
		log.WithError(err).Info("unreadable COMMAND reply; only the built-in command table routes")
		return
	}
	e := log.WithField("commands", t.Len()).WithField("skipped", t.Skipped)
	if f.server != nil {
		e = e.WithField("server", f.server.name)
	}
	if len(t.Errors) > 0 {
		e = e.WithField("first_error", t.Errors[0].Error())
	}
	e.Debug("learned the servers' commands")
	r.learned = t
}

// command looks up the request's command (the built-in table, then what
// the servers taught), records it on c, and answers an unknown command or
// a wrong argument count as redis does; nil then.
func (r *redisProto) command(c *clientConn, args [][]byte) *resp.Command {
	cmd, ok := resp.Lookup(args[0])
	if !ok {
		cmd, ok = r.lookupLearned(args[0])
	}
	if !ok {
		c.cmdName, c.cmdKey = "unknown", nil
		c.localReply(func(dst []byte) []byte { return resp.AppendUnknownCommand(dst, args) })
		return nil
	}
	c.cmdName, c.cmdKey, c.cmdReadOnly = cmd.Name, nil, cmd.ReadOnly
	c.rs.lastCmd = cmd.Name
	if cmd.Kind == resp.KindMultiKey && len(args) > 1 {
		c.cmdKey = args[1]
	}
	if !resp.CheckArity(cmd, len(args)) {
		c.localReply(func(dst []byte) []byte { return resp.AppendWrongArgs(dst, args[0]) })
		return nil
	}
	if r.pool.cfg.Users != nil && !r.permit(c, args) {
		return nil
	}
	return cmd
}

// lookupLearned finds a command the built-in table does not know in what
// the servers said. Before they have said anything, it opens a link so
// that they do.
func (r *redisProto) lookupLearned(name []byte) (*resp.Command, bool) {
	if r.learnState == learnNone {
		if s := r.pool.anyServer(); s != nil {
			s.conn(linkDefault).link()
		}
	}
	return r.learned.Lookup(name)
}

// localReply queues a reply made by the proxy.
func (c *clientConn) localReply(build func(dst []byte) []byte) {
	m := newMsg(c)
	m.reply = build(m.reply[:0])
	c.reply(m)
}

func (c *clientConn) localError(text string) {
	c.localReply(func(dst []byte) []byte { return resp.AppendError(dst, text) })
}

func (r *redisProto) parse(c *clientConn, buf []byte) (int, int, error) {
	if c.rp == nil {
		c.rp = resp.NewRequestParser(r.lim)
	}
	rs := c.session()
	// Before AUTH, redis's small limits (10 arguments, 16 KiB strings).
	c.rp.SetUnauthenticated(!rs.authed && r.pool.authRequired())
	n, args, need, err := c.rp.Parse(buf)
	if err != nil {
		c.cmdName, c.cmdKey = "protocol_error", nil
		var perr *resp.ProtocolError
		text := "ERR Protocol error"
		if errors.As(err, &perr) {
			text = "ERR " + perr.Error()
		}
		m := newMsg(c)
		m.reply = resp.AppendError(m.reply[:0], text)
		m.closeAfter = true
		c.reply(m)
		r.pool.log.WithError(err).Debug("client protocol error")
		return 0, 0, err
	}
	if n == 0 || len(args) == 0 {
		return n, need, nil
	}
	raw := buf[:n]
	if c.rp.Inline() {
		raw = nil
	}
	skip := rs.skipNext
	rs.skipNext, rs.replyOn = false, false
	queued := len(c.queue)
	c.dispatching = true
	r.dispatch(c, args, raw)
	c.dispatching = false
	if c.ownerPark {
		// A stateful request waits for its slot's owner (parkForOwner):
		// not consumed, it runs again from the start when woken.
		for _, m := range c.queue[queued:] {
			m.free()
		}
		clear(c.queue[queued:])
		c.queue = c.queue[:queued]
		rs.skipNext = skip
		return 0, 0, nil
	}
	if (rs.replyOff || (skip && !rs.replyOn)) && len(c.queue) > queued {
		// CLIENT REPLY OFF or SKIP: the request runs, its reply is dropped.
		for _, m := range c.queue[queued:] {
			m.silent = true
		}
	}
	return n, 0, nil
}

// dispatch routes one parsed request. raw is the request as the client
// sent it, or nil when it must be re-encoded (inline commands).
func (r *redisProto) dispatch(c *clientConn, args [][]byte, raw []byte) {
	p := r.pool
	if st := c.rs.st; st != nil && st.intercepts(c) {
		// In MULTI, or subscribed (redis_txn.go, redis_pubsub.go).
		if st.txn.multi {
			r.txnDispatch(c, st, args, raw)
		} else {
			r.subDispatch(c, st, args, raw)
		}
		return
	}
	cmd := r.command(c, args)
	if cmd == nil {
		return
	}
	if p.cfg.Sentinel != nil || p.cluster != nil {
		// Only requests to servers that move are ever replayed.
		c.cmdReplaySafe = replaySafe(cmd, args)
	}
	if !c.rs.authed && p.authRequired() && cmd.Name != "auth" && cmd.Name != "quit" && cmd.Name != "hello" && cmd.Name != "reset" {
		c.localError("NOAUTH Authentication required.")
		return
	}
	switch cmd.Kind {
	case resp.KindLocal:
		r.local(c, cmd, args)
	case resp.KindUnsupported:
		if cmd.Name == "acl" && r.aclCommand(c, args) {
			return
		}
		if r.stateful(c, cmd, args, raw) {
			return
		}
		if p.cluster != nil && slotBound[cmd.Name] {
			r.routeSlotBound(c, cmd, args, raw)
			return
		}
		c.localError("ERR command '" + cmd.Name + "' is not supported by nuthatch: " + cmd.Reason)
	case resp.KindMultiKey:
		r.split(c, cmd, args, raw)
	default: // single key, eval family, cross-key commands
		keys, err := resp.Keys(cmd, args, c.keys[:0])
		c.keys = keys
		if err != nil {
			if errors.Is(err, resp.ErrNoKeys) {
				c.localError("ERR command '" + cmd.Name + "' needs at least one key to be routed by nuthatch")
			} else {
				c.localError("ERR " + err.Error())
			}
			return
		}
		c.cmdKey = args[keys[0]]
		if !cmd.CrossKey && cmd.Kind != resp.KindEval {
			keys = keys[:1]
		}
		r.single(c, args, raw, keys)
	}
}

// slotBound are the commands refused where keys may span servers that a
// cluster pool serves when all their keys share a slot, as Redis Cluster
// does (CROSSSLOT otherwise).
var slotBound = map[string]bool{"rename": true, "renamenx": true, "msetnx": true, "bitop": true}

// routeSlotBound routes one of slotBound's commands by its keys' slot.
func (r *redisProto) routeSlotBound(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) {
	keys, err := resp.Keys(cmd, args, c.keys[:0])
	c.keys = keys
	if err != nil {
		c.localError("ERR " + err.Error())
		return
	}
	if len(keys) > 0 {
		c.cmdKey = args[keys[0]]
	}
	r.singleCluster(c, args, raw, keys)
}

// single forwards a request whose keys must all live on one server; the
// first key picks it. With no keys, any server answers (COMMAND, LOLWUT).
func (r *redisProto) single(c *clientConn, args [][]byte, raw []byte, keys []int) {
	p := r.pool
	if p.cluster != nil {
		r.singleCluster(c, args, raw, keys)
		return
	}
	var s *server
	if len(keys) > 0 {
		s = p.serverFor(args[keys[0]])
	} else {
		s = p.anyServer()
	}
	if s == nil {
		m := newMsg(c)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	}
	for _, k := range keys[min(1, len(keys)):] {
		if p.serverFor(args[k]) != s {
			c.localError("ERR keys of '" + lower(args[0]) + "' map to different servers; use a hash_tag to keep them together")
			return
		}
	}
	m := newMsg(c)
	c.enqueue(m)
	if raw != nil {
		p.forward(m, s, func(dst []byte) []byte { return append(dst, raw...) })
	} else {
		p.forward(m, s, func(dst []byte) []byte { return resp.AppendCommand(dst, args) })
	}
}

func (p *pool) anyServer() *server {
	if p.cluster != nil {
		return p.anyClusterServer()
	}
	r := p.ring.Load()
	if i := r.Pick(0); i >= 0 {
		return p.servers[i]
	}
	return nil
}

// Fragment kinds of multi-key commands.
const (
	opForward uint8 = iota
	opMGet
	opSum
	opMSet
	opInfoFetch    // the proxy's own INFO to every server
	opCommandFetch // the proxy's own COMMAND to one server (learnCommands)
)

// split sends a multi-key command as one sub-command per server and merges
// the replies in key order (MGET, MSET, DEL, UNLINK, TOUCH, EXISTS).
func (r *redisProto) split(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) {
	p := r.pool
	step := max(cmd.Step, 1)
	nserv := p.groupKeys(c, 1, len(args), step, func(i int) []byte { return args[i] })
	switch nserv {
	case 0:
		m := newMsg(c)
		c.enqueue(m)
		p.fail(m, ErrNoServer)
		return
	case 1:
		// Every key on one server: forward the command unchanged.
		c.keys = append(c.keys[:0], 1)
		r.single(c, args, raw, c.keys)
		return
	}
	parent := newMsg(c)
	switch cmd.Name {
	case "mget":
		parent.op = opMGet
	case "mset":
		parent.op = opMSet
	default:
		parent.op = opSum
	}
	parent.keyIdx = append(parent.keyIdx[:0], int32((len(args)-1)/step))
	name := []byte(cmd.Name)
	p.fragment(c, parent, nserv, func(dst []byte, keys []int32) []byte {
		dst = resp.AppendArrayHeader(dst, 1+len(keys)*step)
		dst = resp.AppendBulk(dst, name)
		for _, ki := range keys {
			for j := 0; j < step; j++ {
				dst = resp.AppendBulk(dst, args[int(ki)+j])
			}
		}
		return dst
	})
}

// merge combines fragment replies. A failed fragment fails the whole
// command, as in twemproxy, with that fragment's error.
func (r *redisProto) merge(parent *msg) {
	if parent.op >= opScan {
		r.mergeWhole(parent) // redis_scan.go
		return
	}
	if parent.op == opInfoFetch {
		replies := make([][]byte, 0, len(parent.frags))
		for _, f := range parent.frags {
			if f.err == nil && !f.isErr {
				replies = append(replies, f.reply)
			}
		}
		r.backendInfoRead(replies)
		return
	}
	if parent.op == opCommandFetch {
		r.commandsLearned(parent.frags[0])
		return
	}
	for _, f := range parent.frags {
		if f.err != nil || f.isErr || len(f.reply) == 0 {
			parent.reply = append(parent.reply[:0], f.reply...)
			return
		}
	}
	switch parent.op {
	case opMSet:
		parent.reply = resp.AppendStatus(parent.reply[:0], "OK")
	case opSum:
		var sum int64
		for _, f := range parent.frags {
			v, ok := resp.ParseInt(f.reply)
			if !ok {
				parent.reply = resp.AppendError(parent.reply[:0], "ERR Invalid argument")
				return
			}
			sum += v
		}
		parent.reply = resp.AppendInt(parent.reply[:0], sum)
	case opMGet:
		nkeys := int(parent.keyIdx[0])
		elems := r.pool.mergeScratch(nkeys)
		defer clear(elems)
		for _, f := range parent.frags {
			j := 0
			err := resp.ArrayElems(f.reply, func(e []byte) bool {
				if j < len(f.keyIdx) {
					elems[int(f.keyIdx[j])-1] = e
				}
				j++
				return true
			})
			if err != nil || j != len(f.keyIdx) {
				parent.reply = resp.AppendError(parent.reply[:0], "ERR Invalid argument")
				return
			}
		}
		out := resp.AppendArrayHeader(parent.reply[:0], nkeys)
		for _, e := range elems {
			out = append(out, e...)
		}
		parent.reply = out
	}
}

func lower(b []byte) string { return string(bytes.ToLower(b)) }

// validClientName applies redis's rule for CLIENT SETNAME and HELLO
// SETNAME: printable ASCII without spaces.
func validClientName(name []byte) bool {
	for _, c := range name {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}
