package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid", "../../etc/nuthatch"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.hcl"))
		for _, path := range files {
			src, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
	f.Add([]byte(""))
	f.Add([]byte("pool \"a\" {\n listen = \"unix:/x\"\n listen_mode = \"0o777\"\n protocol = \"redis\"\n server \"[::1]:1\" { address = \"unix:/y\" }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse(src, "fuzz.hcl")
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || len(le.Diags) == 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %T without diagnostics: %v", err, err)
			}
			_ = le.Error()
			if err := le.WriteText(io.Discard, 80, true); err != nil {
				t.Fatal(err)
			}
			return
		}
		// A Config returned without error is complete and valid.
		if len(cfg.Pools) == 0 || cfg.WorkerProcesses < 1 || cfg.WorkerProcesses > MaxWorkerProcesses {
			t.Fatalf("invalid config accepted: %+v", cfg)
		}
		for _, p := range cfg.Pools {
			if (len(p.Servers) == 0 && p.Cluster == nil) || p.ServerConnections < 1 || p.Listen.Network == "" ||
				(p.Protocol != ProtocolRedis && p.Protocol != ProtocolMemcache) ||
				!oneOf(p.Hash, Hashes) || !oneOf(p.Distribution, Distributions) ||
				(p.HashTag != "" && len(p.HashTag) != 2) || p.Timeout < 0 || p.Backlog < 0 {
				t.Fatalf("invalid pool accepted: %v %+v", p, *p)
			}
			for _, s := range p.Servers {
				// A sentinel pool's servers have a master name instead of an address.
				located := s.Address.Network != "" || (p.Sentinel != nil && s.Master != "")
				if s.Weight < 1 || s.Weight > MaxWeight || !located || s.PlacementName() == "" {
					t.Fatalf("invalid server accepted: %+v", *s)
				}
			}
		}
		if sc := cfg.Pools[0].Sentinel; sc != nil && (len(sc.Addresses) == 0 || sc.RefreshInterval <= 0) {
			t.Fatalf("invalid sentinel block accepted: %+v", *sc)
		}
		_ = cfg.Redacted()
	})
}
