package resp

import "strconv"

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

// AppendCommand appends args as a RESP array of bulk strings, the form
// servers are sent (inline requests are re-encoded with it).
func AppendCommand(dst []byte, args [][]byte) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}
