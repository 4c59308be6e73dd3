package config

import (
	"fmt"
	"math/big"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The raw* types are the file's schema as gohcl sees it. Optional
// attributes are pointers so that "absent" (nil) is distinct from a zero
// value; the *Range fields locate values for semantic diagnostics.

type rawConfig struct {
	WorkerProcesses       hcl.Expression `hcl:"worker_processes,optional"`
	WorkerCPUAffinity     *string        `hcl:"worker_cpu_affinity,optional"`
	ReuseportSteering     *string        `hcl:"reuseport_steering,optional"`
	WorkerShutdownTimeout *string        `hcl:"worker_shutdown_timeout,optional"`
	WorkerOutputBudget    *string        `hcl:"worker_output_budget,optional"`
	PidFile               *string        `hcl:"pid_file,optional"`
	User                  *string        `hcl:"user,optional"`
	Group                 *string        `hcl:"group,optional"`

	Log     *rawLog     `hcl:"log,block"`
	Stats   *rawStats   `hcl:"stats,block"`
	Metrics *rawMetrics `hcl:"metrics,block"`
	Pools   []*rawPool  `hcl:"pool,block"`

	WorkerCPUAffinityRange     hcl.Range `hcl:"worker_cpu_affinity,attr_value_range"`
	ReuseportSteeringRange     hcl.Range `hcl:"reuseport_steering,attr_value_range"`
	WorkerShutdownTimeoutRange hcl.Range `hcl:"worker_shutdown_timeout,attr_value_range"`
	WorkerOutputBudgetRange    hcl.Range `hcl:"worker_output_budget,attr_value_range"`
	PidFileRange               hcl.Range `hcl:"pid_file,attr_value_range"`
	UserRange                  hcl.Range `hcl:"user,attr_value_range"`
	GroupRange                 hcl.Range `hcl:"group,attr_value_range"`
}

type rawLog struct {
	Level  *string `hcl:"level,optional"`
	Format *string `hcl:"format,optional"`

	LevelRange  hcl.Range `hcl:"level,attr_value_range"`
	FormatRange hcl.Range `hcl:"format,attr_value_range"`
}

type rawStats struct {
	Listen   *string `hcl:"listen,optional"`
	Interval *string `hcl:"interval,optional"`

	ListenRange   hcl.Range `hcl:"listen,attr_value_range"`
	IntervalRange hcl.Range `hcl:"interval,attr_value_range"`
}

type rawMetrics struct {
	Listen *string `hcl:"listen,optional"`

	ListenRange hcl.Range `hcl:"listen,attr_value_range"`
}

type rawPool struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Listen             *string `hcl:"listen,optional"`
	ListenMode         *string `hcl:"listen_mode,optional"`
	Protocol           *string `hcl:"protocol,optional"`
	Hash               *string `hcl:"hash,optional"`
	HashTag            *string `hcl:"hash_tag,optional"`
	Distribution       *string `hcl:"distribution,optional"`
	Timeout            *string `hcl:"timeout,optional"`
	Backlog            *int    `hcl:"backlog,optional"`
	Preconnect         *bool   `hcl:"preconnect,optional"`
	ClientConnections  *int    `hcl:"client_connections,optional"`
	ServerConnections  *int    `hcl:"server_connections,optional"`
	AutoEjectHosts     *bool   `hcl:"auto_eject_hosts,optional"`
	ServerRetryTimeout *string `hcl:"server_retry_timeout,optional"`
	ServerFailureLimit *int    `hcl:"server_failure_limit,optional"`
	TCPKeepalive       *bool   `hcl:"tcpkeepalive,optional"`
	TCPQuickack        *bool   `hcl:"tcp_quickack,optional"`
	CoalesceGets       *bool   `hcl:"coalesce_gets,optional"`
	RedisAuth          *string `hcl:"redis_auth,optional"`
	RedisDB            *int    `hcl:"redis_db,optional"`
	ClientIdleTimeout  *string `hcl:"client_idle_timeout,optional"`
	ClientWriteTimeout *string `hcl:"client_write_timeout,optional"`
	ClientOutputHard   *string `hcl:"client_output_hard_limit,optional"`
	ClientOutputSoft   *string `hcl:"client_output_soft_limit,optional"`
	ClientOutputSoftD  *string `hcl:"client_output_soft_duration,optional"`
	PubSubOutputHard   *string `hcl:"client_output_pubsub_hard_limit,optional"`
	PubSubOutputSoft   *string `hcl:"client_output_pubsub_soft_limit,optional"`
	PubSubOutputSoftD  *string `hcl:"client_output_pubsub_soft_duration,optional"`
	SlowlogSlowerThan  *string `hcl:"slowlog_slower_than,optional"`
	SlowlogLogKeys     *bool   `hcl:"slowlog_log_keys,optional"`
	MaxPinnedLinks     *int    `hcl:"max_pinned_links,optional"`
	PinnedIdleTimeout  *string `hcl:"pinned_idle_timeout,optional"`
	AllowKeys          *bool   `hcl:"allow_keys,optional"`
	Databases          *int    `hcl:"databases,optional"`
	AllowAdmin         *bool   `hcl:"allow_admin_commands,optional"`

	// ACL users and backend credentials: users.go.
	RedisUsername      *string    `hcl:"redis_username,optional"`
	RedisUsernameRange hcl.Range  `hcl:"redis_username,attr_value_range"`
	Users              []*rawUser `hcl:"user,block"`

	Servers   []*rawServer    `hcl:"server,block"`
	Sentinel  []*rawSentinel  `hcl:"sentinel,block"`
	TLS       []*rawTLS       `hcl:"tls,block"`
	ServerTLS []*rawServerTLS `hcl:"server_tls,block"`
	Cluster   []*rawCluster   `hcl:"cluster,block"`

	HashName         hcl.Range `hcl:"hash,attr_name_range"`
	DistributionName hcl.Range `hcl:"distribution,attr_name_range"`

	AutoEjectHostsName      hcl.Range `hcl:"auto_eject_hosts,attr_name_range"`
	ListenRange             hcl.Range `hcl:"listen,attr_value_range"`
	ListenModeRange         hcl.Range `hcl:"listen_mode,attr_value_range"`
	ProtocolRange           hcl.Range `hcl:"protocol,attr_value_range"`
	HashRange               hcl.Range `hcl:"hash,attr_value_range"`
	HashTagRange            hcl.Range `hcl:"hash_tag,attr_value_range"`
	DistributionRange       hcl.Range `hcl:"distribution,attr_value_range"`
	TimeoutRange            hcl.Range `hcl:"timeout,attr_value_range"`
	BacklogRange            hcl.Range `hcl:"backlog,attr_value_range"`
	ClientConnectionsRange  hcl.Range `hcl:"client_connections,attr_value_range"`
	ServerConnectionsRange  hcl.Range `hcl:"server_connections,attr_value_range"`
	ServerRetryTimeoutRange hcl.Range `hcl:"server_retry_timeout,attr_value_range"`
	ServerFailureLimitRange hcl.Range `hcl:"server_failure_limit,attr_value_range"`
	ClientIdleTimeoutRange  hcl.Range `hcl:"client_idle_timeout,attr_value_range"`
	ClientWriteTimeoutRange hcl.Range `hcl:"client_write_timeout,attr_value_range"`
	ClientOutputHardRange   hcl.Range `hcl:"client_output_hard_limit,attr_value_range"`
	ClientOutputSoftRange   hcl.Range `hcl:"client_output_soft_limit,attr_value_range"`
	ClientOutputSoftDRange  hcl.Range `hcl:"client_output_soft_duration,attr_value_range"`
	PubSubOutputHardRange   hcl.Range `hcl:"client_output_pubsub_hard_limit,attr_value_range"`
	PubSubOutputSoftRange   hcl.Range `hcl:"client_output_pubsub_soft_limit,attr_value_range"`
	PubSubOutputSoftDRange  hcl.Range `hcl:"client_output_pubsub_soft_duration,attr_value_range"`
	SlowlogSlowerThanRange  hcl.Range `hcl:"slowlog_slower_than,attr_value_range"`
	MaxPinnedLinksRange     hcl.Range `hcl:"max_pinned_links,attr_value_range"`
	PinnedIdleTimeoutRange  hcl.Range `hcl:"pinned_idle_timeout,attr_value_range"`
	// Only the names of the redis_* attributes are ever pointed at, so a
	// diagnostic cannot underline the password.
	RedisAuthNameRange hcl.Range `hcl:"redis_auth,attr_name_range"`
	CoalesceGetsName   hcl.Range `hcl:"coalesce_gets,attr_name_range"`
	AllowKeysName      hcl.Range `hcl:"allow_keys,attr_name_range"`
	DatabasesName      hcl.Range `hcl:"databases,attr_name_range"`
	DatabasesRange     hcl.Range `hcl:"databases,attr_value_range"`
	AllowAdminName     hcl.Range `hcl:"allow_admin_commands,attr_name_range"`
	RedisDBNameRange   hcl.Range `hcl:"redis_db,attr_name_range"`
	RedisDBRange       hcl.Range `hcl:"redis_db,attr_value_range"`
}

