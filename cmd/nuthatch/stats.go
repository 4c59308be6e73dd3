package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/stats"
)

const statsUsage = `Usage: nuthatch stats [-c FILE] [-json] [-once] [-i INTERVAL]

Reads the stats listener (stats.listen) of a running nuthatch and prints a
table per pool and server. Rates are measured between two reads INTERVAL
apart; with -once they are averages since the start. Latency (p99) comes
from the metrics listener when one is configured.

Options:
  -c FILE       configuration file (default %s)
  -json         print the stats document as served (twemproxy's format) and exit
  -once         read once; rates are averages since the start
  -i INTERVAL   time between the two reads (default 1s)
`

// statsTimeout bounds each read of the stats and metrics listeners.
const statsTimeout = 5 * time.Second

func statsCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nuthatch stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, statsUsage, config.DefaultPath) }
	file := fs.String("c", config.DefaultPath, "configuration file")
	asJSON := fs.Bool("json", false, "print the raw stats document")
	once := fs.Bool("once", false, "read once")
	interval := fs.Duration("i", time.Second, "time between the two reads")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nuthatch stats: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *interval <= 0 {
		fmt.Fprintf(stderr, "nuthatch stats: -i must be positive\n")
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	if cfg.Stats.Listen == "" {
		fmt.Fprintf(stderr, "nuthatch stats: the stats listener is disabled in %s (stats { listen = \"\" })\n", *file)
		return 1
	}
	addr := dialAddr(cfg.Stats.Listen)

	raw, err := fetchStats(addr)
	if err != nil {
		fmt.Fprintf(stderr, "nuthatch stats: %v\n", err)
		return 1
	}
	if *asJSON {
		stdout.Write(raw)
		return 0
	}
	in := tableInput{Addr: addr, Config: cfg, Interval: cfg.Stats.Interval}
	start := time.Now()
	if in.Cur, err = stats.Parse(raw); err != nil {
		fmt.Fprintf(stderr, "nuthatch stats: %s: %v\n", addr, err)
		return 1
	}
	in.CurLat = fetchLatency(cfg.Metrics.Listen)
	if !*once {
		time.Sleep(*interval)
		raw, err = fetchStats(addr)
		if err != nil {
			fmt.Fprintf(stderr, "nuthatch stats: %v\n", err)
			return 1
		}
		in.Elapsed = time.Since(start)
		in.Prev, in.PrevLat = in.Cur, in.CurLat
		if in.Cur, err = stats.Parse(raw); err != nil {
			fmt.Fprintf(stderr, "nuthatch stats: %s: %v\n", addr, err)
			return 1
		}
		in.CurLat = fetchLatency(cfg.Metrics.Listen)
	}
	if err := renderTable(stdout, in); err != nil {
		fmt.Fprintf(stderr, "nuthatch stats: %v\n", err)
		return 1
	}
	return 0
}

// dialAddr turns a listen address into one to connect to: a wildcard
// host means this host's loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// fetchStats reads one stats document: connect, read to EOF.
func fetchStats(addr string) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, statsTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(statsTimeout))
	b, err := io.ReadAll(io.LimitReader(c, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", addr, err)
	}
	return b, nil
}

// latencies are cumulative latency histograms keyed by "pool" or
// "pool\x00server" (server block labels).
type latencies map[string]*dto.Histogram

func latencyKey(pool, server string) string {
	if server == "" {
		return pool
	}
	return pool + "\x00" + server
}

// fetchLatency scrapes the metrics listener for the latency histograms;
// nil when there is none or it cannot be read (the column is then left
// out).
func fetchLatency(listen string) latencies {
	if listen == "" {
		return nil
	}
	client := &http.Client{Timeout: statsTimeout}
	resp, err := client.Get("http://" + dialAddr(listen) + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	return parseLatency(resp.Body)
}

func parseLatency(r io.Reader) latencies {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil
	}
	out := latencies{}
	for name, server := range map[string]bool{
		"nuthatch_pool_request_duration_seconds":   false,
		"nuthatch_server_request_duration_seconds": true,
	} {
		mf := mfs[name]
		if mf == nil {
			continue
		}
		for _, m := range mf.GetMetric() {
			var pool, srv string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "pool":
					pool = l.GetValue()
				case "server":
					srv = l.GetValue()
				}
			}
			if server != (srv != "") || m.GetHistogram() == nil {
				continue
			}
			out[latencyKey(pool, srv)] = m.GetHistogram()
		}
	}
	return out
}

