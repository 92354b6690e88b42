package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckWarnings(t *testing.T) {
	t.Run("check prints a warning for a syslog input that no route takes, and exits 0", func(t *testing.T) {
		dataDir := t.TempDir()
		os.Chmod(dataDir, 0o700)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, fmt.Appendf(nil, "data_dir: %q\ningest:\n  http:\n    listen: 127.0.0.1:8080\n  syslog:\n    - listen: udp://127.0.0.1:5514\n"+
			"sinks:\n  c:\n    type: console\nroutes:\n  - sources: [http]\n    sinks: [c]\n", dataDir), 0o600)
		out, err := exec.Command(outboxdBinary(t), "check", "-config", cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("check: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "is valid, with warnings:") || !strings.Contains(string(out), "  warning: ingest.syslog: no route takes records from syslog") {
			t.Fatalf("output:\n%s", out)
		}
	})
}
