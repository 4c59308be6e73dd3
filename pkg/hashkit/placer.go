package hashkit

// Placer maps keys to servers for one pool: hash tag, then hash, then the
// ring, the way twemproxy's server_pool_idx does.
type Placer struct {
	// Hash is the pool's key hash.
	Hash HashFunc
	// HashTag is the pool's two-byte hash_tag, or empty.
	HashTag string
	// Ring is the pool's current continuum. Replace the whole Placer (or
	// this field under the caller's own synchronisation) on rebuild.
	Ring *Ring
}

// Server returns the index of the server for key, or -1 when no server is
// live.
func (p *Placer) Server(key []byte) int {
	if p.Ring == nil || p.Ring.Len() == 0 {
		return -1
	}
	if p.Ring.nodes == 1 || p.Ring.kind == distRandom {
		// twemproxy skips hashing for one-server pools and for random.
		return p.Ring.Pick(0)
	}
	key = HashTagKey(key, p.HashTag)
	var h uint32
	if len(key) > 0 { // server_pool_hash: an empty key hashes to 0
		h = p.Hash(key)
	}
	return p.Ring.Pick(h)
}
