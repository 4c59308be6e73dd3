// Package fakeserver provides in-process Redis and memcached backends whose
// faults a test controls: they can stall, reset, answer garbage, answer
// slowly, refuse connections and come back, so that the proxy's handling of
// each fault is tested deterministically (memcached's mock_server,
// style_reliability.md B.7 "test backends are controllable").
//
// Both speak just enough of their protocol for the proxy's tests: a
// key-value store with GET/SET/DEL/MGET/EXISTS/PING/AUTH/SELECT (Redis) and
// get/gets/set/add/delete/version (memcached). A GET of a key that was never
// set and starts with "echo:" answers the key itself, so a test can tag
// every request with a unique key and check that each reply is its own
// without writing first.
package fakeserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/memcache"
	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Protocol is the protocol a fake server speaks.
type Protocol int

// Protocols.
const (
	Redis Protocol = iota
	Memcache
)

// Mode is how a fake server treats the requests it reads.
type Mode int32

// Modes.
const (
	// Normal answers every request.
	Normal Mode = iota
	// Stall reads requests and never answers.
	Stall
	// Reset closes the connection with a TCP RST when a request arrives.
	Reset
	// Garbage answers every request with bytes that frame as no reply.
	Garbage
	// Slow answers each request after the delay set by SetDelay.
	Slow
)

// EchoPrefix marks keys whose GET answers the key itself when unset.
const EchoPrefix = "echo:"

// Server is one fake backend on a loopback port.
type Server struct {
	proto Protocol
	addr  string

	mode   atomic.Int32
	delay  atomic.Int64
	pushes atomic.Bool

	requests      atomic.Int64
	accepted      atomic.Int64
	commandsAsked atomic.Int64

	commandReply atomic.Pointer[[]byte]
	getLike      sync.Map // upper-case command name -> struct{}

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	data  map[string][]byte
	wg    sync.WaitGroup
}

// New starts a fake server on a free loopback port; it stops when t ends.
func New(t testing.TB, proto Protocol) *Server {
	t.Helper()
	s, err := Listen(proto, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fakeserver: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Listen starts a fake server on addr. The caller must Close it.
func Listen(proto Protocol, addr string) (*Server, error) {
	s := &Server{proto: proto, conns: map[net.Conn]struct{}{}, data: map[string][]byte{}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fakeserver: listen: %w", err)
	}
	s.addr = ln.Addr().String()
	s.start(ln)
	return s, nil
}

func (s *Server) start(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
}

// Addr is the server's host:port; it stays the same across Stop and Start.
func (s *Server) Addr() string { return s.addr }

// SetMode changes how requests are treated from now on, on every connection.
func (s *Server) SetMode(m Mode) { s.mode.Store(int32(m)) }

// SetDelay sets the delay of Slow mode.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// Requests is the number of requests read so far.
func (s *Server) Requests() int64 { return s.requests.Load() }

// SetPushes makes the server send a RESP3 push (a client-tracking
// invalidation) before every reply on connections that switched to RESP3
// with HELLO 3, as redis does for out-of-band data.
func (s *Server) SetPushes(on bool) { s.pushes.Store(on) }

// Accepted is the number of connections accepted so far.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// Conns is the number of connections open now.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// AdvertiseCommands makes the server answer COMMAND (and COMMAND INFO)
// with reply, and run the commands named in getLike as GET of their first
// argument. Without it COMMAND is an unknown command, as on a server that
// refuses it.
func (s *Server) AdvertiseCommands(reply []byte, getLike ...string) {
	s.commandReply.Store(&reply)
	for _, n := range getLike {
		s.getLike.Store(string(bytes.ToUpper([]byte(n))), struct{}{})
	}
}

// CommandsAsked counts the COMMAND requests the server received.
func (s *Server) CommandsAsked() int64 { return s.commandsAsked.Load() }

// HGetExReply is a COMMAND INFO reply, in RESP2, describing HGETEX as
// redis 8 does (a single key at argument 1: begin_search index 1,
// find_keys range lastkey 0 keystep 1 limit 0), plus a command whose keys
// the proxy cannot know (an unknown begin_search) and a blocking one.
const HGetExReply = "*3\r\n" +
	"*10\r\n$6\r\nhgetex\r\n:-5\r\n*2\r\n+write\r\n+fast\r\n:1\r\n:1\r\n:1\r\n" +
	"*2\r\n+@write\r\n+@hash\r\n*0\r\n" +
	"*1\r\n*6\r\n$5\r\nflags\r\n*3\r\n+RW\r\n+access\r\n+update\r\n" +
	"$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n" +
	"$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n" +
	"*0\r\n" +
	"*10\r\n$7\r\nmystery\r\n:-2\r\n*2\r\n+write\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n" +
	"*1\r\n*6\r\n$5\r\nflags\r\n*1\r\n+RW\r\n" +
	"$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$7\r\nunknown\r\n$4\r\nspec\r\n*0\r\n" +
	"$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$7\r\nunknown\r\n$4\r\nspec\r\n*0\r\n" +
	"*0\r\n" +
	"*10\r\n$7\r\nbhgetex\r\n:-3\r\n*2\r\n+write\r\n+blocking\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n" +
	"*1\r\n*6\r\n$5\r\nflags\r\n*1\r\n+RW\r\n" +
	"$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n" +
	"$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n" +
	"*0\r\n"

// Stop closes the listener and resets every connection: the server is
// down (connections are refused) until Start. Its data survives, as a
// backend's would across a network outage.
func (s *Server) Stop() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range conns {
		resetConn(c)
	}
	s.wg.Wait()
}

// Start listens again on the same address after Stop.
func (s *Server) Start() error {
	var ln net.Listener
	var err error
	// The port may linger for a moment after Stop.
	for range 100 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("fakeserver: restart: %w", err)
	}
	s.start(ln)
	return nil
}

