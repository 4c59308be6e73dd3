package proxy

import (
	"bytes"
	"errors"
	"testing"
)

func sampleSession() *redisSession {
	return &redisSession{proto: 3, authed: true, name: []byte("worker-7"),
		lib: [2][]byte{[]byte("go-redis"), []byte("9.7.0")}, skipNext: true, noTouch: true, lastCmd: "client|setname"}
}

func TestRedisSessionStateRoundTrip(t *testing.T) {
	for _, s := range []*redisSession{newRedisSession(), sampleSession(), {proto: 2, replyOff: true, noEvict: true, replyOn: true}} {
		b, ok := s.appendState([]byte("prefix"))
		if !ok || !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("appendState: ok %v, %q", ok, b)
		}
		var got redisSession
		if err := got.decodeState(b[len("prefix"):]); err != nil {
			t.Fatal(err)
		}
		if got.proto != s.proto || got.authed != s.authed || !bytes.Equal(got.name, s.name) ||
			!bytes.Equal(got.lib[0], s.lib[0]) || !bytes.Equal(got.lib[1], s.lib[1]) ||
			got.replyOff != s.replyOff || got.skipNext != s.skipNext || got.replyOn != s.replyOn ||
			got.noEvict != s.noEvict || got.noTouch != s.noTouch || got.lastCmd != s.lastCmd {
			t.Errorf("round trip: got %+v, want %+v", got, *s)
		}
	}
}

func TestRedisSessionStateRefusals(t *testing.T) {
	good, _ := sampleSession().appendState(nil)
	huge := &redisSession{proto: 2, name: bytes.Repeat([]byte("n"), maxSessionState)}
	if b, ok := huge.appendState([]byte("x")); ok || string(b) != "x" {
		t.Errorf("a session over the limit encoded (%d bytes)", len(b))
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"version":       append([]byte{9}, good[1:]...),
		"unknown field": append(append([]byte{}, good...), 99, 0),
		"twice":         append(append([]byte{}, good...), tagName, 1, 'x'),
		"length":        {redisSessionVersion, tagName, 200, 'x'},
		"varint":        {redisSessionVersion, tagName, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"resp version":  {redisSessionVersion, tagProto, 1, 4},
		"flags":         {redisSessionVersion, tagFlags, 1, 0x80},
		"too large":     make([]byte, maxSessionState+1),
	} {
		var s redisSession
		if err := s.decodeState(b); !errors.Is(err, errSessionState) {
			t.Errorf("%s: err %v, want errSessionState", name, err)
		}
	}
}

// FuzzRedisSessionState: the decoder never panics, and what it accepts
// encodes to something it decodes to the same session.
func FuzzRedisSessionState(f *testing.F) {
	good, _ := sampleSession().appendState(nil)
	f.Add(good)
	def, _ := newRedisSession().appendState(nil)
	f.Add(def)
	f.Add([]byte{redisSessionVersion, tagName, 0x80, 0x80, 0x04})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s redisSession
		if s.decodeState(b) != nil {
			return
		}
		enc, ok := s.appendState(nil)
		if !ok {
			t.Fatalf("decoded session does not encode")
		}
		var s2 redisSession
		if err := s2.decodeState(enc); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		enc2, _ := s2.appendState(nil)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not stable: %x vs %x", enc, enc2)
		}
	})
}
