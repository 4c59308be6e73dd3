package resp

import (
	"testing"
)

func TestEveryCommandClassified(t *testing.T) {
	for i := range redisCommands {
		f := &redisCommands[i]
		if _, ok := classify(f); !ok {
			t.Errorf("%s: no routing decision; add it to commandPolicy", f.name)
		}
	}
	for name := range commandPolicy {
		if _, ok := commands[name]; !ok {
			t.Errorf("commandPolicy names %q, which redis %s does not have", name, redisCommandsVersion)
		}
	}
}
