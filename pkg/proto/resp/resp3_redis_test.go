package resp

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateRESP3 = flag.Bool("update-resp3", false, "recapture "+resp3Golden+" from the local redis-server")

const resp3Golden = "testdata/resp3_redis.txt"

// resp3Session is the RESP3 conversation of resp3Golden, on one connection
// after HELLO 3: each command with the number of replies it gets (pushes
// included). Volatile replies (ids, addresses, times, memory) are compared
// with a recapture by type only.
var resp3Session = []struct {
	cmd      string
	replies  int
	volatile bool
}{
	{"HELLO 3", 1, true},
	{"DEBUG PROTOCOL string", 1, false},
	{"DEBUG PROTOCOL integer", 1, false},
	{"DEBUG PROTOCOL double", 1, false},
	{"DEBUG PROTOCOL bignum", 1, false},
	{"DEBUG PROTOCOL null", 1, false},
	{"DEBUG PROTOCOL array", 1, false},
	{"DEBUG PROTOCOL set", 1, false},
	{"DEBUG PROTOCOL map", 1, false},
	{"DEBUG PROTOCOL attrib", 1, false},
	{"DEBUG PROTOCOL push", 2, false}, // the push, then a bulk
	{"DEBUG PROTOCOL verbatim", 1, false},
	{"DEBUG PROTOCOL true", 1, false},
	{"DEBUG PROTOCOL false", 1, false},
	{"SET k v", 1, false},
	{"GET k", 1, false},
	{"GET missing", 1, false},
	{"MGET k missing k2 missing2", 1, false},
	{"INCR n", 1, false},
	{"HSET h a 1 b 2", 1, false},
	{"HGETALL h", 1, false},
	{"HGETALL missing", 1, false},
	{"SADD s 3 1 2", 1, false}, // an intset: SMEMBERS order is stable
	{"SMEMBERS s", 1, false},
	{"CONFIG GET maxmemory", 1, false},
	{"CONFIG GET maxmemory-policy", 1, false},
	{"ZADD z 1.5 a 2 b inf c -inf d 1e300 e 0.1 f", 1, false},
	{"ZSCORE z a", 1, false},
	{"ZSCORE z c", 1, false},
	{"ZSCORE z d", 1, false},
	{"ZSCORE z e", 1, false},
	{"ZSCORE z missing", 1, false},
	{"ZRANGE z 0 -1 WITHSCORES", 1, false},
	{"ZINCRBY z 0.2 f", 1, false},
	{"ZPOPMIN missing", 1, false},
	{"RPUSH l a b c", 1, false},
	{"LRANGE l 0 -1", 1, false},
	{"LPOS l zz", 1, false},
	{"BLPOP missing 0.01", 1, false},
	{"XADD st 1-1 f v", 1, false},
	{"XADD st 2-1 g w", 1, false},
	{"XRANGE st - +", 1, false},
	{"XINFO STREAM st", 1, false},
	{"COMMAND INFO get", 1, false},
	{"GET k k", 1, false},
	{"FOO bar", 1, false},
	{"OBJECT FREQ k", 1, false},
	{"EVAL \"redis.setresp(3); return redis.call('HGETALL', KEYS[1])\" 1 h", 1, false},
	{"EVAL \"return {1, {double=-0.5}, {big_number='-123456789012345678901234567890'}, false, true}\" 0", 1, false},
	{"EVAL \"return {map={a={set={x=true}}}}\" 0", 1, false},
	{"EVAL \"return {verbatim_string={format='mkd', string='# hi'}}\" 0", 1, false},
	{"EVAL \"return redis.error_reply('MYERR x')\" 0", 1, false},
	{"INFO server", 1, true},
	{"CLIENT LIST", 1, true},
	{"CLIENT INFO", 1, true},
	{"MEMORY STATS", 1, true},
	{"CLIENT TRACKING ON", 1, false},
	{"GET k", 1, false},
	{"SET k v2", 2, false}, // +OK, then the invalidation push
	{"CLIENT TRACKING OFF", 1, false},
	{"SUBSCRIBE ch", 1, false},
	{"PUBLISH ch hi", 2, false}, // the message push, then the count
	{"UNSUBSCRIBE ch", 1, false},
}

