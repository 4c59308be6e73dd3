// Package config loads and validates nuthatch's HCL configuration.
//
// The decoded form (Config) is what the rest of nuthatch consumes: every
// duration is parsed, every default applied, every name checked. A Config
// returned without error is complete and valid.
package config

import (
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/acl"
)

// DefaultPath is where packages install the configuration.
const DefaultPath = "/etc/nuthatch/nuthatch.hcl"

// Protocol is the wire protocol a pool speaks.
type Protocol string

// Protocols a pool can speak.
const (
	ProtocolRedis    Protocol = "redis"
	ProtocolMemcache Protocol = "memcache"
)

// Config is a whole, validated configuration.
type Config struct {
	// File is the path the configuration was read from.
	File string

	// WorkerProcesses is the number of workers; "auto" resolves to the
	// number of online CPUs at load time.
	WorkerProcesses int
	// WorkerProcessesAuto records that the file said "auto".
	WorkerProcessesAuto bool
	// WorkerCPUAffinity pins worker i to CPU i when true ("auto").
	WorkerCPUAffinity bool
	// ReuseportSteering picks the worker a new TCP connection goes to when
	// each worker has a SO_REUSEPORT socket of its own.
	ReuseportSteering Steering
	// WorkerShutdownTimeout bounds how long old workers drain.
	WorkerShutdownTimeout time.Duration
	// WorkerOutputBudget bounds the reply bytes a worker holds for its
	// clients: past it the worker reads no new requests until they drain
	// below three quarters of it. 0 = no budget.
	WorkerOutputBudget int64
	// PidFile is empty when no pid file is written.
	PidFile string
	// User and Group the workers run as when the master has privileges.
	User  string
	Group string

	// TLSFiles are the contents of the TLS files as read and checked,
	// by path: what the workers build their material from. Secret: never
	// printed.
	TLSFiles map[string][]byte `json:"-"`

	Log     LogConfig
	Stats   StatsConfig
	Metrics MetricsConfig
	Pools   []*Pool
}

// LogConfig controls logging.
type LogConfig struct {
	Level  string // trace debug info warn error
	Format string // auto journald text json
}

// StatsConfig controls the twemproxy-compatible stats listener.
type StatsConfig struct {
	Listen   string // "" disables it
	Interval time.Duration
}

// MetricsConfig controls the optional Prometheus-style metrics listener.
type MetricsConfig struct {
	Listen string // "" (the default) disables it
}

