package process

import (
	"fmt"
	"os"
)

// WritePidFile writes the pid atomically (write then rename).
func WritePidFile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("process: pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("process: pid file: %w", err)
	}
	return nil
}
