package config

import (
	"slices"
	"strings"
)

// Hashes are the key hash names twemproxy accepts, in its own order
// (src/hashkit/nc_hashkit.h HASH_CODEC). The list is kept here rather than
// imported so that config has no dependency on the hashing code.
var Hashes = []string{
	"one_at_a_time", "md5", "crc16", "crc32", "crc32a",
	"fnv1_64", "fnv1a_64", "fnv1_32", "fnv1a_32",
	"hsieh", "murmur", "jenkins",
}

// Distributions are the server selection schemes twemproxy accepts.
var Distributions = []string{"ketama", "modula", "random"}

// Defaults that mirror twemproxy (src/nc_conf.h) or nuthatch's own choices.
const (
	DefaultHash               = "fnv1a_64"
	DefaultDistribution       = "ketama"
	DefaultBacklog            = 512
	DefaultServerConnections  = 1
	DefaultServerRetryTimeout = "30s"
	DefaultServerFailureLimit = 2
	// Client output limits (docs/configuration.md says why these).
	DefaultClientOutputHardLimit    = "1gb"
	DefaultClientOutputSoftLimit    = "64mb"
	DefaultClientOutputSoftDuration = "60s"
	// The pub/sub class of output limits, redis's
	// client-output-buffer-limit pubsub 32mb 8mb 60.
	DefaultPubSubOutputHardLimit    = "32mb"
	DefaultPubSubOutputSoftLimit    = "8mb"
	DefaultPubSubOutputSoftDuration = "60s"
	// Pinned links (transactions, blocking calls, subscriptions): per
	// server and worker process.
	DefaultMaxPinnedLinks = 1024
	// MaxDatabases bounds databases: a link class holds the database in
	// seven bits.
	MaxDatabases             = 127
	DefaultPinnedIdleTimeout = "60s"
	DefaultStatsListen       = "127.0.0.1:22222"
	DefaultStatsInterval     = "30s"
	DefaultShutdownTimeout   = "30s"
	DefaultUser              = "nuthatch"
	DefaultGroup             = "nuthatch"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "auto"

	// MaxWorkerProcesses bounds worker_processes (and "auto").
	MaxWorkerProcesses = 1024
	// MaxWeight bounds a server weight. twemproxy has no bound, but its
	// modula continuum holds one entry per unit of total weight, so an
	// absurd weight would be an absurd allocation. twemproxy's own example
	// configuration uses 100000.
	MaxWeight = 1_000_000
)

var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"auto", "journald", "text", "json"}
	affinities = []string{"auto", "off"}
	steerings  = []string{string(SteerAuto), string(SteerCPU), string(SteerHash)}
	protocols  = []string{string(ProtocolRedis), string(ProtocolMemcache)}
	// statsReserved are the top-level keys of twemproxy's stats JSON; a
	// pool with one of these names would produce a duplicate key.
	statsReserved = []string{
		"service", "source", "version", "uptime", "timestamp",
		"total_connections", "curr_connections",
	}
)

// oneOf reports whether v is in set.
func oneOf(v string, set []string) bool { return slices.Contains(set, v) }

// quoteList renders set as `"a", "b", "c"` for diagnostic details.
func quoteList(set []string) string {
	var b strings.Builder
	for i, s := range set {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
	}
	return b.String()
}
