package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

const minimalPool = `
pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}
`

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in      string
		kind    addrKind
		want    Address
		wantErr string
	}{
		{"127.0.0.1:22121", addrListen, Address{Network: "tcp", Addr: "127.0.0.1:22121"}, ""},
		{":22121", addrListen, Address{Network: "tcp", Addr: ":22121"}, ""},
		{"[::1]:6379", addrServer, Address{Network: "tcp", Addr: "[::1]:6379"}, ""},
		{"[fe80::1%eth0]:6379", addrServer, Address{Network: "tcp", Addr: "[fe80::1%eth0]:6379"}, ""},
		{"cache-1.example.com:11211", addrServer, Address{Network: "tcp", Addr: "cache-1.example.com:11211"}, ""},
		{"localhost:06379", addrServer, Address{Network: "tcp", Addr: "localhost:6379"}, ""},
		{"unix:/run/x.sock", addrListen, Address{Network: "unix", Addr: "/run/x.sock"}, ""},
		{"unix:/run/x.sock", addrServer, Address{Network: "unix", Addr: "/run/x.sock"}, ""},
		{"unix:/run/x.sock", addrTCP, Address{}, "needs host:port"},
		{":6379", addrServer, Address{}, "has no host"},
		{"127.0.0.1", addrListen, Address{}, "not host:port"},
		{"127.0.0.1:", addrListen, Address{}, "port is missing"},
		{"127.0.0.1:0", addrListen, Address{}, "out of range"},
		{"127.0.0.1:65536", addrListen, Address{}, "out of range"},
		{"127.0.0.1:65535", addrListen, Address{Network: "tcp", Addr: "127.0.0.1:65535"}, ""},
		{"127.0.0.1:+80", addrListen, Address{}, "not a number"},
		{"127.0.0.1:99999999999999999999", addrListen, Address{}, "out of range"},
		{"::1:6379", addrServer, Address{}, "brackets"},
		{"[::g]:6379", addrServer, Address{}, "not a valid IPv6"},
		{"bad host:6379", addrServer, Address{}, "invalid character"},
		{strings.Repeat("a", 254) + ":1", addrServer, Address{}, "longer than 253"},
		{"/run/x.sock", addrListen, Address{}, "unix:/run/x.sock"},
		{"unix:", addrListen, Address{}, "empty"},
		{"unix:run/x.sock", addrListen, Address{}, "not absolute"},
		{"unix:/run/", addrListen, Address{}, "directory"},
		{"unix:/run/\x00", addrListen, Address{}, "NUL"},
		{"unix:/" + strings.Repeat("a", 106), addrListen, Address{Network: "unix", Addr: "/" + strings.Repeat("a", 106)}, ""},
		{"unix:/" + strings.Repeat("a", 107), addrListen, Address{}, "limit is 107"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseAddress(tt.in, tt.kind)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"0666", 0o666, true}, {"666", 0o666, true}, {"0o600", 0o600, true}, {"0", 0, true},
		{"0777", 0o777, true}, {"1777", 0, false}, {"0999", 0, false}, {"", 0, false}, {"rw", 0, false},
	}
	for _, tt := range tests {
		got, err := parseMode(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseMode(%q) = %o, %v; want %o ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestListenConflicts(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:1", "127.0.0.1:1", true},
		{"127.0.0.1:1", "127.0.0.1:2", false},
		{"127.0.0.1:1", "127.0.0.2:1", false},
		{"0.0.0.0:1", "127.0.0.1:1", true},
		{"0.0.0.0:1", "[::1]:1", false},
		{"[::]:1", "127.0.0.1:1", true},
		{":1", "[::1]:1", true},
		{":1", "localhost:1", true},
		{"0.0.0.0:1", "localhost:1", false}, // unknown until resolved
		{"LOCALHOST:1", "localhost:1", true},
		{"[::ffff:127.0.0.1]:1", "127.0.0.1:1", true},
		{"[0:0::1]:1", "[::1]:1", true},
		{"unix:/a/b.sock", "unix:/a/./b.sock", true},
		{"unix:/a/b.sock", "unix:/a/c.sock", false},
		{"unix:/a/b.sock", "127.0.0.1:1", false},
	}
	for _, tt := range tests {
		a, err := parseAddress(tt.a, addrListen)
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseAddress(tt.b, addrListen)
		if err != nil {
			t.Fatal(err)
		}
		if got := keyOf(a).conflicts(keyOf(b)); got != tt.want {
			t.Errorf("conflicts(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := keyOf(b).conflicts(keyOf(a)); got != tt.want {
			t.Errorf("conflicts(%s, %s) = %v, want %v (reversed)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestPlacementName(t *testing.T) {
	tests := []struct {
		block string
		want  string
		named bool
	}{
		{`server "127.0.0.1:6379" {}`, "127.0.0.1:6379", false},
		{`server "10.0.0.1:11211" {}`, "10.0.0.1", false},
		{`server "10.0.0.1:011211" {}`, "10.0.0.1", false},
		{`server "[::1]:11211" {}`, "[::1]", false},
		{`server "unix:/run/m.sock" {}`, "/run/m.sock:", false},
		{`server "cache-a" { address = "10.0.0.1:11211" }`, "cache-a", true},
		{`server "cache-a" { address = "unix:/run/m.sock" }`, "cache-a", true},
		{`server "10.0.0.1:6379" { address = "10.0.0.1:6379" }`, "10.0.0.1:6379", false},
		{`server "10.0.0.1:11211" { address = "10.0.0.1:11211" }`, "10.0.0.1", false},
	}
	for _, tt := range tests {
		src := fmt.Sprintf("pool \"p\" {\n listen = \"127.0.0.1:1\"\n protocol = \"memcache\"\n %s\n}\n", tt.block)
		cfg, err := Parse([]byte(src), "t.hcl")
		if err != nil {
			t.Fatalf("%s: %v", tt.block, err)
		}
		s := cfg.Pools[0].Servers[0]
		if got := s.PlacementName(); got != tt.want || s.Named != tt.named {
			t.Errorf("%s: PlacementName = %q, Named = %v; want %q, %v", tt.block, got, s.Named, tt.want, tt.named)
		}
	}
}

func TestWorkerProcessesAuto(t *testing.T) {
	defer func(f func() int) { numCPU = f }(numCPU)
	for _, tt := range []struct{ cpus, want int }{{1, 1}, {0, 1}, {2, 1}, {3, 2}, {4, 2}, {64, 32}, {4096, MaxWorkerProcesses}} {
		numCPU = func() int { return tt.cpus }
		for _, src := range []string{minimalPool, `worker_processes = "auto"` + minimalPool, `worker_processes = null` + minimalPool} {
			cfg, err := Parse([]byte(src), "t.hcl")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.WorkerProcesses != tt.want || !cfg.WorkerProcessesAuto {
				t.Errorf("%d CPUs: got %d auto=%v, want %d auto", tt.cpus, cfg.WorkerProcesses, cfg.WorkerProcessesAuto, tt.want)
			}
		}
	}
	cfg, err := Parse([]byte(`worker_processes = 2`+minimalPool), "t.hcl")
	if err != nil || cfg.WorkerProcesses != 2 || cfg.WorkerProcessesAuto {
		t.Errorf("worker_processes = 2: got %+v, %v", cfg, err)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimalPool), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	// twemproxy's defaults, src/nc_conf.h.
	if p.Hash != "fnv1a_64" || p.Distribution != "ketama" || p.Timeout != 0 || p.Backlog != 512 ||
		p.ServerConnections != 1 || p.ServerRetryTimeout.Milliseconds() != 30000 || p.ServerFailureLimit != 2 ||
		p.Preconnect || p.AutoEjectHosts || p.TCPKeepalive || p.ClientConnections != 0 || p.RedisDB != 0 ||
		p.HashTag != "" || p.RedisAuth != "" {
		t.Errorf("pool defaults differ from twemproxy: %+v", *p)
	}
	if cfg.Stats.Listen != "127.0.0.1:22222" || cfg.Stats.Interval.Milliseconds() != 30000 ||
		cfg.Metrics.Listen != "" || cfg.WorkerCPUAffinity || cfg.WorkerShutdownTimeout.Seconds() != 30 ||
		cfg.User != "nuthatch" || cfg.Group != "nuthatch" || cfg.PidFile != "" ||
		cfg.Log.Level != "info" || cfg.Log.Format != "auto" || cfg.File != "t.hcl" {
		t.Errorf("global defaults wrong: %+v", *cfg)
	}
	if s := p.Servers[0]; s.Weight != 1 || s.Named || s.Name != "127.0.0.1:6379" || s.Address.Addr != "127.0.0.1:6379" {
		t.Errorf("server defaults wrong: %+v", *s)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.hcl"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: err = %v; want fs.ErrNotExist and not ErrInvalid", err)
	}
	_, err = Parse([]byte("pool \"a\" {}\nbogus = 1\n"), "bad.hcl")
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	var diags hcl.Diagnostics
	if !errors.As(err, &diags) || len(diags) != 4 {
		t.Errorf("errors.As hcl.Diagnostics: %v (%d)", diags, len(diags))
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "bad.hcl:1,1-9: ") {
		t.Errorf("Error() = %q; want one line per diagnostic, starting with the range", err.Error())
	}
}

func TestWriteTextColorAndWidth(t *testing.T) {
	_, err := Parse([]byte(`worker_processes = 0`+minimalPool), "w.hcl")
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatal(err)
	}
	var plain, color bytes.Buffer
	if err := le.WriteText(&plain, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := le.WriteText(&color, 40, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plain.String(), "worker_processes = 0") || strings.Contains(plain.String(), "\x1b[") {
		t.Errorf("plain output wrong:\n%s", plain.String())
	}
	if !strings.Contains(color.String(), "\x1b[") {
		t.Errorf("color output has no escapes:\n%s", color.String())
	}
}

// secret appears in each source below; it must appear in no output.
const secret = "correct-horse-battery"

func TestSecretsNeverPrinted(t *testing.T) {
	sources := []string{
		// valid
		`pool "a" {
  listen = "127.0.0.1:1"
  protocol = "redis"
  redis_auth = "` + secret + `"
  server "127.0.0.1:2" {}
}`,
		// invalid semantics next to the secret
		`pool "a" {
  listen = "127.0.0.1:1"
  protocol = "memcache"
  redis_auth = "` + secret + `"
  server "127.0.0.1:2" {}
}`,
		// secret in a heredoc
		`pool "a" {
  listen = "127.0.0.1:1"
  protocol = "memcache"
  redis_auth = <<EOT
` + secret + `
EOT
  server "x" {}
}`,
		// syntax error on the secret's line
		`pool "a" {
  redis_auth = "` + secret + `" "
}`,
		// secret where it does not belong
		`stats {
  redis_auth = "` + secret + `"
}`,
		// wrong type
		`pool "a" {
  redis_auth = ["` + secret + `"]
}`,
	}
	for i, src := range sources {
		cfg, err := Parse([]byte(src), "s.hcl")
		var out strings.Builder
		if err != nil {
			out.WriteString(err.Error())
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("case %d: %T", i, err)
			}
			if err := le.WriteText(&out, 80, false); err != nil {
				t.Fatal(err)
			}
		} else {
			if cfg.Pools[0].RedisAuth != secret {
				t.Fatalf("case %d: RedisAuth = %q", i, cfg.Pools[0].RedisAuth)
			}
			fmt.Fprintf(&out, "%v %+v %#v %s %v %+v %#v", cfg, cfg, cfg, cfg.Pools[0], *cfg, cfg.Pools, cfg.Pools[0])
			j, err := json.Marshal(cfg.Redacted())
			if err != nil {
				t.Fatal(err)
			}
			out.Write(j)
			if cfg.Pools[0].RedisAuth != secret {
				t.Errorf("Redacted modified the original")
			}
		}
		if strings.Contains(out.String(), secret) {
			t.Errorf("case %d leaks the secret:\n%s", i, out.String())
		}
	}
}

func TestRedactedIsDeep(t *testing.T) {
	cfg, err := Parse([]byte(minimalPool), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Redacted()
	r.Pools[0].Name = "changed"
	r.Pools[0].Servers[0].Weight = 9
	if cfg.Pools[0].Name != "alpha" || cfg.Pools[0].Servers[0].Weight != 1 {
		t.Error("Redacted shares memory with the original")
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "1k": 1000, "1kb": 1024, "64mb": 64 << 20,
		"64MB": 64 << 20, "1gb": 1 << 30, "2g": 2e9, "3m": 3e6, "8 MiB": 8 << 20, "10b": 10} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "mb", "-1", "1tb", "1.5mb", "99999999999999999999"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
}

func TestCredentialsAndSecrets(t *testing.T) {
	cfg, err := Parse([]byte(`
pool "p" {
  listen         = "127.0.0.1:22121"
  protocol       = "redis"
  redis_auth     = "pool-pw"
  redis_username = "proxy"
  server "127.0.0.1:6379" {}
  server "127.0.0.1:6380" {
    username = "other"
  }
  server "127.0.0.1:6381" {
    password = "srv-pw"
  }
}
pool "open" {
  listen   = "127.0.0.1:22122"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	for i, want := range [][2]string{{"proxy", "pool-pw"}, {"other", "pool-pw"}, {"proxy", "srv-pw"}} {
		if u, pw := p.Credentials(p.Servers[i]); u != want[0] || pw != want[1] {
			t.Errorf("server %d: %q %q, want %q", i, u, pw, want)
		}
	}
	if p.DefaultUser == nil || p.DefaultUser.Name != "default" || !p.DefaultUser.CheckPassword([]byte("pool-pw")) || !p.DefaultUser.AllCommands() {
		t.Errorf("redis_auth is not the default user's password: %+v", p.DefaultUser)
	}
	if open := cfg.Pools[1]; open.Users != nil || open.DefaultUser != nil {
		t.Errorf("a pool without users and redis_auth has users")
	}
	if !cfg.HasSecrets() {
		t.Error("HasSecrets is false with redis_auth")
	}
	if s := p.String(); strings.Contains(s, "pool-pw") || !strings.Contains(s, "redis_username=proxy") {
		t.Errorf("String: %s", s)
	}
	if s := fmt.Sprintf("%#v %v %v", cfg.Redacted().Pools[0].Servers, p, cfg.Redacted().Pools[0].Servers[2].Password); strings.Contains(s, "pool-pw") || strings.Contains(s, "srv-pw") {
		t.Errorf("a password printed: %s", s)
	}
}