type rawServer struct {
	Label      string    `hcl:"name,label"`
	LabelRange hcl.Range `hcl:"name,label_range"`

	Address *string `hcl:"address,optional"`
	Weight  *int    `hcl:"weight,optional"`
	Master  *string `hcl:"master,optional"`

	AddressRange hcl.Range `hcl:"address,attr_value_range"`
	WeightRange  hcl.Range `hcl:"weight,attr_value_range"`
	MasterRange  hcl.Range `hcl:"master,attr_value_range"`

	// Backend credentials of this server (users.go).
	Username      *string   `hcl:"username,optional"`
	Password      *string   `hcl:"password,optional"`
	UsernameRange hcl.Range `hcl:"username,attr_name_range"`
	PasswordRange hcl.Range `hcl:"password,attr_name_range"`
}

type rawCluster struct {
	DefRange hcl.Range `hcl:",def_range"`

	Seeds           *[]string `hcl:"seeds,optional"`
	RefreshInterval *string   `hcl:"refresh_interval,optional"`
	FailoverTimeout *string   `hcl:"failover_timeout,optional"`
	MaxRedirects    *int      `hcl:"max_redirects,optional"`
	ReadFrom        *string   `hcl:"read_from,optional"`

	SeedsRange           hcl.Range `hcl:"seeds,attr_value_range"`
	RefreshIntervalRange hcl.Range `hcl:"refresh_interval,attr_value_range"`
	FailoverTimeoutRange hcl.Range `hcl:"failover_timeout,attr_value_range"`
	MaxRedirectsRange    hcl.Range `hcl:"max_redirects,attr_value_range"`
	ReadFromRange        hcl.Range `hcl:"read_from,attr_value_range"`
}

type rawTLS struct {
	DefRange hcl.Range `hcl:",def_range"`

	Cert             *string `hcl:"cert,optional"`
	Key              *string `hcl:"key,optional"`
	ClientCA         *string `hcl:"client_ca,optional"`
	MinVersion       *string `hcl:"min_version,optional"`
	HandshakeTimeout *string `hcl:"handshake_timeout,optional"`
	Listen           *string `hcl:"listen,optional"`

	CertRange             hcl.Range `hcl:"cert,attr_value_range"`
	KeyRange              hcl.Range `hcl:"key,attr_value_range"`
	ClientCARange         hcl.Range `hcl:"client_ca,attr_value_range"`
	MinVersionRange       hcl.Range `hcl:"min_version,attr_value_range"`
	HandshakeTimeoutRange hcl.Range `hcl:"handshake_timeout,attr_value_range"`
	ListenRange           hcl.Range `hcl:"listen,attr_value_range"`
}

