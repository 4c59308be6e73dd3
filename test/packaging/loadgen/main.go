// Command loadgen drives a Redis and a memcache pool of nuthatch with
// round trips on raw sockets, counting every request that does not get its
// correct reply, until it is interrupted (SIGINT or SIGTERM); then it prints
// a JSON summary on stdout. The package tests run it in a container's
// network namespace while the package is reloaded and upgraded.
//
// Each connection does SET then GET of its own key and checks the value, and
// is replaced by a new one every -reconnect requests, so that the run keeps
// opening connections too. A request whose connection turns out to be closed
// before any byte of its reply arrives is retried once on a new connection,
// as client libraries do (a draining server may close an idle connection);
// everything else is a failure: a refused or timed out connect, a wrong or
// missing reply, a connection lost mid-reply, a failed retry.
//
// With -probe it sends one PING and one memcache "version" and prints the
// replies, exiting 1 if either fails.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type summary struct {
	OK       int64    `json:"ok"`
	Failed   int64    `json:"failed"`
	Retried  int64    `json:"retried"`
	Connects int64    `json:"connects"`
	Errors   []string `json:"errors,omitempty"`
}

type stats struct {
	ok, failed, retried, connects atomic.Int64
	mu                            sync.Mutex
	errs                          map[string]int
}

func (s *stats) fail(err error) {
	s.failed.Add(1)
	s.mu.Lock()
	s.errs[err.Error()]++
	s.mu.Unlock()
}

func main() {
	redisAddr := flag.String("redis", "", "address of a Redis pool")
	mcAddr := flag.String("memcache", "", "address of a memcache pool")
	conns := flag.Int("conns", 4, "connections per pool")
	reconnect := flag.Int("reconnect", 50, "requests per connection before it is replaced")
	timeout := flag.Duration("timeout", 5*time.Second, "dial and reply timeout")
	probe := flag.Bool("probe", false, "one PING and one memcache version, then exit")
	tlsCA := flag.String("tls-ca", "", "speak TLS, verifying the proxy's certificate with this CA file")
	tlsName := flag.String("tls-name", "localhost", "name the proxy's certificate must have (with -tls-ca)")
	flag.Parse()
	if *tlsCA != "" {
		if err := useTLS(*tlsCA, *tlsName); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
	}

	if *probe {
		os.Exit(runProbe(*redisAddr, *mcAddr, *timeout))
	}

	st := &stats{errs: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range []struct {
		addr string
		rt   roundTrip
	}{{*redisAddr, redisRT}, {*mcAddr, memcacheRT}} {
		if p.addr == "" {
			continue
		}
		for i := 0; i < *conns; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run(p.addr, p.rt, fmt.Sprintf("loadgen:%d:%d", os.Getpid(), i), *reconnect, *timeout, st, stop)
			}()
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	fmt.Fprintln(os.Stderr, "loadgen: running")
	<-sig
	close(stop)
	wg.Wait()

	out := summary{OK: st.ok.Load(), Failed: st.failed.Load(), Retried: st.retried.Load(), Connects: st.connects.Load()}
	for e, n := range st.errs {
		out.Errors = append(out.Errors, fmt.Sprintf("%dx %s", n, e))
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// roundTrip writes the request for key/value and checks the reply.
type roundTrip func(c *conn, key, val string) error

// errClosedEarly: the connection ended before any byte of the reply.
var errClosedEarly = errors.New("connection closed before the reply")

type conn struct {
	net.Conn
	r       *bufio.Reader
	timeout time.Duration
	got     bool // some reply byte arrived on this request
}

// tlsConfig, when set (-tls-ca), makes every connection TLS.
var tlsConfig *tls.Config

func dial(addr string, timeout time.Duration) (*conn, error) {
	var c net.Conn
	var err error
	if tlsConfig != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, tlsConfig)
	} else {
		c, err = net.DialTimeout("tcp", addr, timeout)
	}
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, r: bufio.NewReader(c), timeout: timeout}, nil
}

// useTLS reads the CA that verifies the proxy's certificate.
func useTLS(caFile, name string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", caFile)
	}
	tlsConfig = &tls.Config{RootCAs: pool, ServerName: name}
	return nil
}

func (c *conn) send(req string) error {
	c.got = false
	c.SetDeadline(time.Now().Add(c.timeout))
	_, err := io.WriteString(c, req)
	return err
}

func (c *conn) line() (string, error) {
	s, err := c.r.ReadString('\n')
	if len(s) > 0 {
		c.got = true
	}
	if err != nil {
		if !c.got && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			return "", errClosedEarly
		}
		return "", err
	}
	return strings.TrimSuffix(s, "\r\n"), nil
}

func run(addr string, rt roundTrip, key string, reconnect int, timeout time.Duration, st *stats, stop chan struct{}) {
	var c *conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		if c != nil && n%reconnect == 0 {
			c.Close()
			c = nil
		}
		val := strconv.Itoa(n)
		var err error
		for attempt := 0; attempt < 2; attempt++ {
			if c == nil {
				if c, err = dial(addr, timeout); err != nil {
					c = nil
					break // a refused or hanging connect is a failure
				}
				st.connects.Add(1)
			}
			if err = rt(c, key, val); err == nil {
				break
			}
			c.Close()
			c = nil
			if !errors.Is(err, errClosedEarly) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
				break
			}
			if attempt == 0 {
				st.retried.Add(1)
			}
		}
		if err != nil {
			st.fail(fmt.Errorf("%s: %w", addr, err))
			continue
		}
		st.ok.Add(1)
	}
}

func redisRT(c *conn, key, val string) error {
	req := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n",
		len(key), key, len(val), val, len(key), key)
	if err := c.send(req); err != nil {
		return err
	}
	if l, err := c.line(); err != nil {
		return err
	} else if l != "+OK" {
		return fmt.Errorf("SET: reply %q", l)
	}
	if l, err := c.line(); err != nil {
		return err
	} else if l != "$"+strconv.Itoa(len(val)) {
		return fmt.Errorf("GET: reply %q", l)
	}
	if l, err := c.line(); err != nil {
		return err
	} else if l != val {
		return fmt.Errorf("GET: value %q, want %q", l, val)
	}
	return nil
}

func memcacheRT(c *conn, key, val string) error {
	req := fmt.Sprintf("set %s 0 0 %d\r\n%s\r\nget %s\r\n", key, len(val), val, key)
	if err := c.send(req); err != nil {
		return err
	}
	want := []string{"STORED", fmt.Sprintf("VALUE %s 0 %d", key, len(val)), val, "END"}
	for _, w := range want {
		l, err := c.line()
		if err != nil {
			return err
		}
		if l != w {
			return fmt.Errorf("reply %q, want %q", l, w)
		}
	}
	return nil
}

func runProbe(redisAddr, mcAddr string, timeout time.Duration) int {
	code := 0
	check := func(name, addr, req string) {
		if addr == "" {
			return
		}
		c, err := dial(addr, timeout)
		if err == nil {
			defer c.Close()
			if err = c.send(req); err == nil {
				var l string
				if l, err = c.line(); err == nil {
					if tc, ok := c.Conn.(*tls.Conn); ok {
						// Which certificate answered: a reload swaps it.
						st := tc.ConnectionState()
						l += fmt.Sprintf(" (tls serial %s)", st.PeerCertificates[0].SerialNumber)
					}
					fmt.Printf("%s: %s\n", name, l)
					return
				}
			}
		}
		fmt.Printf("%s: error: %v\n", name, err)
		code = 1
	}
	check("redis", redisAddr, "PING\r\n")
	check("memcache", mcAddr, "version\r\n")
	return code
}
