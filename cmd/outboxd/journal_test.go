package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJournalMissing: without journalctl the journal input is an error in
// the log and in /readyz, and the other inputs run on.
func TestJournalMissing(t *testing.T) {
	dir := t.TempDir()
	httpPort, adminPort := freePort(t), freePort(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:%d\n  journal:\n    directory: %s\n"+
		"sinks:\n  c:\n    type: console\nadmin:\n  listen: 127.0.0.1:%d\n", filepath.Join(dir, "data"), httpPort, t.TempDir(), adminPort)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	outboxdBinary(t)              // built with the real PATH
	t.Setenv("PATH", t.TempDir()) // the daemon finds no journalctl
	d := startDaemon(t, cfgPath)
	var body struct {
		Ready  bool              `json:"ready"`
		Ingest map[string]string `json:"ingest_errors"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if body.Ingest["journal"] != "" || time.Now().After(deadline) {
			if resp.StatusCode != http.StatusServiceUnavailable || body.Ready {
				t.Errorf("/readyz answered %d, ready %v", resp.StatusCode, body.Ready)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(body.Ingest["journal"], "journalctl not found") {
		t.Fatalf("/readyz ingest_errors: %v", body.Ingest)
	}
	if !strings.Contains(d.log(), "journalctl not found") {
		t.Errorf("the log does not say it:\n%s", lastLines(d.log(), 10))
	}
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort), "text/plain", strings.NewReader("a\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("HTTP ingest answered %d beside a failing journal, want 202", resp.StatusCode)
	}
}
