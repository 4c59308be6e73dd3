package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// ChannelVersion is the version of the master/worker message set. A worker
// refuses messages of another version, so a master and workers of
// different builds never misread each other during an upgrade.
const ChannelVersion = 1

// Message types. The set is closed: anything else is an error.
const (
	// master -> worker
	MsgInit      = "init"      // configuration, worker slot, listeners (fds attached)
	MsgDrain     = "drain"     // stop accepting, finish requests, exit
	MsgStop      = "stop"      // exit now
	MsgReopen    = "reopen"    // reopen log files
	MsgHeartbeat = "heartbeat" // answered with MsgHeartbeat
	MsgLogLevel  = "loglevel"  // set the log level
	MsgStats     = "stats"     // answered with MsgStats
	MsgTopology  = "topology"  // addresses of servers that move (Sentinel masters)
	MsgSlots     = "slots"     // a cluster pool's slot map
	MsgTLS       = "tls"       // read TLS certificates again; session ticket keys

	// either way: client connections handed over (fds attached), from an
	// old worker to its master, from a master to a new worker (or to the
	// new master of a binary upgrade)
	MsgClients = "clients"

	// worker -> master
	MsgReady = "ready" // every listener is served
	MsgHint  = "hint"  // what the worker saw of a server that moves
	// what a new worker did with the clients of a MsgClients
	MsgAdopted = "adopted"
)

// Message is one control message. Fds travel beside it (SCM_RIGHTS).
type Message struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	Seq  uint64 `json:"seq,omitempty"`

	// MsgInit
	Generation uint64         `json:"generation,omitempty"`
	Worker     int            `json:"worker,omitempty"`
	Config     []byte         `json:"config,omitempty"` // the validated source
	ConfigFile string         `json:"config_file,omitempty"`
	Listeners  []ListenerSpec `json:"listeners,omitempty"`
	CPU        int            `json:"cpu"` // -1: not pinned
	GoMaxProcs int            `json:"gomaxprocs,omitempty"`
	// Counters: the pools' shared client counts (counters.go), whose
	// segment is attached after the listeners' fds.
	Counters *CountersSpec `json:"counters,omitempty"`

	// MsgLogLevel
	Level string `json:"level,omitempty"`

	// MsgStats (worker -> master)
	Stats json.RawMessage `json:"stats,omitempty"`
	// MsgInit, MsgTopology: the current addresses of servers that move.
	Topology []proxy.ServerAddress `json:"topology,omitempty"`
	// MsgInit, MsgSlots: cluster pools' slot maps.
	Slots []proxy.SlotMap `json:"slots,omitempty"`
	// MsgHint: the server (Pool, Server) and what was seen (Reason).
	Hint *HintInfo `json:"hint,omitempty"`

	// MsgInit, MsgTLS: session ticket keys, the first encrypts (secret:
	// only ever on the master's socketpair). MsgTLS with Reload set: read
	// the certificate files again, in place.
	TicketKeys [][]byte `json:"ticket_keys,omitempty"`
	Reload     bool     `json:"reload,omitempty"`
	// MsgInit, MsgTLS: the TLS files' contents the master checked, by
	// path (secret, like the keys).
	TLSFiles map[string][]byte `json:"tls_files,omitempty"`

	// MsgStats (master -> worker): the other workers' counters per pool,
	// as last summed, for the INFO a worker answers.
	Peers []proxy.PeerTotals `json:"peers,omitempty"`

	// MsgDrain: pass idle clients on with MsgClients rather than close
	// them (handover.go).
	HandOver bool `json:"hand_over,omitempty"`
	// MsgReady: the sender adopts handed-over clients.
	Adopts bool `json:"adopts,omitempty"`
	// MsgClients: the clients, one per attached descriptor, in order.
	Clients []proxy.Handoff `json:"clients,omitempty"`
	// MsgAdopted: how many were adopted, and why the others were not.
	Adopted int            `json:"adopted_n,omitempty"`
	Refused map[string]int `json:"refused,omitempty"`
	// FDs are a MsgClients' descriptors as received: raw, never wrapped
	// in an os.File (which would register them with Go's poller and make
	// them blocking); the receiver owns and closes them.
	FDs []int `json:"-"`
}

// HintInfo is a worker's report about a server whose address moves.
type HintInfo struct {
	Pool   string `json:"pool"`
	Server string `json:"server"`
	Reason string `json:"reason"`
}

// ListenerSpec names the fd at the same index of the attached fds.
type ListenerSpec struct {
	Pool string `json:"pool"` // pool name, or "stats"
	Addr string `json:"addr"`
	// TLS: the listener of the pool's tls block (tls.listen).
	TLS bool `json:"tls,omitempty"`
}

// maxMessage bounds one message; configurations are far smaller.
const maxMessage = 1 << 20

// maxFds bounds the descriptors accepted with one message.
const maxFds = 1024

var (
	errChannelClosed = errors.New("process: channel closed")
	// errTruncated: one message lost, the channel still usable.
	errTruncated = errors.New("process: message truncated")
)