type rawServerTLS struct {
	DefRange hcl.Range `hcl:",def_range"`

	CA         *string `hcl:"ca,optional"`
	Cert       *string `hcl:"cert,optional"`
	Key        *string `hcl:"key,optional"`
	ServerName *string `hcl:"server_name,optional"`
	MinVersion *string `hcl:"min_version,optional"`

	CARange         hcl.Range `hcl:"ca,attr_value_range"`
	CertRange       hcl.Range `hcl:"cert,attr_value_range"`
	KeyRange        hcl.Range `hcl:"key,attr_value_range"`
	MinVersionRange hcl.Range `hcl:"min_version,attr_value_range"`
}

type rawSentinel struct {
	DefRange hcl.Range `hcl:",def_range"`

	Addresses       *[]string `hcl:"addresses,optional"`
	Username        *string   `hcl:"username,optional"`
	Password        *string   `hcl:"password,optional"`
	FailoverTimeout *string   `hcl:"failover_timeout,optional"`
	RefreshInterval *string   `hcl:"refresh_interval,optional"`
	ReadFrom        *string   `hcl:"read_from,optional"`

	ReadFromRange        hcl.Range `hcl:"read_from,attr_value_range"`
	AddressesRange       hcl.Range `hcl:"addresses,attr_value_range"`
	FailoverTimeoutRange hcl.Range `hcl:"failover_timeout,attr_value_range"`
	RefreshIntervalRange hcl.Range `hcl:"refresh_interval,attr_value_range"`
}

// numCPU is replaced by tests so that goldens do not depend on the host.
var numCPU = cpuCount

// checker accumulates diagnostics so that one run reports every problem.
type checker struct {
	diags hcl.Diagnostics
	// decoded is how many diags came from gohcl; a semantic check on a
	// value gohcl already rejected would only repeat the complaint.
	decoded int
	// given are TLS files' contents to use instead of the disk's; read
	// records what was used (Config.TLSFiles).
	given map[string][]byte
	read  map[string][]byte
}

func (c *checker) errorf(rng hcl.Range, summary, format string, args ...any) {
	for _, d := range c.diags[:c.decoded] {
		if d.Subject != nil && overlaps(*d.Subject, rng) {
			return
		}
	}
	r := rng
	c.diags = append(c.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  &r,
	})
}

func present(r hcl.Range) bool { return r.Filename != "" }

func overlaps(a, b hcl.Range) bool {
	return a.Filename == b.Filename && a.Start.Byte < b.End.Byte && b.Start.Byte < a.End.Byte
}

// dropUnknownValue removes gohcl's "value must be known" complaint, which
// only echoes an earlier "Variables not allowed" at the same place.
func dropUnknownValue(diags hcl.Diagnostics) hcl.Diagnostics {
	out := diags[:0]
	for _, d := range diags {
		if d.Summary == "Unsuitable value type" && strings.HasSuffix(d.Detail, "value must be known") {
			continue
		}
		out = append(out, d)
	}
	return out
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// decode turns a parsed body into a validated Config.
func decode(body hcl.Body, filename string, files map[string][]byte) (*Config, hcl.Diagnostics) {
	var raw rawConfig
	c := &checker{given: files}
	c.diags = dropUnknownValue(gohcl.DecodeBody(body, nil, &raw))
	c.decoded = len(c.diags)

	cfg := &Config{
		TLSFiles: map[string][]byte{},
		File:     filename,
		User:     DefaultUser,
		Group:    DefaultGroup,
	}
	c.workerProcesses(raw.WorkerProcesses, cfg)

	switch aff := deref(raw.WorkerCPUAffinity, "off"); {
	case aff == "auto":
		cfg.WorkerCPUAffinity = true
	case aff != "off":
		c.errorf(raw.WorkerCPUAffinityRange, "Invalid worker_cpu_affinity",
			"%q is not a valid worker_cpu_affinity; use one of: %s.", aff, quoteList(affinities))
	}
	cfg.ReuseportSteering = Steering(deref(raw.ReuseportSteering, string(SteerAuto)))
	if !oneOf(string(cfg.ReuseportSteering), steerings) {
		c.errorf(raw.ReuseportSteeringRange, "Invalid reuseport_steering",
			"%q is not a valid reuseport_steering; use one of: %s.", cfg.ReuseportSteering, quoteList(steerings))
	}
	cfg.WorkerShutdownTimeout = c.duration("worker_shutdown_timeout",
		deref(raw.WorkerShutdownTimeout, DefaultShutdownTimeout), raw.WorkerShutdownTimeoutRange, 0)

	if raw.WorkerOutputBudget != nil {
		cfg.WorkerOutputBudget = c.size("worker_output_budget", *raw.WorkerOutputBudget, raw.WorkerOutputBudgetRange)
	}

	if raw.PidFile != nil {
		cfg.PidFile = *raw.PidFile
		if cfg.PidFile != "" && !filepath.IsAbs(cfg.PidFile) {
			c.errorf(raw.PidFileRange, "Invalid pid_file",
				"pid_file %q must be an absolute path (the daemon runs from /).", cfg.PidFile)
		}
	}
	if raw.User != nil {
		cfg.User = *raw.User
		if cfg.User == "" {
			c.errorf(raw.UserRange, "Invalid user", "user must not be empty; omit it to use %q.", DefaultUser)
		}
	}
	if raw.Group != nil {
		cfg.Group = *raw.Group
		if cfg.Group == "" {
			c.errorf(raw.GroupRange, "Invalid group", "group must not be empty; omit it to use %q.", DefaultGroup)
		}
	}

	c.read = cfg.TLSFiles
	c.log(raw.Log, cfg)
	stats, metrics := c.stats(raw.Stats, cfg), c.metrics(raw.Metrics, cfg)

	if len(raw.Pools) == 0 && !hasBlock(body, "pool") {
		start := hcl.Pos{Line: 1, Column: 1}
		c.errorf(hcl.Range{Filename: filename, Start: start, End: start}, "No pools",
			"The configuration defines no pool blocks; nuthatch needs at least one.")
	}
	seenPool := map[string]hcl.Range{}
	// An implicit listener goes first so that a clash is reported at the
	// pool that the operator wrote, not at a place that does not exist.
	var listens []listenAt
	if len(stats) == 1 && !present(stats[0].rng) {
		listens, stats = stats, nil
	}
	for _, rp := range raw.Pools {
		p := c.pool(rp)
		if first, dup := seenPool[rp.Name]; dup {
			c.errorf(rp.NameRange, "Duplicate pool name",
				"A pool named %q is already defined at %s.", rp.Name, first)
		} else {
			seenPool[rp.Name] = rp.NameRange
		}
		if p.Listen.Network != "" {
			listens = append(listens, listenAt{keyOf(p.Listen), rp.ListenRange, fmt.Sprintf("pool %q", rp.Name)})
		}
		if p.TLS != nil && p.TLS.Listen.Network != "" {
			listens = append(listens, listenAt{keyOf(p.TLS.Listen), rp.TLS[0].ListenRange, fmt.Sprintf("pool %q tls", rp.Name)})
		}
		cfg.Pools = append(cfg.Pools, p)
	}
	// stats and metrics last, so that the error points at them only when
	// they clash with a pool, never the other way round.
	listens = append(listens, stats...)
	listens = append(listens, metrics...)
	for i := range listens {
		for j := range i {
			if listens[i].key.conflicts(listens[j].key) {
				where := ""
				if present(listens[j].rng) {
					where = " at " + listens[j].rng.String()
				}
				c.errorf(listens[i].rng, "Duplicate listen address",
					"The %s listener overlaps the %s listener%s; each must bind a distinct address.",
					listens[i].who, listens[j].who, where)
				break
			}
		}
	}
	return cfg, c.diags
}

// hasBlock reports whether body has a block of type typ, even one gohcl
// rejected (a pool with no label is already an error, not "no pools").
func hasBlock(body hcl.Body, typ string) bool {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return false
	}
	for _, b := range sb.Blocks {
		if b.Type == typ {
			return true
		}
	}
	return false
}

