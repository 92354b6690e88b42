package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDLQCommands(t *testing.T) {
	t.Run("records a collector refuses are listed with their reason, then purged", func(t *testing.T) {
		bin := outboxdBinary(t)
		refuser := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "schema mismatch", 400) })
		srv := newServer(refuser)
		defer srv.Close()
		httpPort := freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:%d\nsinks:\n  picky:\n    type: http\n    url: %s\n    linger: 10ms\n",
			t.TempDir(), httpPort, srv.URL)), 0o600)
		cmd := exec.Command(bin, "run", "-config", cfgPath)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		url := fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort)
		waitUntil(t, "the daemon", func() bool {
			resp, err := http.Post(url, "text/plain", strings.NewReader("refuse me\n"))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 202
		})
		var out []byte
		waitUntil(t, "the dead letter", func() bool {
			out, _ = exec.Command(bin, "dlq", "list", "-sink", "picky", "-config", cfgPath).CombinedOutput()
			return strings.Contains(string(out), "schema mismatch")
		})
		if !strings.Contains(string(out), "answered 400") || !strings.Contains(string(out), `"source":"http"`) {
			t.Fatalf("list:\n%s", out)
		}
		out, err := exec.Command(bin, "dlq", "purge", "-sink", "picky", "-config", cfgPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "purged 1 dead letters") {
			t.Fatalf("purge: %v\n%s", err, out)
		}
		out, _ = exec.Command(bin, "dlq", "list", "-sink", "picky", "-config", cfgPath).CombinedOutput()
		if strings.Contains(string(out), "schema mismatch") {
			t.Fatalf("still listed after purge:\n%s", out)
		}
		if out, err := exec.Command(bin, "dlq", "list", "-sink", "nope", "-config", cfgPath).CombinedOutput(); err == nil {
			t.Fatalf("an unknown sink was accepted:\n%s", out)
		}
	})
}