// Channel is one end of a master/worker socketpair. Send is safe for
// concurrent use; Recv must be called from one goroutine.
//
// Every system call goes through the os.File (raw), never a cached
// descriptor number: once a channel is closed its number is free, and
// the master receives client descriptors (hand-over) that take such
// numbers at once; a late send on a stale number would write a control
// message into a client's socket.
type Channel struct {
	f   *os.File
	smu sync.Mutex
	buf []byte
	oob []byte
}

// NewChannelPair returns a connected pair of channels.
func NewChannelPair() (*Channel, *Channel, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("process: socketpair: %w", err)
	}
	for _, fd := range fds {
		// Large enough for a whole configuration in one datagram.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 2*maxMessage)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 2*maxMessage)
	}
	return newChannel(os.NewFile(uintptr(fds[0]), "channel")), newChannel(os.NewFile(uintptr(fds[1]), "channel")), nil
}

// ChannelFromFile wraps an inherited socketpair end.
func ChannelFromFile(f *os.File) *Channel { return newChannel(f) }

func newChannel(f *os.File) *Channel {
	return &Channel{f: f}
}

// raw runs fn on the channel's descriptor, which cannot be closed (and
// its number reused) meanwhile; errChannelClosed once it is closed.
func (c *Channel) raw(fn func(fd int)) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %w", errChannelClosed, err)
	}
	if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		return fmt.Errorf("%w: %w", errChannelClosed, err)
	}
	return nil
}

// File returns the underlying file, to pass to a child process.
func (c *Channel) File() *os.File { return c.f }

// Close closes the channel; a blocked Recv on the other end gets EOF.
func (c *Channel) Close() error {
	// shutdown wakes a Recv blocked in another thread; close alone does
	// not (and waits for the Recv to let go of the descriptor).
	c.raw(func(fd int) { unix.Shutdown(fd, unix.SHUT_RDWR) })
	return c.f.Close()
}

// Send sends m with files attached.
func (c *Channel) Send(m *Message, files ...*os.File) error {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	return c.SendFDs(m, fds)
}

// SendFDs sends m with raw descriptors attached; they stay the caller's.
func (c *Channel) SendFDs(m *Message, fds []int) error {
	m.V = ChannelVersion
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("process: encode %s: %w", m.Type, err)
	}
	if len(b) > maxMessage {
		return fmt.Errorf("process: %s message too large (%d bytes)", m.Type, len(b))
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	if rerr := c.raw(func(fd int) {
		for {
			err = unix.Sendmsg(fd, b, oob, nil, 0)
			if err != unix.EINTR {
				break
			}
		}
	}); rerr != nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("process: send %s: %w", m.Type, err)
	}
	return nil
}

// Recv blocks for the next message and the files attached to it.
func (c *Channel) Recv() (*Message, []*os.File, error) {
	if c.buf == nil {
		c.buf = make([]byte, maxMessage)
		c.oob = make([]byte, unix.CmsgSpace(maxFds*4))
	}
	var n, oobn, flags int
	var err error
	if rerr := c.raw(func(fd int) {
		for {
			n, oobn, flags, _, err = unix.Recvmsg(fd, c.buf, c.oob, unix.MSG_CMSG_CLOEXEC)
			// ECONNRESET: the peer exited with messages of ours unread.
			// The kernel reports that once, before the messages the peer
			// sent, which are still queued (a worker's last counters,
			// the clients it handed over): read on, up to the EOF.
			if err != unix.EINTR && err != unix.ECONNRESET {
				break
			}
		}
	}); rerr != nil {
		err = rerr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("process: recv: %w", err)
	}
	var fds []int
	if oobn > 0 {
		scms, err := unix.ParseSocketControlMessage(c.oob[:oobn])
		if err != nil {
			return nil, nil, fmt.Errorf("process: control message: %w", err)
		}
		for _, scm := range scms {
			got, err := unix.ParseUnixRights(&scm)
			if err != nil {
				continue
			}
			fds = append(fds, got...)
		}
	}
	if n == 0 {
		closeFDs(fds)
		return nil, nil, errChannelClosed
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		// Part of the message or of its descriptors was dropped (the
		// receiver's descriptor limit, or a datagram over maxMessage).
		closeFDs(fds)
		return nil, nil, fmt.Errorf("%w (flags %#x, %d descriptors)", errTruncated, flags, len(fds))
	}
	m := new(Message)
	if err := json.Unmarshal(c.buf[:n], m); err != nil {
		closeFDs(fds)
		return nil, nil, fmt.Errorf("process: decode message: %w", err)
	}
	if m.V != ChannelVersion {
		closeFDs(fds)
		return nil, nil, fmt.Errorf("process: message version %d, want %d", m.V, ChannelVersion)
	}
	if m.Type == MsgClients {
		if len(fds) != len(m.Clients) {
			closeFDs(fds)
			return nil, nil, fmt.Errorf("process: %d descriptors for %d clients", len(fds), len(m.Clients))
		}
		m.FDs = fds
		return m, nil, nil
	}
	var files []*os.File
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), "received"))
	}
	return m, files, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
