package resp

import (
	"strconv"
	"testing"
)

func benchParse(b *testing.B, req []byte) {
	p := NewRequestParser(Limits{})
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		n, _, _, err := p.Parse(req)
		if n != len(req) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkParseGet(b *testing.B) {
	benchParse(b, []byte("*2\r\n$3\r\nGET\r\n$10\r\nkey:000001\r\n"))
}

func BenchmarkParseMSet10(b *testing.B) {
	args := [][]byte{[]byte("MSET")}
	for i := 0; i < 10; i++ {
		args = append(args, []byte("key:"+strconv.Itoa(i)), []byte("value-"+strconv.Itoa(i)))
	}
	benchParse(b, AppendCommand(nil, args))
}

func BenchmarkParseInline(b *testing.B) {
	benchParse(b, []byte("set \"key 1\" value\r\n"))
}

// BenchmarkParseByteAtATime measures resuming: a 1000-argument request
// delivered one byte per call.
func BenchmarkParseByteAtATime(b *testing.B) {
	args := [][]byte{[]byte("MGET")}
	for i := 0; i < 1000; i++ {
		args = append(args, []byte("key:"+strconv.Itoa(i)))
	}
	req := AppendCommand(nil, args)
	p := NewRequestParser(Limits{})
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		for k := 1; k <= len(req); k++ {
			if n, _, _, _ := p.Parse(req[:k]); n != 0 && k != len(req) {
				b.Fatal(k)
			}
		}
	}
}

func BenchmarkReplyLen(b *testing.B) {
	reply := []byte("$10\r\nvalue:0001\r\n")
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	for b.Loop() {
		if n, _, err := ReplyLen(reply, Limits{}); n != len(reply) || err != nil {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkReplyScanSmall scans the commonest short replies with a kept
// scanner, as the engine does.
func BenchmarkReplyScanSmall(b *testing.B) {
	for _, reply := range []string{"+OK\r\n", "$3\r\nfoo\r\n", ":1\r\n"} {
		b.Run(reply[:1], func(b *testing.B) {
			s := NewReplyScanner(Limits{})
			buf := []byte(reply)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if n, _, err := s.Scan(buf); n != len(buf) || err != nil {
					b.Fatal(n, err)
				}
			}
		})
	}
}

func BenchmarkReplyLenMGet100(b *testing.B) {
	reply := AppendArrayHeader(nil, 100)
	for i := 0; i < 100; i++ {
		reply = AppendBulkString(reply, "value:"+strconv.Itoa(i))
	}
	s := NewReplyScanner(Limits{})
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	for b.Loop() {
		if n, _, err := s.Scan(reply); n != len(reply) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	name := []byte("ZRangeByScore")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Lookup(name); !ok {
			b.Fatal()
		}
	}
}
