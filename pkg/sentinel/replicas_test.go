package sentinel

import (
	"slices"
	"testing"
)

func replica(kv ...string) []any {
	out := make([]any, len(kv))
	for i, s := range kv {
		out[i] = s
	}
	return out
}

// SENTINEL REPLICAS as redis-sentinel 7.0 answers it: only replicas up,
// connected, with their link to this master up, are fit for reads.
func TestFitReplicas(t *testing.T) {
	const master = "10.0.0.1:6379"
	ok := func(ip, port string, extra ...string) []any {
		kv := []string{"name", ip + ":" + port, "ip", ip, "port", port, "flags", "slave",
			"master-link-status", "ok", "master-host", "10.0.0.1", "master-port", "6379"}
		return replica(append(kv, extra...)...)
	}
	reply := []any{
		ok("10.0.0.3", "6379"),
		ok("10.0.0.2", "6379"),
		replica("ip", "10.0.0.4", "port", "6379", "flags", "s_down,slave,disconnected", "master-link-status", "err"),
		replica("ip", "10.0.0.5", "port", "6379", "flags", "slave", "master-link-status", "err",
			"master-host", "10.0.0.1", "master-port", "6379"),
		replica("ip", "10.0.0.6", "port", "6379", "flags", "slave,o_down", "master-link-status", "ok"),
		replica("ip", "10.0.0.7", "port", "6379", "flags", "slave", "master-link-status", "ok",
			"master-host", "10.0.0.9", "master-port", "6379"), // replicates an old master
		replica("ip", "10.0.0.1", "port", "6379", "flags", "slave", "master-link-status", "ok"), // promoted
		replica("ip", "fe80::1", "port", "6380", "flags", "slave", "master-link-status", "ok"),
		"garbage",
	}
	got := fitReplicas(reply, master)
	want := []string{"10.0.0.2:6379", "10.0.0.3:6379", "[fe80::1]:6380"}
	if !slices.Equal(got, want) {
		t.Fatalf("fitReplicas = %v, want %v", got, want)
	}
	if got := fitReplicas(nil, master); got == nil || len(got) != 0 {
		t.Fatalf("no replicas: %#v, want an empty list", got)
	}
}
