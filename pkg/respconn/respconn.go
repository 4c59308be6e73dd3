// Package respconn is a small blocking RESP2 client for the master
// process's conversations with sentinels and cluster nodes: one command at
// a time, replies framed by pkg/proto/resp with bounded sizes.
package respconn

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// Conn is a RESP2 connection to a sentinel or a data node, used from one
// goroutine at a time.
type Conn struct {
	C   net.Conn
	r   *bufio.Reader
	buf []byte
}

// ReplyError is an error reply ("-ERR ...").
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Limits bound what a peer may send in one reply.
var Limits = resp.Limits{MaxBulkLen: 1 << 20, MaxArrayLen: 1 << 16, MaxDepth: 8}

const maxReply = 4 << 20

// Dial connects and authenticates when pass is set.
func Dial(addr string, timeout time.Duration, user, pass string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	cn := &Conn{C: c, r: bufio.NewReaderSize(c, 16<<10)}
	if pass != "" {
		args := []string{"AUTH", pass}
		if user != "" {
			args = []string{"AUTH", user, pass}
		}
		if _, err := cn.Do(timeout, args...); err != nil {
			c.Close()
			return nil, fmt.Errorf("respconn: AUTH at %s: %w", addr, err)
		}
	}
	return cn, nil
}

// Close closes the connection.
func (c *Conn) Close() { c.C.Close() }

// Do sends one command and returns its decoded reply; an error reply is a
// ReplyError.
func (c *Conn) Do(timeout time.Duration, args ...string) (any, error) {
	c.C.SetDeadline(time.Now().Add(timeout))
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	if _, err := c.C.Write(resp.AppendCommand(nil, bs)); err != nil {
		return nil, err
	}
	v, err := c.Read()
	if err != nil {
		return nil, err
	}
	if re, ok := v.(ReplyError); ok {
		return nil, re
	}
	return v, nil
}

// Read reads one reply (the deadline is the caller's).
func (c *Conn) Read() (any, error) {
	for {
		if len(c.buf) > 0 {
			n, _, err := resp.ReplyLen(c.buf, Limits)
			if err != nil {
				return nil, err
			}
			if n > 0 {
				v, _ := Decode(c.buf[:n])
				c.buf = c.buf[:copy(c.buf, c.buf[n:])]
				return v, nil
			}
		}
		if len(c.buf) > maxReply {
			return nil, errors.New("respconn: reply too large")
		}
		var chunk [4096]byte
		n, err := c.r.Read(chunk[:])
		c.buf = append(c.buf, chunk[:n]...)
		if err != nil {
			return nil, err
		}
	}
}

// Decode turns one framed reply into Go values: string, int64, nil,
// ReplyError, []any (RESP3 types other than null become nil). It returns
// the bytes used, and never reads past b, whatever b holds.
func Decode(b []byte) (any, int) {
	end := 0
	for end < len(b) && b[end] != '\n' {
		end++
	}
	if end < 2 || end >= len(b) {
		return nil, len(b)
	}
	line := string(b[1 : end-1])
	next := end + 1
	switch b[0] {
	case '+':
		return line, next
	case '-':
		return ReplyError(line), next
	case ':':
		n, _ := strconv.ParseInt(line, 10, 64)
		return n, next
	case '$':
		n, err := strconv.Atoi(line)
		if err != nil || n < 0 || next+n+2 > len(b) {
			return nil, min(next, len(b))
		}
		return string(b[next : next+n]), next + n + 2
	case '*':
		n, err := strconv.Atoi(line)
		if err != nil || n < 0 {
			return nil, next
		}
		out := make([]any, 0, min(n, 64))
		for i := 0; i < n && next < len(b); i++ {
			v, used := Decode(b[next:])
			out = append(out, v)
			next += used
		}
		return out, next
	}
	return nil, next
}

// Fields reads a flat field/value array (SENTINEL MASTER) into a map.
func Fields(v any) map[string]string {
	arr, _ := v.([]any)
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		m[k] = val
	}
	return m
}
