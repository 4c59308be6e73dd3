package hashkit

// Redis Cluster placement: a key lives in hash slot CRC16(key) mod 16384,
// hashing only its {tag} when it has one (the rule HashTagKey applies
// with "{}"), so a cluster pool needs no ring.

// SlotCount is the number of Redis Cluster hash slots.
const SlotCount = 16384

// CRC16 is CRC-16/XMODEM (polynomial 0x1021, initial 0), the checksum of
// Redis Cluster's key slots: twemproxy's table, with the accumulator kept
// to 16 bits.
func CRC16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ uint16(crc16Table[byte(crc>>8)^c])
	}
	return crc
}

// Slot returns the hash slot of key as Redis Cluster computes it.
func Slot(key []byte) int {
	return int(CRC16(HashTagKey(key, "{}")) & (SlotCount - 1))
}
