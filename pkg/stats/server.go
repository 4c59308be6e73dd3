package stats

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Limits of the stats listener. A client that does not read its document
// within statsWriteTimeout is dropped; at most maxStatsConns are served at
// once, the others wait in the listen backlog.
const (
	statsWriteTimeout = 5 * time.Second
	statsLingerTime   = 500 * time.Millisecond
	statsDrainLimit   = 64 << 10
	maxStatsConns     = 64
)

// ServeStats serves ln as twemproxy serves its stats port: to every client
// that connects it writes render()'s document and closes the connection;
// nothing is read from the client. It returns nil once ln is closed and
// every connection in progress is done.
func ServeStats(ln net.Listener, render func() []byte) error {
	sem := make(chan struct{}, maxStatsConns)
	var wg sync.WaitGroup
	defer wg.Wait()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors and the like: wait and retry, as
			// net/http does, rather than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			serveStatsConn(conn, render)
		}()
	}
}

type closeWriter interface{ CloseWrite() error }

func serveStatsConn(conn net.Conn, render func() []byte) {
	defer conn.Close()
	doc := render()
	conn.SetWriteDeadline(time.Now().Add(statsWriteTimeout))
	if _, err := conn.Write(doc); err != nil {
		return
	}
	// Half-close, then discard whatever the client sent (some scripts
	// send "stats\n"): closing with unread input would reset the
	// connection and could destroy the document before it is read.
	if cw, ok := conn.(closeWriter); ok && cw.CloseWrite() == nil {
		conn.SetReadDeadline(time.Now().Add(statsLingerTime))
		io.CopyN(io.Discard, conn, statsDrainLimit)
	}
}
