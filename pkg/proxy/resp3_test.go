package proxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// readOneReply reads one complete reply, a byte at a time.
func readOneReply(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var buf []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			t.Fatalf("reading a reply after %q: %v", buf, err)
		}
		buf = append(buf, b)
		if n, _, err := resp.ReplyLen(buf, resp.Limits{}); err != nil {
			t.Fatalf("bad reply %q: %v", buf, err)
		} else if n > 0 {
			return string(buf)
		}
	}
}

// A RESP3 push a server sends on a shared link (out-of-band data, such as
// a tracking invalidation) is no reply to any request: it is dropped, and
// every client still gets its own reply, in both protocol versions.
func TestRESP3PushesOnSharedLinksDropped(t *testing.T) {
	tp := startTestProxy(t, "redis", 2, `  timeout = "2s"`)
	for _, be := range tp.backends {
		be.SetPushes(true)
	}
	for _, tc := range []struct{ hello, want string }{
		{"", ""},
		{"HELLO 3\r\n", "%7\r\n"},
	} {
		c, err := net.DialTimeout("tcp", tp.addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.hello != "" {
			c.Write([]byte(tc.hello))
			if got := readOneReply(t, r); got[:len(tc.want)] != tc.want {
				t.Fatalf("HELLO: %q", got)
			}
		}
		req, want := "", ""
		for _, k := range []string{"echo:a", "echo:b", "echo:c", "echo:d"} {
			req += "GET " + k + "\r\n"
			want += "$6\r\n" + k + "\r\n"
		}
		req += "MGET echo:a echo:b echo:c\r\n"
		want += "*3\r\n$6\r\necho:a\r\n$6\r\necho:b\r\n$6\r\necho:c\r\n"
		c.Write([]byte(req))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
			t.Fatalf("hello %q: got %q (%v), want %q", tc.hello, got, err, want)
		}
	}
}

// replaySafe reads SET's options: a SET of any length must not panic.
func TestReplaySafeArity(t *testing.T) {
	set, _ := resp.Lookup([]byte("set"))
	for _, args := range [][][]byte{
		{[]byte("SET")}, {[]byte("SET"), []byte("k")}, {[]byte("SET"), []byte("k"), []byte("v")},
		{[]byte("SET"), []byte("k"), []byte("v"), []byte("nx")},
	} {
		got := replaySafe(set, args)
		want := len(args) == 3
		if got != want {
			t.Errorf("replaySafe(%q) = %v, want %v", args, got, want)
		}
	}
}