type goldenReply struct {
	seq      int // index of the command in the session
	cmd      string
	reply    []byte
	volatile bool
}

// captureRESP3 runs resp3Session on a fresh redis-server with the DEBUG
// command enabled and returns its version and replies.
func captureRESP3(t *testing.T) (string, []goldenReply) {
	addr := startRedis(t, "--enable-debug-command", "yes")
	rc := dialRedis(t, addr)
	info := decode(rc.do(t, "INFO", "server")).(string)
	version := regexp.MustCompile(`redis_version:([0-9.]+)`).FindStringSubmatch(info)[1]

	var out []goldenReply
	var buf []byte
	s := NewReplyScanner(Limits{})
	tmp := make([]byte, 64<<10)
	for seq, c := range resp3Session {
		if _, err := rc.c.Write(AppendCommand(nil, bytesArgs(splitCmd(c.cmd)))); err != nil {
			t.Fatal(err)
		}
		_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for got := 0; got < c.replies; {
			n, _, err := s.Scan(buf)
			if err != nil {
				t.Fatalf("%s: %v in %q", c.cmd, err, buf)
			}
			if n > 0 {
				out = append(out, goldenReply{seq, c.cmd, append([]byte(nil), buf[:n]...), c.volatile})
				buf = buf[n:]
				got++
				continue
			}
			m, err := rc.r.Read(tmp)
			if err != nil {
				t.Fatalf("%s: %v", c.cmd, err)
			}
			buf = append(buf, tmp[:m]...)
		}
	}
	if len(buf) != 0 {
		t.Fatalf("unexpected bytes after the session: %q", buf)
	}
	return version, out
}

func writeGolden(version string, replies []goldenReply) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Replies of redis-server %s in RESP3 to resp3Session (resp3_redis_test.go).\n", version)
	fmt.Fprintf(&b, "# Regenerate with go test ./pkg/proto/resp/ -run TestRESP3MatchesRedis -update-resp3.\n")
	fmt.Fprintf(&b, "# \"> cmd\" is a command, \"= reply\" a reply, \"~ reply\" a volatile one; replies are Go-quoted.\n")
	for i, r := range replies {
		if i == 0 || r.seq != replies[i-1].seq {
			fmt.Fprintf(&b, "> %s\n", r.cmd)
		}
		mark := "="
		if r.volatile {
			mark = "~"
		}
		fmt.Fprintf(&b, "%s %s\n", mark, strconv.Quote(string(r.reply)))
	}
	return b.Bytes()
}

func readGolden(t testing.TB) (string, []goldenReply) {
	t.Helper()
	f, err := os.ReadFile(resp3Golden)
	if err != nil {
		t.Fatal(err)
	}
	var version, cmd string
	seq := -1
	var out []goldenReply
	sc := bufio.NewScanner(bytes.NewReader(f))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# Replies of redis-server "):
			version = strings.Fields(line)[4]
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "> "):
			cmd = line[2:]
			seq++
		case strings.HasPrefix(line, "= "), strings.HasPrefix(line, "~ "):
			r, err := strconv.Unquote(line[2:])
			if err != nil {
				t.Fatalf("%s: %q: %v", resp3Golden, line, err)
			}
			out = append(out, goldenReply{seq, cmd, []byte(r), line[0] == '~'})
		default:
			t.Fatalf("%s: bad line %q", resp3Golden, line)
		}
	}
	if version == "" || len(out) == 0 {
		t.Fatalf("%s: no version or no replies", resp3Golden)
	}
	return version, out
}