// Pool is one tenant: a listener, a protocol and a set of backend servers.
type Pool struct {
	Name     string
	Listen   Address
	Protocol Protocol

	Hash         string // one of the twemproxy hash names
	HashTag      string // "" or exactly two characters
	Distribution string // ketama modula random

	// Timeout is the per-request server timeout; 0 means wait forever
	// (twemproxy's default of -1).
	Timeout            time.Duration
	Backlog            int
	Preconnect         bool
	ClientConnections  int // 0 = unlimited
	ServerConnections  int
	AutoEjectHosts     bool
	ServerRetryTimeout time.Duration
	ServerFailureLimit int
	TCPKeepalive       bool
	// TCPQuickack re-arms TCP_QUICKACK on client sockets after every read,
	// so the kernel acknowledges at once instead of delaying the ACK.
	TCPQuickack bool
	// CoalesceGets (memcache pools) lets get and gets requests for one
	// server that are queued in the same round share one get line.
	CoalesceGets bool
	// ClientIdleTimeout closes a client that sent nothing for that long
	// while waiting for nothing; 0 keeps idle clients forever (twemproxy).
	ClientIdleTimeout time.Duration
	// ClientWriteTimeout closes a client that has not taken a reply the
	// proxy is writing for that long (it stopped reading); 0 waits
	// forever (twemproxy).
	ClientWriteTimeout time.Duration
	// ClientOutputHardLimit closes a client for which the proxy holds more
	// reply bytes than this; ClientOutputSoftLimit one whose pending reply
	// bytes (held, plus the rest of a reply streaming to it) stay over the
	// soft limit for ClientOutputSoftDuration. 0 = no limit (redis's
	// client-output-buffer-limit normal class).
	ClientOutputHardLimit    int64
	ClientOutputSoftLimit    int64
	ClientOutputSoftDuration time.Duration
	// PubSubOutput* are the same limits for subscribers (redis's pubsub
	// class): a subscriber that does not read is closed long before a
	// client waiting for a large reply would be.
	PubSubOutputHardLimit    int64
	PubSubOutputSoftLimit    int64
	PubSubOutputSoftDuration time.Duration
	// SlowlogSlowerThan logs requests slower than this (0 = off);
	// SlowlogLogKeys adds their first key to the record.
	SlowlogSlowerThan time.Duration
	SlowlogLogKeys    bool
	// MaxPinnedLinks bounds the server links a worker lends to clients
	// (transactions, blocking calls, subscriptions), per server: lent and
	// idle together; 0 refuses every stateful command. A link given back
	// clean waits for the next pin, closed after PinnedIdleTimeout unused
	// (0: kept).
	MaxPinnedLinks    int
	PinnedIdleTimeout time.Duration
	// AllowKeys lets clients send KEYS, answered from every server (it is
	// O(N) on each, so off by default). AllowAdminCommands lets them send
	// FLUSHDB, FLUSHALL, CONFIG and DEBUG to every server (off by default).
	AllowKeys          bool
	AllowAdminCommands bool
	// Databases lets clients SELECT databases 0..Databases-1 (each on
	// links of its own); 0 lets them select RedisDB only.
	Databases int
	// RedisAuth is a secret: String, GoString and Redacted never show it.
	RedisAuth string
	RedisDB   int
	// RedisUsername is the ACL user the proxy authenticates as on the
	// servers, with RedisAuth as its password; "" sends AUTH <password>.
	RedisUsername string
	// Users are the ACL users clients authenticate as (user blocks),
	// compiled; DefaultUser is the one a connection starts as. Users is
	// nil when the pool has no user block and no redis_auth: every client
	// is the open default user then, as on a redis without ACL.
	Users       map[string]*acl.User
	DefaultUser *acl.User

	// Sentinel, when set, makes every server a Redis Sentinel master name
	// whose address is followed live; nil for a pool of fixed addresses.
	Sentinel *Sentinel
	// Cluster, when set, makes the pool a Redis Cluster's: no servers of
	// its own, keys placed by hash slot on the nodes the cluster names.
	Cluster *Cluster

	// TLS, when set, makes the pool's listener speak TLS to clients;
	// ServerTLS, when set, makes its server links speak TLS to backends.
	TLS       *TLS
	ServerTLS *ServerTLS

	Servers []*Server
}

// TLS is a pool's client side: its certificate, and the CA that client
// certificates must chain to for mutual TLS. The files were read and
// checked when the configuration was loaded.
type TLS struct {
	Cert, Key string
	ClientCA  string // "" = no client certificates asked for
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13.
	MinVersion uint16
	// HandshakeTimeout ends a handshake that has not finished in time.
	HandshakeTimeout time.Duration
	// NotAfter is when the certificate loaded at validation expires.
	NotAfter time.Time
	// Listen, when set, is a TLS listener beside the pool's listen, which
	// then stays plaintext; unset, the pool's listen speaks TLS.
	Listen Address
}

// Listener is one address a pool accepts clients on.
type Listener struct {
	Addr Address
	TLS  bool
}

// Listeners are the addresses the pool accepts clients on: its listen,
// and the tls block's listen when set.
func (p *Pool) Listeners() []Listener {
	ls := []Listener{{Addr: p.Listen, TLS: p.TLS != nil && p.TLS.Listen.Network == ""}}
	if p.TLS != nil && p.TLS.Listen.Network != "" {
		ls = append(ls, Listener{Addr: p.TLS.Listen, TLS: true})
	}
	return ls
}

// ServerTLS is a pool's backend side.
type ServerTLS struct {
	CA         string // "" = the system's roots
	Cert, Key  string // a client certificate for backends that ask, or none
	ServerName string // "" = the host of each server's address
	MinVersion uint16
}

// DefaultHandshakeTimeout bounds a client's TLS handshake.
const DefaultHandshakeTimeout = 10 * time.Second

