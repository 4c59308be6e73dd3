package process

import (
	"fmt"
	"os"
)

// WritePidFile writes the pid atomically (write then rename).
func WritePidFile(path string) error {
	return writeFileAtomic(path, fmt.Sprintf("%d\n", os.Getpid()))
}

func writeFileAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("process: %w", err)
	}
	return nil
}