type listenAt struct {
	key listenKey
	rng hcl.Range
	who string
}

func (c *checker) workerProcesses(expr hcl.Expression, cfg *Config) {
	auto := func() {
		cfg.WorkerProcessesAuto = true
		cfg.WorkerProcesses = CPUBudget{Affinity: numCPU()}.AutoWorkers()
	}
	if expr == nil {
		auto()
		return
	}
	v, diags := expr.Value(nil)
	c.diags = append(c.diags, diags...)
	if diags.HasErrors() {
		return
	}
	rng := expr.Range()
	bad := func() {
		c.errorf(rng, "Invalid worker_processes",
			"worker_processes must be \"auto\" or a whole number from 1 to %d.", MaxWorkerProcesses)
	}
	switch {
	case v.IsNull():
		auto()
	case !v.IsKnown():
		bad()
	case v.Type() == cty.String:
		s := v.AsString()
		if s == "auto" {
			auto()
			return
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxWorkerProcesses {
			bad()
			return
		}
		cfg.WorkerProcesses = n
	case v.Type() == cty.Number:
		f := v.AsBigFloat()
		n, acc := f.Int64()
		if acc != big.Exact || n < 1 || n > MaxWorkerProcesses {
			bad()
			return
		}
		cfg.WorkerProcesses = int(n)
	default:
		bad()
	}
}

func (c *checker) log(raw *rawLog, cfg *Config) {
	cfg.Log = LogConfig{Level: DefaultLogLevel, Format: DefaultLogFormat}
	if raw == nil {
		return
	}
	cfg.Log.Level = deref(raw.Level, DefaultLogLevel)
	if !oneOf(cfg.Log.Level, logLevels) {
		c.errorf(raw.LevelRange, "Invalid log level",
			"%q is not a log level; use one of: %s.", cfg.Log.Level, quoteList(logLevels))
	}
	cfg.Log.Format = deref(raw.Format, DefaultLogFormat)
	if !oneOf(cfg.Log.Format, logFormats) {
		c.errorf(raw.FormatRange, "Invalid log format",
			"%q is not a log format; use one of: %s.", cfg.Log.Format, quoteList(logFormats))
	}
}

func (c *checker) stats(raw *rawStats, cfg *Config) []listenAt {
	listen, interval := DefaultStatsListen, DefaultStatsInterval
	var listenRange, intervalRange hcl.Range
	if raw != nil {
		listen = deref(raw.Listen, listen)
		interval = deref(raw.Interval, interval)
		listenRange, intervalRange = raw.ListenRange, raw.IntervalRange
	}
	cfg.Stats.Interval = c.duration("stats interval", interval, intervalRange, time.Millisecond)
	if listen == "" {
		return nil
	}
	a, err := parseAddress(listen, addrTCP)
	if err != nil {
		c.errorf(listenRange, "Invalid stats listen address", "%s.", err)
		return nil
	}
	cfg.Stats.Listen = a.Addr
	who := "stats"
	if !present(listenRange) {
		who = "default stats (" + DefaultStatsListen + ")"
	}
	return []listenAt{{keyOf(a), listenRange, who}}
}

func (c *checker) metrics(raw *rawMetrics, cfg *Config) []listenAt {
	if raw == nil || deref(raw.Listen, "") == "" {
		return nil
	}
	a, err := parseAddress(*raw.Listen, addrTCP)
	if err != nil {
		c.errorf(raw.ListenRange, "Invalid metrics listen address", "%s.", err)
		return nil
	}
	cfg.Metrics.Listen = a.Addr
	return []listenAt{{keyOf(a), raw.ListenRange, "metrics"}}
}

// size parses a byte count as redis.conf writes them: a bare number of
// bytes, or a number with a unit: k, m, g are powers of 1000 and kb, mb,
// gb (or kib, mib, gib) powers of 1024, in any case. "0" is 0.
func (c *checker) size(name, s string, rng hcl.Range) int64 {
	n, err := ParseSize(s)
	if err != nil {
		c.errorf(rng, "Invalid size", "%s must be a size such as \"64mb\" or \"1gb\" (or a number of bytes): %s.", name, err)
		return 0
	}
	return n
}

// ParseSize reads a size as redis.conf writes it (see checker.size).
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q does not start with a number", s)
	}
	v, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	units := map[string]int64{"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9,
		"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
	u, ok := units[strings.TrimSpace(t[i:])]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit; use b, k, kb, m, mb, g or gb", s)
	}
	if v > (1<<62)/u {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return v * u, nil
}

