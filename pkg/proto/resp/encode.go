package resp

import (
	"math"
	"strconv"
)

// AppendStatus appends a simple string reply, "+<s>\r\n". CR and LF in s
// become spaces so the reply stays one line.
func AppendStatus(dst []byte, s string) []byte {
	dst = append(dst, TypeStatus)
	return appendLine(dst, s)
}

// AppendError appends an error reply, "-<msg>\r\n"; msg carries its own
// prefix ("ERR ...", "WRONGTYPE ..."). CR and LF in msg become spaces, as
// redis does.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, TypeError)
	return appendLine(dst, msg)
}

func appendLine(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// AppendInt appends an integer reply, ":<n>\r\n".
func AppendInt(dst []byte, n int64) []byte {
	dst = append(dst, TypeInt)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

// AppendBulk appends a bulk string, "$<len>\r\n<b>\r\n".
func AppendBulk(dst, b []byte) []byte {
	dst = append(dst, TypeBulk)
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString is AppendBulk for a string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = append(dst, TypeBulk)
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendNull appends the null bulk string, "$-1\r\n".
func AppendNull(dst []byte) []byte {
	return append(dst, "$-1\r\n"...)
}

// AppendNullArray appends the null array, "*-1\r\n".
func AppendNullArray(dst []byte) []byte {
	return append(dst, "*-1\r\n"...)
}

// AppendArrayHeader appends "*<n>\r\n".
func AppendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, TypeArray)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendMapHeader appends the RESP3 map header "%<n>\r\n"; n pairs, keys
// and values in turn, follow.
func AppendMapHeader(dst []byte, n int) []byte {
	return appendHeader(dst, TypeMap, n)
}

// AppendSetHeader appends the RESP3 set header "~<n>\r\n".
func AppendSetHeader(dst []byte, n int) []byte {
	return appendHeader(dst, TypeSet, n)
}

// AppendPushHeader appends the RESP3 push header "><n>\r\n".
func AppendPushHeader(dst []byte, n int) []byte {
	return appendHeader(dst, TypePush, n)
}

func appendHeader(dst []byte, t byte, n int) []byte {
	dst = append(dst, t)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendNull3 appends the RESP3 null, "_\r\n", which stands for both the
// null bulk string and the null array.
func AppendNull3(dst []byte) []byte {
	return append(dst, "_\r\n"...)
}

// AppendBool appends a RESP3 boolean, "#t\r\n" or "#f\r\n".
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, "#t\r\n"...)
	}
	return append(dst, "#f\r\n"...)
}

// AppendDouble appends a RESP3 double the way redis-server 7.0 writes one
// (addReplyDouble): printf's "%.17g" (",1.5", ",0.10000000000000001",
// ",1.0000000000000001e+300"), ",inf" and ",-inf", and ",nan".
func AppendDouble(dst []byte, f float64) []byte {
	dst = append(dst, TypeDouble)
	switch {
	case math.IsInf(f, 1):
		dst = append(dst, "inf"...)
	case math.IsInf(f, -1):
		dst = append(dst, "-inf"...)
	case math.IsNaN(f):
		dst = append(dst, "nan"...)
	default:
		// Go's 'g' matches C's: the exponent has at least two digits and
		// trailing zeros go.
		dst = strconv.AppendFloat(dst, f, 'g', 17, 64)
	}
	return append(dst, '\r', '\n')
}

// AppendVerbatim appends a RESP3 verbatim string,
// "=<len>\r\n<format>:<b>\r\n", what redis 7 answers INFO and CLIENT LIST
// with. format is "txt" (plain text) or "mkd" (markdown); it must be 3
// bytes, AppendVerbatim panics otherwise.
func AppendVerbatim(dst []byte, format string, b []byte) []byte {
	if len(format) != 3 {
		panic("resp: verbatim string format must be 3 bytes, got " + strconv.Quote(format))
	}
	dst = append(dst, TypeVerbatim)
	dst = strconv.AppendInt(dst, int64(len(b)+4), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, format...)
	dst = append(dst, ':')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// The *For encoders write a reply in the protocol a client chose with
// HELLO: proto is 2 or 3, anything but 3 means RESP2.

// AppendNullBulkFor appends a null string: "$-1\r\n" in RESP2, "_\r\n" in
// RESP3.
func AppendNullBulkFor(dst []byte, proto int) []byte {
	if proto == 3 {
		return AppendNull3(dst)
	}
	return AppendNull(dst)
}

// AppendNullArrayFor appends a null array: "*-1\r\n" in RESP2, "_\r\n" in
// RESP3.
func AppendNullArrayFor(dst []byte, proto int) []byte {
	if proto == 3 {
		return AppendNull3(dst)
	}
	return AppendNullArray(dst)
}

// AppendMapHeaderFor appends the header of a map of n pairs: "%<n>\r\n" in
// RESP3, the flat array "*<2n>\r\n" in RESP2, as redis does.
func AppendMapHeaderFor(dst []byte, proto int, n int) []byte {
	if proto == 3 {
		return AppendMapHeader(dst, n)
	}
	return AppendArrayHeader(dst, 2*n)
}

// AppendVerbatimFor appends b as a verbatim string of format in RESP3 and as
// a bulk string in RESP2, as redis does.
func AppendVerbatimFor(dst []byte, proto int, format string, b []byte) []byte {
	if proto == 3 {
		return AppendVerbatim(dst, format, b)
	}
	return AppendBulk(dst, b)
}

// AppendCommand appends args as a RESP array of bulk strings, the form
// servers are sent (inline requests are re-encoded with it).
func AppendCommand(dst []byte, args [][]byte) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}
