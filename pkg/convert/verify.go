package convert

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/hashkit"
)

// verify loads the generated HCL as nuthatch would and checks that every
// server kept its twemproxy name and weight and that every ring builds.
// A failure here means the YAML uses something nuthatch refuses that the
// earlier checks did not catch (an overlap of listen addresses, say).
func (c *converter) verify(out []byte, pools []*pool) {
	cfg, err := config.Parse(out, c.file+" (converted)")
	if err != nil {
		var le *config.LoadError
		if errors.As(err, &le) {
			starts := poolStarts(out)
			for _, d := range le.Diags {
				msg := "nuthatch rejects the converted configuration: " + d.Summary
				if d.Detail != "" {
					msg += "; " + d.Detail
				}
				line := 0
				if d.Subject != nil {
					// Point at the YAML pool whose block holds the problem.
					if i := sort.SearchInts(starts, d.Subject.Start.Line+1) - 1; i >= 0 && i < len(pools) {
						line = pools[i].line
						msg = fmt.Sprintf("pool %q: %s", pools[i].name, msg)
					}
				}
				c.errorf(ErrUnsupported, line, "%s", msg)
			}
			return
		}
		c.errorf(ErrUnsupported, 0, "nuthatch rejects the converted configuration: %v", err)
		return
	}
	if len(cfg.Pools) != len(pools) {
		c.errorf(ErrUnsupported, 0, "internal error: %d pools converted to %d", len(pools), len(cfg.Pools))
		return
	}
	for i, cp := range cfg.Pools {
		p := pools[i]
		if len(cp.Servers) != len(p.servers) {
			c.errorf(ErrUnsupported, p.line, "internal error: pool %q: %d servers converted to %d", p.name, len(p.servers), len(cp.Servers))
			continue
		}
		nodes := make([]hashkit.Node, len(cp.Servers))
		for j, cs := range cp.Servers {
			s := p.servers[j]
			if got := cs.PlacementName(); got != s.name || cs.Weight != s.weight {
				c.errorf(ErrUnsupported, s.line, "internal error: pool %q: server %q converted to name %q weight %d, want %q weight %d",
					p.name, s.raw, got, cs.Weight, s.name, s.weight)
			}
			nodes[j] = hashkit.Node{Name: cs.PlacementName(), Weight: cs.Weight}
		}
		if _, err := hashkit.Build(cp.Distribution, nodes, nil); err != nil {
			c.errorf(ErrUnsupported, p.line, "pool %q: %v", p.name, err)
		}
	}
}

// poolStarts returns the 1-based line of each pool block in the output.
func poolStarts(out []byte) []int {
	var starts []int
	for i, line := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("pool ")) {
			starts = append(starts, i+1)
		}
	}
	return starts
}
