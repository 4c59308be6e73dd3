package proxy

import (
	"bytes"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// INFO is answered by the proxy in redis's field syntax. What only the
// servers know (their version, their keys) comes from their own INFO, read
// at most once per backendInfoTTL for the whole pool and never per client:
// clients that ask while a read is under way wait for it.

// backendInfoTTL is how long the servers' INFO is reused.
const backendInfoTTL = time.Second

// INFO sections, as bits of the msg's op while a client waits.
const (
	infoServer = 1 << iota
	infoClients
	infoPersistence
	infoStats
	infoReplication
	infoCPU
	infoKeyspace

	infoAll       = infoServer | infoClients | infoPersistence | infoStats | infoReplication | infoCPU | infoKeyspace
	infoFromPeers = infoServer | infoKeyspace // sections that need the servers' INFO
)

var infoSections = map[string]uint8{
	"server": infoServer, "clients": infoClients, "persistence": infoPersistence,
	"stats": infoStats, "replication": infoReplication, "cpu": infoCPU, "keyspace": infoKeyspace,
	"default": infoAll, "all": infoAll, "everything": infoAll,
}

// backendInfo is what the pool last read from its servers' INFO.
type backendInfo struct {
	at       int64 // unix nanos of the read, 0 before the first
	fetching bool
	waiters  []*msg
	version  string              // the lowest redis_version of the servers that answered
	keyspace map[string]*dbStats // db0 -> summed counts
}

type dbStats struct {
	keys, expires int64
	ttlWeighted   float64 // avg_ttl × expires, summed, for a weighted mean
}

// processStart is what uptime_in_seconds counts from.
var processStart = time.Now()

// runID identifies this process in INFO, as redis's run_id does.
var runID = func() string {
	b := make([]byte, 20)
	f, err := os.Open("/dev/urandom")
	if err == nil {
		f.Read(b)
		f.Close()
	}
	const hex = "0123456789abcdef"
	out := make([]byte, 40)
	for i, c := range b {
		out[2*i], out[2*i+1] = hex[c>>4], hex[c&15]
	}
	return string(out)
}()

// info answers INFO [section ...].
func (r *redisProto) info(c *clientConn, sections [][]byte) {
	var mask uint8
	if len(sections) == 0 {
		mask = infoAll
	}
	for _, s := range sections {
		mask |= infoSections[lower(s)]
	}
	m := newMsg(c)
	m.op = mask
	c.enqueue(m)
	bi := &r.backend
	if mask&infoFromPeers == 0 || (bi.at != 0 && r.pool.lp.now-bi.at < int64(backendInfoTTL)) {
		r.answerInfo(m)
		return
	}
	bi.waiters = append(bi.waiters, m)
	if !bi.fetching {
		r.fetchBackendInfo()
	}
}

// fetchBackendInfo sends INFO server keyspace to every server on the ring,
// as the fragments of an internal msg; merge (opInfoFetch) reads them.
func (r *redisProto) fetchBackendInfo() {
	p := r.pool
	parent := p.lp.newMsg(nil)
	parent.op = opInfoFetch
	var live []*server
	for _, s := range p.servers {
		if s.ejectedUntil.Load() == 0 {
			live = append(live, s)
		}
	}
	if len(live) == 0 {
		parent.free()
		r.backendInfoRead(nil)
		return
	}
	r.backend.fetching = true
	parent.pending = int32(len(live))
	for range live {
		f := p.lp.newMsg(nil)
		f.parent = parent
		f.op = opInfoFetch
		parent.frags = append(parent.frags, f)
	}
	for i, s := range live {
		p.forward(parent.frags[i], s, func(dst []byte) []byte {
			return resp.AppendCommand(dst, infoFetchArgs)
		})
	}
}

var infoFetchArgs = [][]byte{[]byte("INFO"), []byte("server"), []byte("keyspace")}

// backendInfoRead takes the servers' INFO replies (bulk strings; errors
// and failed servers are skipped) and answers the clients waiting.
func (r *redisProto) backendInfoRead(replies [][]byte) {
	bi := &r.backend
	bi.fetching = false
	bi.at = r.pool.lp.now
	bi.version = ""
	bi.keyspace = map[string]*dbStats{}
	for _, rep := range replies {
		text := bulkText(rep)
		if text == nil {
			continue
		}
		for _, line := range bytes.Split(text, []byte("\r\n")) {
			k, v, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				continue
			}
			switch {
			case string(k) == "redis_version":
				if bi.version == "" || versionLess(string(v), bi.version) {
					bi.version = string(v)
				}
			case bytes.HasPrefix(k, []byte("db")):
				ds := bi.keyspace[string(k)]
				if ds == nil {
					ds = &dbStats{}
					bi.keyspace[string(k)] = ds
				}
				var keys, expires, ttl int64
				for _, kv := range bytes.Split(v, []byte(",")) {
					name, num, _ := bytes.Cut(kv, []byte("="))
					n, _ := strconv.ParseInt(string(num), 10, 64)
					switch string(name) {
					case "keys":
						keys = n
					case "expires":
						expires = n
					case "avg_ttl":
						ttl = n
					}
				}
				ds.keys += keys
				ds.expires += expires
				ds.ttlWeighted += float64(ttl) * float64(expires)
			}
		}
	}
	waiters := bi.waiters
	bi.waiters = nil
	for _, m := range waiters {
		r.answerInfo(m)
	}
}

