package resp

import (
	"bytes"
	"math"
	"strconv"
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
	args := [][]byte{[]byte("SET"), []byte("key"), []byte("value")}
	dst := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(100, func() {
		dst = AppendMapHeaderFor(dst[:0], 3, 2)
		dst = AppendDouble(dst, 1.5)
		dst = AppendVerbatimFor(dst, 3, "txt", args[0])
		dst = AppendBool(dst, true)
		dst = AppendNullBulkFor(dst, 3)
	}); a != 0 {
		t.Errorf("RESP3 encoders allocate %v times", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		dst = AppendCommand(dst[:0], args)
		dst = AppendInt(dst, 42)
		dst = AppendError(dst, "ERR x")
	}); a != 0 {
		t.Errorf("encoders allocate %v times", a)
	}
}

func TestEncoders3(t *testing.T) {
	tests := []struct {
		got  []byte
		want string
	}{
		{AppendMapHeader(nil, 2), "%2\r\n"},
		{AppendSetHeader(nil, 0), "~0\r\n"},
		{AppendPushHeader(nil, 3), ">3\r\n"},
		{AppendNull3(nil), "_\r\n"},
		{AppendBool(nil, true), "#t\r\n"},
		{AppendBool(nil, false), "#f\r\n"},
		{AppendDouble(nil, 1.5), ",1.5\r\n"},
		{AppendDouble(nil, 2), ",2\r\n"},
		{AppendDouble(nil, -0.5), ",-0.5\r\n"},
		{AppendDouble(nil, 0.1), ",0.10000000000000001\r\n"},
		{AppendDouble(nil, 1e300), ",1.0000000000000001e+300\r\n"},
		{AppendDouble(nil, 1e16), ",10000000000000000\r\n"},
		{AppendDouble(nil, 1e17), ",1e+17\r\n"},
		{AppendDouble(nil, 1e-5), ",1.0000000000000001e-05\r\n"},
		{AppendDouble(nil, 123456789.123), ",123456789.123\r\n"},
		{AppendDouble(nil, math.Copysign(0, -1)), ",-0\r\n"},
		{AppendDouble(nil, math.Inf(1)), ",inf\r\n"},
		{AppendDouble(nil, math.Inf(-1)), ",-inf\r\n"},
		{AppendDouble(nil, math.NaN()), ",nan\r\n"},
		{AppendVerbatim(nil, "txt", []byte("a\r\nb")), "=8\r\ntxt:a\r\nb\r\n"},
		{AppendVerbatim(nil, "mkd", nil), "=4\r\nmkd:\r\n"},
		{AppendNullBulkFor(nil, 2), "$-1\r\n"},
		{AppendNullBulkFor(nil, 3), "_\r\n"},
		{AppendNullArrayFor(nil, 2), "*-1\r\n"},
		{AppendNullArrayFor(nil, 3), "_\r\n"},
		{AppendMapHeaderFor(AppendMapHeaderFor(nil, 2, 1), 2, 0), "*2\r\n*0\r\n"},
		{AppendMapHeaderFor(nil, 3, 1), "%1\r\n"},
		{AppendVerbatimFor(nil, 2, "txt", []byte("x")), "$1\r\nx\r\n"},
		{AppendVerbatimFor(nil, 3, "txt", []byte("x")), "=5\r\ntxt:x\r\n"},
	}
	for i, tc := range tests {
		if string(tc.got) != tc.want {
			t.Errorf("%d: got %q, want %q", i, tc.got, tc.want)
		}
		if tc.want[0] == '%' || tc.want[0] == '~' || tc.want[0] == '>' || tc.want[0] == '*' && tc.want[1] != '-' {
			continue // headers
		}
		if n, _, err := ReplyLen(tc.got, Limits{}); err != nil || n != len(tc.got) {
			t.Errorf("%d: ReplyLen(%q) = %d, %v", i, tc.got, n, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("AppendVerbatim accepted a 4-byte format")
		}
	}()
	AppendVerbatim(nil, "text", nil)
}

// TestAppendDoubleMatchesRedis compares AppendDouble with ZSCORE in RESP3
// and the proto-aware encoders with what redis sends in each protocol.
func TestAppendDoubleMatchesRedis(t *testing.T) {
	addr := startRedis(t)
	rc := dialRedis(t, addr)
	rc.do(t, "HELLO", "3")
	scores := []float64{1.5, 2, 0, -0.5, 0.1, 1.0 / 3, 1e300, -1e-300, 1e16, 1e17, 1e-5, 123456789.123,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 4.9406564584124654e-324, math.Inf(1), math.Inf(-1)}
	for i, f := range scores {
		m := strconv.Itoa(i)
		rc.do(t, "ZADD", "z", strconv.FormatFloat(f, 'g', -1, 64), m)
		if got, want := rc.do(t, "ZSCORE", "z", m), AppendDouble(nil, f); !bytes.Equal(got, want) {
			t.Errorf("ZSCORE %v: redis %q, AppendDouble %q", f, got, want)
		}
	}
	for proto := 2; proto <= 3; proto++ {
		rc.do(t, "HELLO", strconv.Itoa(proto))
		rc.do(t, "DEL", "h")
		if got, want := rc.do(t, "GET", "missing"), AppendNullBulkFor(nil, proto); !bytes.Equal(got, want) {
			t.Errorf("RESP%d GET missing: redis %q, AppendNullBulkFor %q", proto, got, want)
		}
		if got, want := rc.do(t, "BLPOP", "missing", "0.01"), AppendNullArrayFor(nil, proto); !bytes.Equal(got, want) {
			t.Errorf("RESP%d BLPOP timeout: redis %q, AppendNullArrayFor %q", proto, got, want)
		}
		rc.do(t, "HSET", "h", "f", "v")
		want := AppendBulkString(AppendBulkString(AppendMapHeaderFor(nil, proto, 1), "f"), "v")
		if got := rc.do(t, "HGETALL", "h"); !bytes.Equal(got, want) {
			t.Errorf("RESP%d HGETALL: redis %q, AppendMapHeaderFor %q", proto, got, want)
		}
		got := rc.do(t, "CLIENT", "INFO")
		text := decode(got).(string)
		if want := AppendVerbatimFor(nil, proto, "txt", []byte(text)); !bytes.Equal(got, want) {
			t.Errorf("RESP%d CLIENT INFO: redis %q, AppendVerbatimFor %q", proto, got, want)
		}
	}
}