// Flush drops every stored key, as a restarted backend without persistence.
func (s *Server) Flush() {
	s.mu.Lock()
	clear(s.data)
	s.mu.Unlock()
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		if s.ln != ln {
			s.mu.Unlock()
			resetConn(c)
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

var errBadRequest = errors.New("fakeserver: bad request")

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	rp := resp.NewRequestParser(resp.Limits{})
	// Values up to 128 MiB (memcached -I 128m): tests store large values
	// directly, past the proxy's 1 MiB.
	mp := memcache.NewRequestParser(memcache.Limits{MaxRetrievalLineLen: 4 << 20, MaxItemSize: 128 << 20})
	buf := make([]byte, 0, 64<<10)
	rd := make([]byte, 64<<10)
	var out []byte
	resp3 := false
	for {
		n, err := c.Read(rd)
		if n == 0 && err != nil {
			return
		}
		buf = append(buf, rd[:n]...)
		out = out[:0]
		for len(buf) > 0 {
			var used int
			if s.proto == Redis {
				used, out, err = s.redis(rp, buf, out, &resp3)
			} else {
				used, out, err = s.memcache(mp, buf, out)
			}
			if err != nil {
				return
			}
			if used == 0 {
				break
			}
			buf = buf[:copy(buf, buf[used:])]
			s.requests.Add(1)
			switch Mode(s.mode.Load()) {
			case Stall:
				out = out[:0]
			case Reset:
				resetConn(c)
				return
			case Garbage:
				out = append(out[:0], "\x00garbage\r\n"...)
			}
		}
		if len(out) == 0 {
			continue
		}
		if Mode(s.mode.Load()) == Slow {
			time.Sleep(time.Duration(s.delay.Load()))
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func (s *Server) get(key []byte) ([]byte, bool) {
	s.mu.Lock()
	v, ok := s.data[string(key)]
	s.mu.Unlock()
	if !ok && bytes.HasPrefix(key, []byte(EchoPrefix)) {
		return key, true
	}
	return v, ok
}

func (s *Server) set(key, val []byte) {
	s.mu.Lock()
	s.data[string(key)] = bytes.Clone(val)
	s.mu.Unlock()
}

func (s *Server) del(key []byte) bool {
	s.mu.Lock()
	_, ok := s.data[string(key)]
	delete(s.data, string(key))
	s.mu.Unlock()
	return ok
}

func (s *Server) redis(p *resp.RequestParser, buf, out []byte, resp3 *bool) (int, []byte, error) {
	n, args, _, err := p.Parse(buf)
	if err != nil {
		return 0, out, err
	}
	if n == 0 {
		return 0, out, nil
	}
	if len(args) == 0 {
		return n, out, nil
	}
	if *resp3 && s.pushes.Load() {
		out = append(out, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"...)
	}
	name := string(bytes.ToUpper(args[0]))
	if _, ok := s.getLike.Load(name); ok && len(args) > 1 {
		name = "GET"
	}
	switch name {
	case "HELLO":
		*resp3 = len(args) > 1 && string(args[1]) == "3"
		out = resp.AppendMapHeader(out, 1)
		out = resp.AppendBulkString(out, "proto")
		out = resp.AppendInt(out, map[bool]int64{true: 3, false: 2}[*resp3])
	case "COMMAND":
		s.commandsAsked.Add(1)
		if r := s.commandReply.Load(); r != nil {
			out = append(out, *r...)
		} else {
			out = resp.AppendError(out, "ERR unknown command '"+string(args[0])+"'")
		}
	case "PING":
		out = resp.AppendStatus(out, "PONG")
	case "AUTH", "SELECT":
		out = resp.AppendStatus(out, "OK")
	case "GET":
		if v, ok := s.get(args[1]); ok {
			out = resp.AppendBulk(out, v)
		} else {
			out = resp.AppendNull(out)
		}
	case "SET":
		s.set(args[1], args[2])
		out = resp.AppendStatus(out, "OK")
	case "MSET":
		for i := 1; i+1 < len(args); i += 2 {
			s.set(args[i], args[i+1])
		}
		out = resp.AppendStatus(out, "OK")
	case "MGET":
		out = resp.AppendArrayHeader(out, len(args)-1)
		for _, k := range args[1:] {
			if v, ok := s.get(k); ok {
				out = resp.AppendBulk(out, v)
			} else {
				out = resp.AppendNull(out)
			}
		}
	case "DEL", "UNLINK", "EXISTS", "TOUCH":
		var cnt int64
		for _, k := range args[1:] {
			if string(bytes.ToUpper(args[0])) == "DEL" || string(bytes.ToUpper(args[0])) == "UNLINK" {
				if s.del(k) {
					cnt++
				}
			} else if _, ok := s.get(k); ok {
				cnt++
			}
		}
		out = resp.AppendInt(out, cnt)
	default:
		out = resp.AppendError(out, "ERR unknown command '"+string(args[0])+"'")
	}
	return n, out, nil
}

func (s *Server) memcache(p *memcache.RequestParser, buf, out []byte) (int, []byte, error) {
	n, req, _, err := p.Parse(buf)
	if err != nil {
		var e *memcache.Error
		if errors.As(err, &e) && !e.Close && e.Skip > 0 && e.Skip <= len(buf) {
			return e.Skip, e.AppendReply(out), nil
		}
		return 0, out, errBadRequest
	}
	if n == 0 {
		return 0, out, nil
	}
	switch req.Cmd {
	case memcache.CmdGet, memcache.CmdGets:
		for _, k := range req.Keys {
			v, ok := s.get(k)
			if !ok {
				continue
			}
			out = append(out, "VALUE "...)
			out = append(out, k...)
			out = append(out, " 0 "...)
			out = strconv.AppendInt(out, int64(len(v)), 10)
			if req.Cmd == memcache.CmdGets {
				out = append(out, " 1"...)
			}
			out = append(out, "\r\n"...)
			out = append(out, v...)
			out = append(out, "\r\n"...)
		}
		out = append(out, "END\r\n"...)
	case memcache.CmdSet, memcache.CmdAdd, memcache.CmdReplace:
		if !req.Noreply {
			out = append(out, "STORED\r\n"...)
		}
		s.set(req.Keys[0], req.Data[:len(req.Data)-2])
	case memcache.CmdDelete:
		reply := "NOT_FOUND\r\n"
		if s.del(req.Keys[0]) {
			reply = "DELETED\r\n"
		}
		if !req.Noreply {
			out = append(out, reply...)
		}
	case memcache.CmdVersion:
		out = append(out, "VERSION 1.6.18-fake\r\n"...)
	default:
		out = append(out, "ERROR\r\n"...)
	}
	return n, out, nil
}