// p99 is the 99th percentile of the observations between prev and cur
// (of cur alone when prev is nil): the upper bound of the bucket that
// holds it. ok is false when there are no observations.
func p99(prev, cur *dto.Histogram) (string, bool) {
	if cur == nil {
		return "", false
	}
	total := cur.GetSampleCount()
	prevAt := map[float64]uint64{}
	if prev != nil && prev.GetSampleCount() <= total {
		total -= prev.GetSampleCount()
		for _, b := range prev.GetBucket() {
			prevAt[b.GetUpperBound()] = b.GetCumulativeCount()
		}
	}
	if total == 0 {
		return "", false
	}
	rank := uint64(math.Ceil(0.99 * float64(total)))
	for _, b := range cur.GetBucket() {
		n := b.GetCumulativeCount() - min(prevAt[b.GetUpperBound()], b.GetCumulativeCount())
		if n >= rank {
			return formatSeconds(b.GetUpperBound()), true
		}
	}
	buckets := cur.GetBucket()
	if len(buckets) == 0 {
		return "", false
	}
	return ">" + formatSeconds(buckets[len(buckets)-1].GetUpperBound()), true
}

func formatSeconds(s float64) string {
	us := int64(math.Round(s * 1e6))
	switch {
	case us < 1000:
		return strconv.FormatInt(us, 10) + "us"
	case us < 1_000_000:
		return strconv.FormatFloat(float64(us)/1e3, 'f', -1, 64) + "ms"
	default:
		return strconv.FormatFloat(float64(us)/1e6, 'f', -1, 64) + "s"
	}
}

// tableInput is everything the table shows.
type tableInput struct {
	Addr     string
	Config   *config.Config // maps stats server names to metric labels
	Interval time.Duration  // how often the master refreshes its totals
	Prev     *stats.Document
	Cur      *stats.Document
	Elapsed  time.Duration // between the reads of Prev and Cur
	PrevLat  latencies
	CurLat   latencies
}