// duration parses a Go duration of at least minimum (0 allows zero).
func (c *checker) duration(name, s string, rng hcl.Range, minimum time.Duration) time.Duration {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil && s == "-1":
		c.errorf(rng, "Invalid duration",
			"%s cannot be -1; for twemproxy's -1 (wait forever) leave the attribute out or write \"0\".", name)
		return 0
	case err != nil && isDigits(s):
		c.errorf(rng, "Invalid duration",
			"%s needs a unit: twemproxy counts milliseconds, so its %s is written \"%sms\" here.", name, s, s)
		return 0
	case err != nil:
		c.errorf(rng, "Invalid duration",
			"%s must be a duration with a unit, such as \"400ms\" or \"30s\": %s.", name, strings.TrimPrefix(err.Error(), "time: "))
		return 0
	case d < 0:
		c.errorf(rng, "Invalid duration", "%s must not be negative.", name)
		return 0
	case d < minimum:
		c.errorf(rng, "Invalid duration", "%s must be at least %s.", name, minimum)
		return 0
	}
	return d
}

// nonNegative returns the value of an optional int attribute.
func (c *checker) nonNegative(name string, p *int, def int, rng hcl.Range) int {
	v := deref(p, def)
	if v < 0 {
		c.errorf(rng, "Invalid "+name, "%s must not be negative (got %d).", name, v)
		return def
	}
	return v
}

// checkName rejects names that would corrupt twemproxy's stats JSON,
// which embeds pool and server names verbatim.
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("the name is empty")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return fmt.Errorf("the name contains %q, which cannot appear in stats output", r)
		}
	}
	return nil
}

