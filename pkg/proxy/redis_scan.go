package proxy

import "github.com/nuthatch-proxy/nuthatch/pkg/proto/resp"

func (r *redisProto) wholePool(c *clientConn, cmd *resp.Command, args [][]byte, raw []byte) bool {
	return false
}