// renderTable prints one row per pool, then one per server below it.
//
//	CONNS     client connections (pool) or server connections (server)
//	REQUESTS  requests sent to servers
//	REQ/S     over the interval, or the average since the start (-once)
//	P99       request latency, when the metrics listener is configured
//	ERRORS    client_err + forward_error (pool), server_err + server_eof (server)
//	TIMEOUTS  server_timedout
//	EJECTED   server_ejects (pool), time since the last ejection (server)
//	IN_Q      requests waiting to be sent; OUT_Q requests awaiting replies
func renderTable(w io.Writer, in tableInput) error {
	cur := in.Cur
	mode := fmt.Sprintf("rates over %s", in.Elapsed.Round(time.Millisecond))
	if in.Prev == nil {
		mode = "rates are averages since the start"
	}
	fmt.Fprintf(w, "nuthatch stats %s  source %s  version %s  uptime %s  %s\n",
		in.Addr, cur.Source, cur.Version, time.Duration(cur.Uptime)*time.Second, mode)
	if in.Prev != nil && in.Elapsed < in.Interval && sameCounters(in.Prev, cur) {
		fmt.Fprintf(w, "note: no counter moved; the master refreshes them every %s (stats interval), so use -i %s or -once\n",
			in.Interval, in.Interval)
	}
	fmt.Fprintln(w)

	showLat := in.CurLat != nil
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "POOL/SERVER\tCONNS\tREQUESTS\tREQ/S\t"
	if showLat {
		header += "P99\t"
	}
	header += "ERRORS\tTIMEOUTS\tEJECTED\tIN_Q\tOUT_Q"
	fmt.Fprintln(tw, header)

	rate := func(before, now int64) string {
		if in.Prev == nil {
			if cur.Uptime <= 0 {
				return "-"
			}
			return strconv.FormatFloat(float64(now)/float64(cur.Uptime), 'f', 1, 64)
		}
		if in.Elapsed <= 0 || now < before {
			return "-"
		}
		return strconv.FormatFloat(float64(now-before)/in.Elapsed.Seconds(), 'f', 1, 64)
	}
	lat := func(pool, server string) string {
		var prev *dto.Histogram
		if in.PrevLat != nil {
			prev = in.PrevLat[latencyKey(pool, server)]
		}
		if s, ok := p99(prev, in.CurLat[latencyKey(pool, server)]); ok {
			return s
		}
		return "-"
	}
	for _, p := range configOrder(in.Config, cur) {
		var prevPool *stats.DocPool
		if in.Prev != nil {
			prevPool = in.Prev.Pool(p.Name)
		}
		var reqs, prevReqs, timeouts, inq, outq int64
		for _, s := range p.Servers {
			reqs += s.Get("requests")
			timeouts += s.Get("server_timedout")
			inq += s.Get("in_queue")
			outq += s.Get("out_queue")
			if prevPool != nil {
				if ps := prevPool.Server(s.Name); ps != nil {
					prevReqs += ps.Get("requests")
				}
			}
		}
		row := []string{p.Name, num(p.Get("client_connections")), num(reqs), rate(prevReqs, reqs)}
		if showLat {
			row = append(row, lat(p.Name, ""))
		}
		row = append(row, num(p.Get("client_err")+p.Get("forward_error")), num(timeouts),
			num(p.Get("server_ejects")), num(inq), num(outq))
		fmt.Fprintln(tw, strings.Join(row, "\t"))

		for _, s := range p.Servers {
			var prevReq int64
			if prevPool != nil {
				if ps := prevPool.Server(s.Name); ps != nil {
					prevReq = ps.Get("requests")
				}
			}
			label := "  " + s.Name
			if m := s.Strings["master"]; m != "" && m != s.Name {
				label += " (" + m + ")" // a Sentinel server's current master
			}
			switch role := s.Strings["role"]; role {
			case "": // not a cluster node
			case "replica":
				label += " [replica of " + s.Strings["replica_of"] + "]"
			default:
				label += " [" + role + ", " + num(s.Get("slots")) + " slots]"
			}
			row := []string{label, num(s.Get("server_connections")), num(s.Get("requests")), rate(prevReq, s.Get("requests"))}
			if showLat {
				row = append(row, lat(p.Name, serverLabel(in.Config, p.Name, s.Name)))
			}
			row = append(row, num(s.Get("server_err")+s.Get("server_eof")), num(s.Get("server_timedout")),
				ejectedAgo(s.Get("server_ejected_at"), cur.Timestamp), num(s.Get("in_queue")), num(s.Get("out_queue")))
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	return tw.Flush()
}

// configOrder lists the document's pools and servers in configuration
// order (the document has twemproxy's name order); anything the
// configuration lacks follows in document order.
func configOrder(cfg *config.Config, d *stats.Document) []*rowPool {
	var out []*rowPool
	seen := map[string]bool{}
	add := func(p *stats.DocPool) {
		rp := &rowPool{DocPool: p}
		done := map[string]bool{}
		if cfg != nil {
			for _, cp := range cfg.Pools {
				if cp.Name != p.Name {
					continue
				}
				for _, cs := range cp.Servers {
					if s := p.Server(cs.PlacementName()); s != nil && !done[s.Name] {
						rp.Servers = append(rp.Servers, s)
						done[s.Name] = true
					}
				}
			}
		}
		for i := range p.Servers {
			if !done[p.Servers[i].Name] {
				rp.Servers = append(rp.Servers, &p.Servers[i])
			}
		}
		out = append(out, rp)
		seen[p.Name] = true
	}
	if cfg != nil {
		for _, cp := range cfg.Pools {
			if p := d.Pool(cp.Name); p != nil {
				add(p)
			}
		}
	}
	for i := range d.Pools {
		if !seen[d.Pools[i].Name] {
			add(&d.Pools[i])
		}
	}
	return out
}

// rowPool is a pool with its servers in display order.
type rowPool struct {
	*stats.DocPool
	Servers []*stats.DocServer
}

func num(v int64) string { return strconv.FormatInt(v, 10) }

// ejectedAgo shows a server_ejected_at (unix µs) relative to the
// document's timestamp (unix s).
func ejectedAgo(atUs, now int64) string {
	if atUs <= 0 {
		return "-"
	}
	ago := time.Duration(now)*time.Second - time.Duration(atUs)*time.Microsecond
	if ago < 0 {
		ago = 0
	}
	return ago.Round(time.Second).String() + " ago"
}

// serverLabel maps the name the stats document prints (the placement
// name) to the server's block label, which the metrics use.
func serverLabel(cfg *config.Config, pool, name string) string {
	if cfg == nil {
		return name
	}
	for _, p := range cfg.Pools {
		if p.Name != pool {
			continue
		}
		for _, s := range p.Servers {
			if s.PlacementName() == name {
				return s.Name
			}
		}
	}
	return name
}

// sameCounters reports whether no pool or server value differs.
func sameCounters(a, b *stats.Document) bool {
	if len(a.Pools) != len(b.Pools) {
		return false
	}
	for i := range a.Pools {
		pa, pb := &a.Pools[i], &b.Pools[i]
		if pa.Name != pb.Name || !slices.Equal(pa.Fields, pb.Fields) || len(pa.Servers) != len(pb.Servers) {
			return false
		}
		for j := range pa.Servers {
			if !slices.Equal(pa.Servers[j].Fields, pb.Servers[j].Fields) {
				return false
			}
		}
	}
	return true
}
