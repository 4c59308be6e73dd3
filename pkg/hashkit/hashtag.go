package hashkit

import "bytes"

// HashTagKey returns the part of key that twemproxy hashes when the pool
// has a hash_tag, as server_pool_idx does: the bytes between the first
// tag[0] and the first tag[1] after it. If tag[0] is absent, tag[1] does
// not follow it, or the section between them is empty, the whole key is
// used. The result aliases key. tag is the two-byte hash_tag; an empty tag
// (or any tag shorter than two bytes, which twemproxy's configuration
// rejects) disables tagging.
func HashTagKey(key []byte, tag string) []byte {
	if len(tag) < 2 {
		return key
	}
	start := bytes.IndexByte(key, tag[0])
	if start < 0 {
		return key
	}
	end := bytes.IndexByte(key[start+1:], tag[1])
	if end <= 0 { // missing, or nothing between the tags
		return key
	}
	return key[start+1 : start+1+end]
}
