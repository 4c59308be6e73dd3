package resp

import (
	"math"
	"testing"
)

func TestEncoders(t *testing.T) {
	tests := []struct {
		got  []byte
		want string
	}{
		{AppendStatus(nil, "OK"), "+OK\r\n"},
		{AppendStatus([]byte("x"), "a\r\nb"), "x+a  b\r\n"},
		{AppendError(nil, "ERR no"), "-ERR no\r\n"},
		{AppendError(nil, "ERR a\nb"), "-ERR a b\r\n"},
		{AppendInt(nil, 0), ":0\r\n"},
		{AppendInt(nil, math.MinInt64), ":-9223372036854775808\r\n"},
		{AppendBulk(nil, []byte("foo")), "$3\r\nfoo\r\n"},
		{AppendBulk(nil, nil), "$0\r\n\r\n"},
		{AppendBulkString(nil, "a\r\n"), "$3\r\na\r\n\r\n"},
		{AppendNull(nil), "$-1\r\n"},
		{AppendNullArray(nil), "*-1\r\n"},
		{AppendArrayHeader(nil, 12), "*12\r\n"},
		{AppendCommand(nil, [][]byte{[]byte("GET"), []byte("k")}), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"},
	}
	for i, tc := range tests {
		if string(tc.got) != tc.want {
			t.Errorf("%d: got %q, want %q", i, tc.got, tc.want)
		}
		if i != 1 && i != 11 { // every complete encoding frames as one reply
			if n, _, err := ReplyLen(tc.got, Limits{}); err != nil || n != len(tc.got) {
				t.Errorf("%d: ReplyLen(%q) = %d, %v", i, tc.got, n, err)
			}
		}
	}
	dst := make([]byte, 0, 256)
	args := [][]byte{[]byte("SET"), []byte("key"), []byte("value")}
	if a := testing.AllocsPerRun(100, func() {
		dst = AppendCommand(dst[:0], args)
		dst = AppendInt(dst, 42)
		dst = AppendError(dst, "ERR x")
	}); a != 0 {
		t.Errorf("encoders allocate %v times", a)
	}
}