// Cluster is where a cluster pool's nodes and slots come from.
type Cluster struct {
	// Seeds are nodes' host:port to ask for the slot map first.
	Seeds []string
	// RefreshInterval is how often the slot map is read again without a
	// reason (a redirect or a failure reads it at once).
	RefreshInterval time.Duration
	// FailoverTimeout is how long a request for a slot whose owner is
	// down, or that is being moved, is retried before it fails.
	FailoverTimeout time.Duration
	// MaxRedirects bounds the MOVED/ASK/TRYAGAIN a request follows.
	MaxRedirects int
	// ReadFrom is where read-only commands go, as Sentinel.ReadFrom: the
	// slot's master, or one of its replicas (opened with READONLY).
	ReadFrom string
}

// Cluster defaults.
const (
	DefaultClusterRefresh = 30 * time.Second
	DefaultMaxRedirects   = 5
)

// Sentinel is where a pool's servers' addresses come from.
type Sentinel struct {
	// Addresses are the sentinels' host:port, tried in order.
	Addresses []string
	// Username and Password authenticate to the sentinels; Password is a
	// secret: String, GoString and Redacted never show it.
	Username string
	Password string
	// FailoverTimeout is how long requests for a server without a master
	// wait for its new one.
	FailoverTimeout time.Duration
	// RefreshInterval is how often every sentinel is asked again, events
	// or not: Sentinel's events can be lost.
	RefreshInterval time.Duration
	// ReadFrom is where read-only commands go: ReadFromMaster (the
	// default), ReadFromReplicaPreferred or ReadFromReplica.
	ReadFrom string
}

// Values of Sentinel.ReadFrom.
const (
	ReadFromMaster           = "master"            // every command to the master
	ReadFromReplicaPreferred = "replica_preferred" // reads to a replica, the master when none is usable
	ReadFromReplica          = "replica"           // reads to replicas only
)

// Sentinel defaults.
const (
	DefaultFailoverTimeout = 10 * time.Second
	DefaultRefreshInterval = time.Second
)

// Server is one backend of a pool.
type Server struct {
	// Name is the identity used for placement and stats: the block label.
	Name string
	// Address is where to connect; it defaults to Name.
	Address Address
	Weight  int
	// Named is true when the block set an address different from its
	// label: the label is then an explicit placement name (twemproxy's
	// "host:port:weight name" form) rather than an address. Servers of a
	// sentinel pool are named.
	Named bool
	// Master is the Sentinel master name of a sentinel pool's server (the
	// label unless the block sets master); its address is unknown until
	// the sentinels tell it.
	Master string
	// Username and Password override the pool's redis_username and
	// redis_auth towards this server. Password is a secret.
	Username, Password string
	// HasPassword: the block set password (perhaps to "", for a server
	// without one).
	HasPassword bool
}

// Credentials are the user and password the proxy authenticates with on
// s: its own, or the pool's. An empty password sends no AUTH.
func (p *Pool) Credentials(s *Server) (user, pass string) {
	user, pass = p.RedisUsername, p.RedisAuth
	if s.Username != "" {
		user = s.Username
	}
	if s.HasPassword {
		pass = s.Password
	}
	return user, pass
}

// Address is a listen or connect address: TCP host:port or a unix socket.
type Address struct {
	Network string // "tcp" or "unix"
	Addr    string // host:port, or the socket path
	// Perm is the file mode of a unix listen socket, 0 when unset.
	Perm uint32
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Addr
	}
	return a.Addr
}

// Steering is how the kernel spreads new connections over the workers'
// SO_REUSEPORT sockets of one address.
type Steering string

const (
	// SteerAuto steers connections that arrive over the loopback device
	// (clients on this host, twemproxy's usual place beside the
	// application) by CPU, and the others by hash.
	SteerAuto Steering = "auto"
	// SteerCPU sends every connection to the worker of the CPU its
	// handshake was processed on (CPU mod workers).
	SteerCPU Steering = "cpu"
	// SteerHash is the kernel's default: a hash of the addresses.
	SteerHash Steering = "hash"
)