// bulkText is the data of a bulk string or verbatim reply, nil otherwise.
func bulkText(rep []byte) []byte {
	if len(rep) < 4 || (rep[0] != '$' && rep[0] != '=') {
		return nil
	}
	i := bytes.IndexByte(rep, '\n')
	if i < 0 || len(rep) < i+3 {
		return nil
	}
	data := rep[i+1 : len(rep)-2]
	if rep[0] == '=' && len(data) >= 4 {
		data = data[4:]
	}
	return data
}

// versionLess compares dotted versions numerically ("6.2.14" < "7.0.5").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// answerInfo builds the INFO text for the sections in m.op.
func (r *redisProto) answerInfo(m *msg) {
	c := m.client
	if c == nil {
		m.free()
		return
	}
	text := r.appendInfo(nil, m.op)
	m.reply = c.appendText(m.reply[:0], text)
	c.done(m)
}

// appendInfo appends the INFO text of the sections in mask, in redis's
// order and syntax: "# Section" headers, "field:value" lines, CRLF, and a
// blank line between sections.
func (r *redisProto) appendInfo(dst []byte, mask uint8) []byte {
	p := r.pool
	bi := &r.backend
	n := 0
	section := func(name string) {
		if n > 0 {
			dst = append(dst, "\r\n"...)
		}
		n++
		dst = append(dst, "# "...)
		dst = append(dst, name...)
		dst = append(dst, "\r\n"...)
	}
	field := func(k, v string) {
		dst = append(dst, k...)
		dst = append(dst, ':')
		dst = append(dst, v...)
		dst = append(dst, "\r\n"...)
	}
	num := func(k string, v int64) { field(k, strconv.FormatInt(v, 10)) }
	now := time.Now()
	if mask&infoServer != 0 {
		section("Server")
		v := bi.version
		if v == "" {
			v = unknownRedisVersion
		}
		field("redis_version", v)
		field("nuthatch_version", Version)
		field("redis_mode", "standalone")
		field("os", runtime.GOOS+" "+runtime.GOARCH)
		field("arch_bits", strconv.Itoa(strconv.IntSize))
		field("multiplexing_api", "epoll")
		num("process_id", int64(os.Getpid()))
		field("run_id", runID)
		field("tcp_port", listenPort(p.cfg.Listen.Addr, p.cfg.Listen.Network))
		num("server_time_usec", now.UnixMicro())
		up := int64(now.Sub(processStart) / time.Second)
		num("uptime_in_seconds", up)
		num("uptime_in_days", up/86400)
		if exe, err := os.Executable(); err == nil {
			field("executable", exe)
		}
	}
	if mask&infoClients != 0 {
		section("Clients")
		num("connected_clients", p.stats.ClientConnections.Load()+p.peers.Clients)
		num("cluster_connections", 0)
		num("maxclients", int64(p.cfg.ClientConnections))
		num("blocked_clients", 0)
		num("tracking_clients", 0)
		num("pubsub_clients", 0)
	}
	if mask&infoPersistence != 0 {
		section("Persistence")
		num("loading", 0)
		num("async_loading", 0)
	}
	if mask&infoStats != 0 {
		section("Stats")
		var total uint64
		p.commands.Range(func(_, v any) bool {
			total += v.(*atomic.Uint64).Load()
			return true
		})
		num("total_connections_received", int64(p.stats.ClientAccepted.Load()+p.peers.Accepted))
		num("total_commands_processed", int64(total+p.peers.Commands))
		num("rejected_connections", int64(p.stats.ClientRejected.Load()+p.peers.Rejected))
	}
	if mask&infoReplication != 0 {
		section("Replication")
		field("role", "master")
		num("connected_slaves", 0)
	}
	if mask&infoCPU != 0 {
		section("CPU")
		var ru unix.Rusage
		if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
			tv := func(t unix.Timeval) string {
				return strconv.FormatFloat(float64(t.Sec)+float64(t.Usec)/1e6, 'f', 6, 64)
			}
			field("used_cpu_sys", tv(ru.Stime))
			field("used_cpu_user", tv(ru.Utime))
		}
	}
	if mask&infoKeyspace != 0 {
		section("Keyspace")
		dbs := make([]string, 0, len(bi.keyspace))
		for db := range bi.keyspace {
			dbs = append(dbs, db)
		}
		sort.Slice(dbs, func(i, j int) bool {
			x, _ := strconv.Atoi(strings.TrimPrefix(dbs[i], "db"))
			y, _ := strconv.Atoi(strings.TrimPrefix(dbs[j], "db"))
			return x < y
		})
		for _, db := range dbs {
			ds := bi.keyspace[db]
			ttl := int64(0)
			if ds.expires > 0 {
				ttl = int64(ds.ttlWeighted / float64(ds.expires))
			}
			field(db, "keys="+strconv.FormatInt(ds.keys, 10)+",expires="+strconv.FormatInt(ds.expires, 10)+
				",avg_ttl="+strconv.FormatInt(ttl, 10))
		}
	}
	return dst
}

// unknownRedisVersion is INFO's redis_version while no server has
// answered: the oldest release with every command the proxy routes.
const unknownRedisVersion = "7.0.0"

func listenPort(addr, network string) string {
	if network != "tcp" {
		return "0"
	}
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return "0"
}
