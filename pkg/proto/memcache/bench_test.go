package memcache

import (
	"strings"
	"testing"
)

func benchParse(b *testing.B, in string) {
	p := NewRequestParser(Limits{})
	buf := []byte(in)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		n, _, _, err := p.Parse(buf)
		if err != nil || n != len(buf) {
			b.Fatalf("n=%d err=%v", n, err)
		}
	}
}

func BenchmarkParseGet(b *testing.B) {
	benchParse(b, "get user:1234567890:profile\r\n")
}

func BenchmarkParseSet(b *testing.B) {
	benchParse(b, "set user:1234567890:profile 0 3600 100 noreply\r\n"+strings.Repeat("v", 100)+"\r\n")
}

func BenchmarkParseMultiGet10(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("get")
	for i := 0; i < 10; i++ {
		sb.WriteString(" user:1234567890:profile:")
		sb.WriteByte(byte('0' + i))
	}
	sb.WriteString("\r\n")
	benchParse(b, sb.String())
}

func BenchmarkParseMetaGet(b *testing.B) {
	benchParse(b, "mg user:1234567890:profile s v f t c q Oopaque\r\n")
}

func BenchmarkReplyLenMultiGet10(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 10; i++ {
		sb.WriteString("VALUE user:1234567890:profile:")
		sb.WriteByte(byte('0' + i))
		sb.WriteString(" 0 100\r\n")
		sb.WriteString(strings.Repeat("v", 100))
		sb.WriteString("\r\n")
	}
	sb.WriteString("END\r\n")
	buf := []byte(sb.String())
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		n, _, _, err := ReplyLen(CmdGet, buf)
		if err != nil || n != len(buf) {
			b.Fatalf("n=%d err=%v", n, err)
		}
	}
}

// A get of 10,000 small values arriving 16 KiB per read, as a server link
// sees it: ReplyLen starts over on every read, the ReplyScanner resumes.
func BenchmarkReplyInReads(b *testing.B) {
	reply, _ := multiGetReply(10000, 10)
	const read = 16 << 10
	var sc ReplyScanner
	for _, bc := range []struct {
		name string
		scan func(buf []byte) (int, int, bool, error)
	}{
		{"ReplyLen", func(buf []byte) (int, int, bool, error) { return ReplyLen(CmdGet, buf) }},
		{"ReplyScanner", func(buf []byte) (int, int, bool, error) { return sc.Scan(CmdGet, buf) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(reply)))
			b.ReportAllocs()
			for b.Loop() {
				for i := read; ; i += read {
					n, _, _, err := bc.scan(reply[:min(i, len(reply))])
					if err != nil {
						b.Fatal(err)
					}
					if n > 0 {
						break
					}
				}
			}
		})
	}
}

func BenchmarkAppendWithoutNoreply(b *testing.B) {
	p := NewRequestParser(Limits{})
	_, req, _, err := p.Parse([]byte("set user:1234567890:profile 0 3600 100 noreply\r\n" + strings.Repeat("v", 100) + "\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendWithoutNoreply(dst[:0], req)
	}
}

// TestZeroAllocs pins the hot paths at zero allocations per request.
func TestZeroAllocs(t *testing.T) {
	p := NewRequestParser(Limits{})
	ins := [][]byte{
		[]byte("get user:1\r\n"),
		[]byte("get a b c d e f g h i j\r\n"),
		[]byte("set k 0 0 5 noreply\r\nhello\r\n"),
		[]byte("mg AAEC/w== b v q\r\n"),
		[]byte("ms k 2 T0 q\r\nab\r\n"),
	}
	reply := []byte("VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n")
	dst := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		for _, in := range ins {
			_, req, _, err := p.Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			dst = AppendWithoutNoreply(dst[:0], req)
			_ = req.RoutingKey(0)
		}
		if _, _, _, err := ReplyLen(CmdGet, reply); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
}
