package respconn

import (
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"
)

// FuzzDecode: whatever a sentinel sends, a framed reply decodes without
// panicking, and SENTINEL MASTER's field reader takes any value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n$4\r\n6379\r\n",
		"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$5\r\nm a b\r\n",
		"-ERR No such master with that name\r\n", "*-1\r\n", "$-1\r\n", ":12\r\n", "+OK\r\n",
		"*2\r\n%1\r\n+a\r\n+b\r\n_\r\n", "*1\r\n*1\r\n*1\r\n$1\r\nx\r\n", "~1\r\n,1.5\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _, err := resp.ReplyLen(b, Limits)
		if err != nil || n == 0 {
			return
		}
		v, used := Decode(b[:n])
		if used > n {
			t.Fatalf("decode used %d of %d bytes", used, n)
		}
		_ = Fields(v)
	})
}

func TestDecode(t *testing.T) {
	v, _ := Decode([]byte("*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n$4\r\n6379\r\n"))
	f := Fields(v)
	if f["ip"] != "127.0.0.1" || f["port"] != "6379" {
		t.Fatalf("fields = %v", f)
	}
	if _, ok := func() (any, int) { return Decode([]byte("-ERR x\r\n")) }(); ok == 0 {
		t.Fatal("no bytes used")
	}
	if e, _ := Decode([]byte("-ERR x\r\n")); e != ReplyError("ERR x") {
		t.Fatalf("error reply = %#v", e)
	}
}
