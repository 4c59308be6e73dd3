package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// startRedis starts a throwaway redis-server on a free port, with args added
// to its command line, and returns its address. The server is killed when the test ends.
func startRedis(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed; skipping comparison with the real server")
	}
	for attempt := 0; attempt < 5; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		dir := t.TempDir()
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", dir+"/redis.log")
		cmd.Args = append(cmd.Args, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				return addr
			}
		}
		_ = cmd.Process.Kill() // port taken meanwhile; try another
	}
	t.Fatal("redis-server did not start")
	return ""
}

// rawExchange sends in on a new connection and returns everything the server
// wrote until it closed the connection or went quiet for quiet.
func rawExchange(t *testing.T, addr string, in []byte, quiet time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(in); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			var ne net.Error
			if errors.Is(err, io.EOF) || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, net.ErrClosed) {
				return out.Bytes()
			}
			return out.Bytes() // connection reset after a protocol error
		}
	}
}

// redisConn is a minimal client built on this package's codec.
type redisConn struct {
	c  net.Conn
	r  *bufio.Reader
	rb []byte
}

func dialRedis(t *testing.T, addr string) *redisConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &redisConn{c: c, r: bufio.NewReader(c)}
}

// do sends a command and returns its raw reply.
func (rc *redisConn) do(t *testing.T, args ...string) []byte {
	t.Helper()
	bargs := make([][]byte, len(args))
	for i, a := range args {
		bargs[i] = []byte(a)
	}
	if _, err := rc.c.Write(AppendCommand(nil, bargs)); err != nil {
		t.Fatal(err)
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var s ReplyScanner
	rc.rb = rc.rb[:0]
	tmp := make([]byte, 64<<10)
	for {
		n, _, err := s.Scan(rc.rb)
		if err != nil {
			t.Fatalf("reply to %q: %v", args, err)
		}
		if n > 0 {
			return append([]byte(nil), rc.rb[:n]...)
		}
		m, err := rc.r.Read(tmp)
		if err != nil {
			t.Fatalf("reply to %q: %v", args, err)
		}
		rc.rb = append(rc.rb, tmp[:m]...)
	}
}

// decode turns a complete reply into Go values: string for status, bulk,
// verbatim (without its format), double and big number, error for errors,
// int64, bool, nil for nulls and []any for arrays, sets, pushes and maps
// (keys and values in turn). Attributes are dropped.
func decode(reply []byte) any {
	for reply[0] == TypeAttribute {
		var s ReplyScanner
		skip, err := s.skipAttributes(reply)
		if err != nil {
			panic(err)
		}
		reply = reply[skip:]
	}
	switch reply[0] {
	case TypeStatus, TypeDouble, TypeBigNumber:
		return string(reply[1 : len(reply)-2])
	case TypeError:
		return errors.New(string(reply[1 : len(reply)-2]))
	case TypeInt:
		v, _ := ParseInt(reply)
		return v
	case TypeNull:
		return nil
	case TypeBool:
		return reply[1] == 't'
	case TypeBulk, TypeVerbatim, TypeBlobError:
		if reply[1] == '-' {
			return nil
		}
		i := bytes.IndexByte(reply, '\n')
		data := string(reply[i+1 : len(reply)-2])
		switch reply[0] {
		case TypeVerbatim:
			return data[4:]
		case TypeBlobError:
			return errors.New(data)
		}
		return data
	case TypeArray, TypeSet, TypePush, TypeMap:
		if reply[1] == '-' {
			return nil
		}
		out := []any{}
		if err := ArrayElems(reply, func(e []byte) bool {
			out = append(out, decode(e))
			return true
		}); err != nil {
			panic(err)
		}
		return out
	}
	panic(fmt.Sprintf("decode %q", reply))
}