func (c *checker) pool(rp *rawPool) *Pool {
	p := &Pool{
		Name:               rp.Name,
		Hash:               deref(rp.Hash, DefaultHash),
		HashTag:            deref(rp.HashTag, ""),
		Distribution:       deref(rp.Distribution, DefaultDistribution),
		Preconnect:         deref(rp.Preconnect, false),
		AutoEjectHosts:     deref(rp.AutoEjectHosts, false),
		TCPKeepalive:       deref(rp.TCPKeepalive, false),
		TCPQuickack:        deref(rp.TCPQuickack, false),
		RedisAuth:          deref(rp.RedisAuth, ""),
		ServerConnections:  deref(rp.ServerConnections, DefaultServerConnections),
		ServerFailureLimit: c.nonNegative("server_failure_limit", rp.ServerFailureLimit, DefaultServerFailureLimit, rp.ServerFailureLimitRange),
		Backlog:            c.nonNegative("backlog", rp.Backlog, DefaultBacklog, rp.BacklogRange),
		ClientConnections:  c.nonNegative("client_connections", rp.ClientConnections, 0, rp.ClientConnectionsRange),
		RedisDB:            c.nonNegative("redis_db", rp.RedisDB, 0, rp.RedisDBRange),
	}
	if err := checkName(rp.Name); err != nil {
		c.errorf(rp.NameRange, "Invalid pool name", "%s.", err)
	} else if oneOf(rp.Name, statsReserved) {
		c.errorf(rp.NameRange, "Invalid pool name",
			"%q is a top-level key of the stats output; the reserved names are: %s.", rp.Name, quoteList(statsReserved))
	}

	switch {
	case rp.Listen == nil && present(rp.ListenRange):
		// gohcl has reported the bad value.
	case rp.Listen == nil:
		c.errorf(rp.DefRange, "Missing listen", "pool %q has no listen address; set listen = \"host:port\" or \"unix:/path\".", rp.Name)
	case strings.HasPrefix(*rp.Listen, "/") && strings.Contains(*rp.Listen, " "):
		path, mode, _ := strings.Cut(*rp.Listen, " ")
		c.errorf(rp.ListenRange, "Invalid listen address",
			"twemproxy's \"path mode\" form is written listen = %q with listen_mode = %q here.", unixPrefix+path, strings.TrimSpace(mode))
	default:
		a, err := parseAddress(*rp.Listen, addrListen)
		if err != nil {
			c.errorf(rp.ListenRange, "Invalid listen address", "%s.", err)
		}
		p.Listen = a
	}
	if rp.ListenMode != nil {
		m, err := parseMode(*rp.ListenMode)
		switch {
		case err != nil:
			c.errorf(rp.ListenModeRange, "Invalid listen_mode", "%s; write it like \"0666\".", err)
		case p.Listen.Network == "tcp":
			c.errorf(rp.ListenModeRange, "Invalid listen_mode", "listen_mode applies only to a unix:/path listen address.")
		}
		p.Listen.Perm = m
	}

	switch {
	case rp.Protocol == nil && present(rp.ProtocolRange):
		// gohcl has reported the bad value.
	case rp.Protocol == nil:
		c.errorf(rp.DefRange, "Missing protocol",
			"pool %q has no protocol; set protocol = %s.", rp.Name, strings.Join(quotedAlternatives(protocols), " or "))
	case !oneOf(*rp.Protocol, protocols):
		c.errorf(rp.ProtocolRange, "Unknown protocol",
			"%q is not a protocol; use one of: %s.", *rp.Protocol, quoteList(protocols))
	default:
		p.Protocol = Protocol(*rp.Protocol)
	}
	if !oneOf(p.Hash, Hashes) {
		c.errorf(rp.HashRange, "Unknown hash", "%q is not a hash; use one of: %s.", p.Hash, quoteList(Hashes))
	}
	if !oneOf(p.Distribution, Distributions) {
		c.errorf(rp.DistributionRange, "Unknown distribution",
			"%q is not a distribution; use one of: %s.", p.Distribution, quoteList(Distributions))
	}
	if n := len(p.HashTag); n != 0 && n != 2 {
		unit := "bytes"
		if n == 1 {
			unit = "byte"
		}
		c.errorf(rp.HashTagRange, "Invalid hash_tag",
			"hash_tag must be exactly two single-byte characters, such as \"{}\", or \"\" for none; %q is %d %s.", p.HashTag, n, unit)
	}
	if rp.Timeout != nil {
		p.Timeout = c.duration("timeout", *rp.Timeout, rp.TimeoutRange, 0)
	}
	p.ServerRetryTimeout = c.duration("server_retry_timeout",
		deref(rp.ServerRetryTimeout, DefaultServerRetryTimeout), rp.ServerRetryTimeoutRange, 0)
	if rp.ClientIdleTimeout != nil {
		p.ClientIdleTimeout = c.duration("client_idle_timeout", *rp.ClientIdleTimeout, rp.ClientIdleTimeoutRange, 0)
	}
	if rp.ClientWriteTimeout != nil {
		p.ClientWriteTimeout = c.duration("client_write_timeout", *rp.ClientWriteTimeout, rp.ClientWriteTimeoutRange, 0)
	}
	p.ClientOutputHardLimit = c.size("client_output_hard_limit",
		deref(rp.ClientOutputHard, DefaultClientOutputHardLimit), rp.ClientOutputHardRange)
	p.ClientOutputSoftLimit = c.size("client_output_soft_limit",
		deref(rp.ClientOutputSoft, DefaultClientOutputSoftLimit), rp.ClientOutputSoftRange)
	p.ClientOutputSoftDuration = c.duration("client_output_soft_duration",
		deref(rp.ClientOutputSoftD, DefaultClientOutputSoftDuration), rp.ClientOutputSoftDRange, 0)
	p.PubSubOutputHardLimit = c.size("client_output_pubsub_hard_limit",
		deref(rp.PubSubOutputHard, DefaultPubSubOutputHardLimit), rp.PubSubOutputHardRange)
	p.PubSubOutputSoftLimit = c.size("client_output_pubsub_soft_limit",
		deref(rp.PubSubOutputSoft, DefaultPubSubOutputSoftLimit), rp.PubSubOutputSoftRange)
	p.PubSubOutputSoftDuration = c.duration("client_output_pubsub_soft_duration",
		deref(rp.PubSubOutputSoftD, DefaultPubSubOutputSoftDuration), rp.PubSubOutputSoftDRange, 0)
	if rp.SlowlogSlowerThan != nil {
		p.SlowlogSlowerThan = c.duration("slowlog_slower_than", *rp.SlowlogSlowerThan, rp.SlowlogSlowerThanRange, 0)
	}
	p.SlowlogLogKeys = deref(rp.SlowlogLogKeys, false)
	p.MaxPinnedLinks = c.nonNegative("max_pinned_links", rp.MaxPinnedLinks, DefaultMaxPinnedLinks, rp.MaxPinnedLinksRange)
	p.PinnedIdleTimeout = c.duration("pinned_idle_timeout",
		deref(rp.PinnedIdleTimeout, DefaultPinnedIdleTimeout), rp.PinnedIdleTimeoutRange, 0)
	if p.ServerConnections < 1 {
		c.errorf(rp.ServerConnectionsRange, "Invalid server_connections",
			"server_connections must be at least 1 (got %d).", p.ServerConnections)
		p.ServerConnections = DefaultServerConnections
	}
	p.AllowKeys = deref(rp.AllowKeys, false)
	p.AllowAdminCommands = deref(rp.AllowAdmin, false)
	p.Databases = c.nonNegative("databases", rp.Databases, 0, rp.DatabasesRange)
	switch {
	case p.Databases > MaxDatabases:
		c.errorf(rp.DatabasesRange, "Invalid databases", "databases may be at most %d (got %d).", MaxDatabases, p.Databases)
	case p.Databases > 0 && p.RedisDB >= p.Databases:
		c.errorf(rp.DatabasesRange, "Invalid databases",
			"redis_db (%d) must be one of the databases 0..%d that databases = %d lets clients select.", p.RedisDB, p.Databases-1, p.Databases)
	}
	if p.Protocol == ProtocolMemcache {
		p.CoalesceGets = deref(rp.CoalesceGets, true)
		for _, a := range []struct {
			name string
			r    hcl.Range
		}{{"allow_keys", rp.AllowKeysName}, {"allow_admin_commands", rp.AllowAdminName}, {"databases", rp.DatabasesName}} {
			if present(a.r) {
				c.errorf(a.r, "Invalid attribute for a memcache pool", "%s is only valid in a redis pool.", a.name)
			}
		}
		if present(rp.RedisAuthNameRange) {
			c.errorf(rp.RedisAuthNameRange, "Invalid attribute for a memcache pool", "redis_auth is only valid in a redis pool.")
		}
		if present(rp.RedisDBNameRange) {
			c.errorf(rp.RedisDBNameRange, "Invalid attribute for a memcache pool", "redis_db is only valid in a redis pool.")
		}
	} else if present(rp.CoalesceGetsName) {
		c.errorf(rp.CoalesceGetsName, "Invalid attribute for a redis pool", "coalesce_gets is only valid in a memcache pool.")
	}

	c.users(rp, p)
	p.Sentinel = c.sentinel(rp, p)
	p.Cluster = c.cluster(rp, p)
	p.TLS = c.tls(rp)
	p.ServerTLS = c.serverTLS(rp)
	if p.Cluster != nil {
		for _, rs := range rp.Servers {
			c.errorf(rs.LabelRange, "Server block in a cluster pool",
				"a cluster pool's nodes come from the cluster itself (CLUSTER SHARDS); list some of them as seeds in the cluster block instead.")
		}
		return p
	}
	if len(rp.Servers) == 0 {
		c.errorf(rp.DefRange, "Empty pool", "pool %q has no server blocks; add at least one, as in server \"127.0.0.1:6379\" {}.", rp.Name)
	}
	labels := map[string]hcl.Range{}
	placement := map[string]hcl.Range{}
	masters := map[string]hcl.Range{}
	for _, rs := range rp.Servers {
		var s *Server
		if p.Sentinel != nil {
			s = c.sentinelServer(rs)
			if first, dup := masters[s.Master]; dup {
				c.errorf(rs.LabelRange, "Duplicate master name",
					"Server %q follows Sentinel master %q, as the server at %s does.", rs.Label, s.Master, first)
			} else {
				masters[s.Master] = rs.LabelRange
			}
		} else {
			s = c.server(rs)
			if rs.Master != nil {
				c.errorf(rs.MasterRange, "Invalid attribute", "master names a Sentinel master; it is valid only in a pool with a sentinel block.")
			}
		}
		if first, dup := labels[rs.Label]; dup {
			c.errorf(rs.LabelRange, "Duplicate server", "pool %q already has a server %q at %s.", rp.Name, rs.Label, first)
		} else {
			labels[rs.Label] = rs.LabelRange
			if s.Address.Network != "" || s.Master != "" {
				// twemproxy rejects two servers with one ring identity.
				pn := s.PlacementName()
				if first, dup := placement[pn]; dup {
					c.errorf(rs.LabelRange, "Duplicate server name",
						"Server %q has placement name %q, the same as the server at %s.", rs.Label, pn, first)
				} else {
					placement[pn] = rs.LabelRange
				}
			}
		}
		c.serverCredentials(rs, s, p)
		p.Servers = append(p.Servers, s)
	}
	return p
}