// TestRESP3GoldenReplies frames every reply redis sent in resp3Golden,
// whole, byte at a time and in random splits with a resumed scanner, and
// the whole session as one stream cut at random, like reads from a socket.
func TestRESP3GoldenReplies(t *testing.T) {
	_, replies := readGolden(t)
	types := map[byte]bool{}
	var stream []byte
	for _, r := range replies {
		n, _, err := ReplyLen(r.reply, Limits{})
		if err != nil || n != len(r.reply) {
			t.Errorf("%s: ReplyLen(%.60q) = %d, %v", r.cmd, r.reply, n, err)
			continue
		}
		if n, _, _ := ReplyLen(append(append([]byte(nil), r.reply...), "+NEXT\r\n"...), Limits{}); n != len(r.reply) {
			t.Errorf("%s: %.60q followed by a reply frames as %d", r.cmd, r.reply, n)
		}
		checkReplyPrefixes(t, r.reply)
		checkReplySplits(t, r.reply, Limits{}, 10)
		checkAggregateElems(t, r.reply)
		_ = decode(r.reply)
		types[ReplyType(r.reply)] = true
		stream = append(stream, r.reply...)
	}
	for _, typ := range []byte("+-:$*_#,(=%~>") {
		if !types[typ] {
			t.Errorf("no %q reply in %s", typ, resp3Golden)
		}
	}
	if !bytes.Contains(stream, []byte("|1\r\n")) {
		t.Errorf("no attribute in %s", resp3Golden)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		s := NewReplyScanner(Limits{})
		var got [][]byte
		start, end := 0, 0
		for start < len(stream) {
			if end < len(stream) {
				end = min(len(stream), end+1+rng.IntN(200))
			}
			for {
				n, _, err := s.Scan(stream[start:end])
				if err != nil {
					t.Fatalf("round %d at %d: %v", round, start, err)
				}
				if n == 0 {
					break
				}
				got = append(got, stream[start:start+n])
				start += n
			}
			if end == len(stream) && start < len(stream) {
				t.Fatalf("round %d: stream ends in an incomplete reply at %d", round, start)
			}
		}
		if len(got) != len(replies) {
			t.Fatalf("round %d: %d replies, want %d", round, len(got), len(replies))
		}
		for i := range got {
			if !bytes.Equal(got[i], replies[i].reply) {
				t.Fatalf("round %d reply %d: %q, want %q", round, i, got[i], replies[i].reply)
			}
		}
	}
	// The session's pushes are what the engine drops on shared links.
	pushes := 0
	for _, r := range replies {
		if IsPush(r.reply) {
			pushes++
		}
	}
	if pushes != 5 { // DEBUG PROTOCOL push, invalidate, subscribe, message, unsubscribe
		t.Errorf("%d pushes in %s", pushes, resp3Golden)
	}
}

// TestRESP3MatchesRedis recaptures resp3Session from the local
// redis-server and compares it with resp3Golden: stable replies byte for
// byte, volatile ones by type. With -update-resp3 it rewrites the file.
func TestRESP3MatchesRedis(t *testing.T) {
	version, live := captureRESP3(t)
	if *updateRESP3 {
		if err := os.WriteFile(resp3Golden, writeGolden(version, live), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	gversion, golden := readGolden(t)
	if version != gversion {
		t.Skipf("redis-server %s installed, %s captured from %s", version, resp3Golden, gversion)
	}
	if len(live) != len(golden) {
		t.Fatalf("%d replies from redis, %d in %s", len(live), len(golden), resp3Golden)
	}
	for i, l := range live {
		g := golden[i]
		switch {
		case l.seq != g.seq || l.cmd != g.cmd:
			t.Fatalf("reply %d answers %q, %s has %q", i, l.cmd, resp3Golden, g.cmd)
		case g.volatile && ReplyType(l.reply) != ReplyType(g.reply):
			t.Errorf("%s: redis %.60q, %s %.60q", l.cmd, l.reply, resp3Golden, g.reply)
		case !g.volatile && !bytes.Equal(l.reply, g.reply):
			t.Errorf("%s:\nredis %q\nfile  %q", l.cmd, l.reply, g.reply)
		}
	}
}
