package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Preload stores keys KeyName(prefix, 0..keys-1), each with a value of
// size bytes, on the server at addr, pipelined, and fails on any error
// reply.
func Preload(ctx context.Context, p Protocol, addr, prefix string, keys, size int) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("load: preload: %w", err)
	}
	defer conn.Close()
	s := &Spec{Protocol: p, Op: Set, KeyPrefix: prefix, Keys: keys, ValueSize: size}
	value := make([]byte, size)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	c := newClient(s, conn, 1, value)
	const batch = 200
	for k := 0; k < keys; k += batch {
		c.wbuf = c.wbuf[:0]
		n := min(batch, keys-k)
		for i := range n {
			if p == Redis {
				c.wbuf = appendRedis(c.wbuf, "SET", prefix, []int{k + i}, value)
			} else {
				c.wbuf = appendMemcacheSet(c.wbuf, prefix, k+i, value)
			}
		}
		if _, err := conn.Write(c.wbuf); err != nil {
			return fmt.Errorf("load: preload %s: %w", addr, err)
		}
		for range n {
			r, err := c.next()
			if err != nil {
				return fmt.Errorf("load: preload %s: %w", addr, err)
			}
			if r != replyOK {
				return fmt.Errorf("load: preload %s: the server refused a set", addr)
			}
		}
	}
	return nil
}

// IdleSet is a set of open, idle client connections.
type IdleSet struct{ conns []net.Conn }

// Close closes every connection.
func (s *IdleSet) Close() {
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// Len is the number of open connections.
func (s *IdleSet) Len() int { return len(s.conns) }

// OpenIdle opens n connections to addr. With warm, each one first sends
// one get of key 0 under prefix and reads the reply, as a pooled client
// connection would have done before going idle.
func OpenIdle(ctx context.Context, p Protocol, addr, prefix string, n int, warm bool) (*IdleSet, error) {
	conns := make([]net.Conn, n)
	const dialers = 32
	errs := make([]error, dialers)
	var wg sync.WaitGroup
	for w := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n && errs[w] == nil; i += dialers {
				conns[i], errs[w] = openOne(ctx, p, addr, prefix, warm)
				if errs[w] != nil {
					errs[w] = fmt.Errorf("load: idle client %d: %w", i, errs[w])
				}
			}
		}()
	}
	wg.Wait()
	s := &IdleSet{}
	for _, c := range conns {
		if c != nil {
			s.conns = append(s.conns, c)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openOne(ctx context.Context, p Protocol, addr, prefix string, warm bool) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || !warm {
		return conn, err
	}
	c := newClient(&Spec{Protocol: p, Op: Get, KeyPrefix: prefix, Keys: 1}, conn, 1, nil)
	c.rbuf = make([]byte, 4<<10)
	c.wbuf = c.appendRequest(nil)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(c.wbuf); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := c.next(); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}
