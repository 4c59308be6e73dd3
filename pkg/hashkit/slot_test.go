package hashkit

import "testing"

// Vectors from the Redis Cluster spec and CLUSTER KEYSLOT on redis 7.0.15.
func TestSlot(t *testing.T) {
	if got := CRC16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("CRC16(123456789) = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]int{
		"123456789": 12739, "{user1000}.following": 3443, "user1000": 3443,
		"foo{}{bar}": 8363, "foo{{bar}}zap": 4015, "{bar": 4015, "": 0,
		"foo{bar}{zap}": Slot([]byte("bar")),
	} {
		if got := Slot([]byte(key)); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}