func quotedAlternatives(set []string) []string {
	out := make([]string, len(set))
	for i, s := range set {
		out[i] = strconv.Quote(s)
	}
	return out
}

// sentinel checks a pool's sentinel block, if any.
func (c *checker) sentinel(rp *rawPool, p *Pool) *Sentinel {
	switch len(rp.Sentinel) {
	case 0:
		return nil
	case 1:
	default:
		c.errorf(rp.Sentinel[1].DefRange, "Duplicate sentinel block", "pool %q has more than one sentinel block.", rp.Name)
	}
	rs := rp.Sentinel[0]
	if p.Protocol == ProtocolMemcache {
		c.errorf(rs.DefRange, "Invalid block for a memcache pool", "memcached has no replication; sentinel is only valid in a redis pool.")
		return nil
	}
	if present(rp.AutoEjectHostsName) && p.AutoEjectHosts {
		c.errorf(rp.AutoEjectHostsName, "Invalid attribute for a sentinel pool",
			"auto_eject_hosts would move a server's keys to the others; in a sentinel pool a server's new master takes them over instead.")
	}
	s := &Sentinel{
		Username:        deref(rs.Username, ""),
		Password:        deref(rs.Password, ""),
		FailoverTimeout: c.duration("failover_timeout", deref(rs.FailoverTimeout, DefaultFailoverTimeout.String()), rs.FailoverTimeoutRange, 0),
		RefreshInterval: c.duration("refresh_interval", deref(rs.RefreshInterval, DefaultRefreshInterval.String()), rs.RefreshIntervalRange, 0),
	}
	switch s.ReadFrom = deref(rs.ReadFrom, ReadFromMaster); s.ReadFrom {
	case ReadFromMaster, ReadFromReplicaPreferred, ReadFromReplica:
	default:
		c.errorf(rs.ReadFromRange, "Invalid read_from", "read_from is %q, %q or %q (got %q).",
			ReadFromMaster, ReadFromReplicaPreferred, ReadFromReplica, s.ReadFrom)
	}
	if s.RefreshInterval < 100*time.Millisecond {
		c.errorf(rs.RefreshIntervalRange, "Invalid refresh_interval", "refresh_interval must be at least 100ms (got %s).", s.RefreshInterval)
	}
	if rs.Addresses == nil || len(*rs.Addresses) == 0 {
		c.errorf(rs.DefRange, "Missing sentinel addresses", "the sentinel block needs addresses = [\"host:port\", ...].")
		return s
	}
	s.Addresses = c.tcpAddresses(*rs.Addresses, rs.AddressesRange, "sentinel address", "sentinels")
	return s
}

// tcpAddresses checks a list of host:port (sentinels, cluster seeds) and
// returns it normalised; what names one entry, who the peers.
func (c *checker) tcpAddresses(list []string, rng hcl.Range, what, who string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range list {
		addr, err := parseAddress(a, addrServer)
		switch {
		case err != nil:
			c.errorf(rng, "Invalid "+what, "%s.", err)
		case addr.Network != "tcp":
			c.errorf(rng, "Invalid "+what, "%q: %s are reached over TCP, as host:port.", a, who)
		case seen[addr.Addr]:
			c.errorf(rng, "Duplicate "+what, "%q is listed twice.", a)
		default:
			seen[addr.Addr] = true
			out = append(out, addr.Addr)
		}
	}
	return out
}

