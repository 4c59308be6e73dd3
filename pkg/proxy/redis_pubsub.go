package proxy

import "github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"

// subState is a subscriber's (redis_pubsub.go).
type subState struct{}

// subLink is a subscriber link's.
type subLink struct{}

func (s *subState) active() bool                    { return false }
func (s *subState) lost(c *clientConn, l *link) bool { return false }
func (st *statefulSession) endSub(c *clientConn)     {}
func (sl *subLink) frame(l *link, b []byte)          {}

func (r *redisProto) pubsub(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) bool {
	return false
}

func (r *redisProto) subDispatch(c *clientConn, st *statefulSession, args [][]byte, raw []byte) {}