// cluster checks a pool's cluster block, if any.
func (c *checker) cluster(rp *rawPool, p *Pool) *Cluster {
	switch len(rp.Cluster) {
	case 0:
		return nil
	case 1:
	default:
		c.errorf(rp.Cluster[1].DefRange, "Duplicate cluster block", "pool %q has more than one cluster block.", rp.Name)
	}
	rc := rp.Cluster[0]
	switch {
	case p.Protocol == ProtocolMemcache:
		c.errorf(rc.DefRange, "Invalid block for a memcache pool", "cluster is a Redis Cluster; it is only valid in a redis pool.")
		return nil
	case p.Sentinel != nil:
		c.errorf(rc.DefRange, "Both cluster and sentinel", "a pool follows either a Redis Cluster or Sentinel, not both.")
		return nil
	}
	placement := "placement in a cluster pool is the key's hash slot (CRC16 of the key or its {tag}), as the cluster decides"
	if present(rp.HashName) {
		c.errorf(rp.HashName, "Invalid attribute for a cluster pool", "%s; remove hash.", placement)
	}
	if present(rp.DistributionName) {
		c.errorf(rp.DistributionName, "Invalid attribute for a cluster pool", "%s; remove distribution.", placement)
	}
	if present(rp.AutoEjectHostsName) && p.AutoEjectHosts {
		c.errorf(rp.AutoEjectHostsName, "Invalid attribute for a cluster pool",
			"auto_eject_hosts would move keys; the cluster promotes a replica instead.")
	}
	if present(rp.DatabasesName) && p.Databases > 1 {
		c.errorf(rp.DatabasesName, "Invalid attribute for a cluster pool", "a Redis Cluster serves database 0 only.")
	}
	if present(rp.RedisDBNameRange) && p.RedisDB != 0 {
		c.errorf(rp.RedisDBNameRange, "Invalid attribute for a cluster pool", "a Redis Cluster serves database 0 only.")
	}
	cl := &Cluster{
		RefreshInterval: c.duration("refresh_interval", deref(rc.RefreshInterval, DefaultClusterRefresh.String()), rc.RefreshIntervalRange, 0),
		FailoverTimeout: c.duration("failover_timeout", deref(rc.FailoverTimeout, DefaultFailoverTimeout.String()), rc.FailoverTimeoutRange, 0),
		MaxRedirects:    deref(rc.MaxRedirects, DefaultMaxRedirects),
		ReadFrom:        deref(rc.ReadFrom, ReadFromMaster),
	}
	if cl.RefreshInterval < time.Second {
		c.errorf(rc.RefreshIntervalRange, "Invalid refresh_interval", "refresh_interval must be at least 1s (got %s); redirects and failures refresh at once.", cl.RefreshInterval)
	}
	if cl.MaxRedirects < 1 || cl.MaxRedirects > 100 {
		c.errorf(rc.MaxRedirectsRange, "Invalid max_redirects", "max_redirects must be from 1 to 100 (got %d).", cl.MaxRedirects)
	}
	switch cl.ReadFrom {
	case ReadFromMaster, ReadFromReplicaPreferred, ReadFromReplica:
	default:
		c.errorf(rc.ReadFromRange, "Invalid read_from", "read_from is %q, %q or %q (got %q).",
			ReadFromMaster, ReadFromReplicaPreferred, ReadFromReplica, cl.ReadFrom)
	}
	if rc.Seeds == nil || len(*rc.Seeds) == 0 {
		c.errorf(rc.DefRange, "Missing cluster seeds", "the cluster block needs seeds = [\"host:port\", ...]: some of the cluster's nodes.")
		return cl
	}
	cl.Seeds = c.tcpAddresses(*rc.Seeds, rc.SeedsRange, "seed address", "cluster nodes")
	return cl
}

// sentinelServer checks a server of a sentinel pool: its label is its
// placement name, its master name defaults to the label, and it has no
// address of its own.
func (c *checker) sentinelServer(rs *rawServer) *Server {
	s := &Server{Name: rs.Label, Weight: deref(rs.Weight, 1), Named: true, Master: deref(rs.Master, rs.Label)}
	if err := checkName(rs.Label); err != nil {
		c.errorf(rs.LabelRange, "Invalid server name", "%s.", err)
	}
	if rs.Address != nil {
		c.errorf(rs.AddressRange, "Invalid attribute for a sentinel pool",
			"in a sentinel pool the sentinels give each server's address; the label (or master) is the Sentinel master name.")
	}
	if s.Master == "" || strings.ContainsAny(s.Master, " \r\n") {
		c.errorf(rs.MasterRange, "Invalid master name", "%q is not a Sentinel master name.", s.Master)
	}
	if s.Weight < 1 || s.Weight > MaxWeight {
		c.errorf(rs.WeightRange, "Invalid weight", "weight must be from 1 to %d (got %d).", MaxWeight, s.Weight)
		s.Weight = 1
	}
	return s
}

func (c *checker) server(rs *rawServer) *Server {
	s := &Server{Name: rs.Label, Weight: deref(rs.Weight, 1)}
	if err := checkName(rs.Label); err != nil {
		c.errorf(rs.LabelRange, "Invalid server name", "%s.", err)
	}
	addr, rng := rs.Label, rs.LabelRange
	if rs.Address != nil {
		addr, rng = *rs.Address, rs.AddressRange
		s.Named = *rs.Address != rs.Label
	}
	a, err := parseAddress(addr, addrServer)
	switch {
	case err == nil:
		s.Address = a
	case rs.Address == nil:
		c.errorf(rng, "Invalid server address",
			"%s. The label is the address unless the block sets address = \"host:port\".", err)
	default:
		c.errorf(rng, "Invalid server address", "%s.", err)
	}
	if s.Weight < 1 || s.Weight > MaxWeight {
		c.errorf(rs.WeightRange, "Invalid weight", "weight must be from 1 to %d (got %d).", MaxWeight, s.Weight)
		s.Weight = 1
	}
	return s
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
