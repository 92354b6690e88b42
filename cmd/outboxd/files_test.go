package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFiles runs the daemon on ingest.files: lines reach the sink with
// their path and offset, stats lists each file's committed offset and lag,
// the metrics count them, and a file the daemon may not read is logged
// once while the others are read.
func TestFiles(t *testing.T) {
	c := &collector{}
	srv := newServer(c)
	defer srv.Close()
	logDir, dataDir, adminPort := t.TempDir(), t.TempDir(), freePort(t)
	os.Chmod(logDir, 0o755)
	os.Chmod(dataDir, 0o777)
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(`data_dir: %s
ingest:
  files:
    - paths: [%s/*.log]
      rescan: 100ms
admin:
  listen: 127.0.0.1:%d
sinks:
  collector: {type: http, url: %s, linger: 10ms}
routes:
  - sources: [file]
    sinks: [collector]
`, dataDir, logDir, adminPort, srv.URL))
	os.WriteFile(filepath.Join(logDir, "a.log"), []byte("alpha 1\nalpha 2\n"), 0o644)
	os.WriteFile(filepath.Join(logDir, "secret.log"), []byte("not for outboxd\n"), 0o600)
	asRoot := os.Geteuid() == 0
	if asRoot {
		os.Chown(filepath.Join(logDir, "a.log"), 65534, 65534)
	}
	d := startFilesDaemon(t, cfg, asRoot)
	waitUntil(t, "both lines at the collector", func() bool { return c.count(`"message":"alpha`) == 2 })
	os.WriteFile(filepath.Join(logDir, "b.log"), []byte("beta 1\n"), 0o644)
	waitUntil(t, "a new file's line", func() bool { return c.count(`"message":"beta 1"`) == 1 })
	c.mu.Lock()
	lines := append([]string(nil), c.lines...)
	c.mu.Unlock()
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if r["message"] == "alpha 2" && (r["path"] != filepath.Join(logDir, "a.log") || r["offset"] != 8.0 || r["source"] != "file") {
			t.Fatalf("record: %v", r)
		}
	}
	if got := metric(t, adminPort, `outboxd_ingest_records_total{endpoint="files"}`); got != 3 {
		t.Errorf("outboxd_ingest_records_total{endpoint=\"files\"} = %v, want 3", got)
	}
	if asRoot {
		// The daemon runs as nobody: secret.log (0600 root) cannot be
		// opened; that is said once and counted, and the rest is read.
		if n := strings.Count(d.log(), "cannot open "+filepath.Join(logDir, "secret.log")); n != 1 {
			t.Errorf("the unreadable file was logged %d times, want once:\n%s", n, d.log())
		}
		if got := metric(t, adminPort, "outboxd_files_errors_total"); got < 1 {
			t.Errorf("outboxd_files_errors_total = %v", got)
		}
	}
	if err := d.stop(t); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.log())
	}
	out, err := exec.Command(outboxdBinary(t), "stats", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	want := fmt.Sprintf("%s  16         16    0", filepath.Join(logDir, "a.log"))
	if !strings.Contains(string(out), "FILE") || !strings.Contains(strings.Join(strings.Fields(string(out)), " "), strings.Join(strings.Fields(want), " ")) {
		t.Fatalf("stats does not list a.log at offset 16 of 16:\n%s", out)
	}
}

// startFilesDaemon starts the daemon, as user nobody when asNobody (setpriv,
// from util-linux), so that file permissions apply to it.
func startFilesDaemon(t *testing.T, cfg string, asNobody bool) *daemonProc {
	t.Helper()
	if !asNobody {
		return startDaemon(t, cfg)
	}
	os.Chmod(cfg, 0o644)
	for _, dir := range []string{filepath.Dir(cfg), filepath.Dir(filepath.Dir(cfg))} { // t.TempDir's, and the test's
		os.Chmod(dir, 0o755)
	}
	bin := outboxdBinary(t)
	for dir := filepath.Dir(bin); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if info, err := os.Stat(dir); err == nil && info.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(dir, info.Mode().Perm()|0o005)
		}
	}
	p := &daemonProc{cmd: exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "run", "-config", cfg), done: make(chan error, 1)}
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); err := <-p.done; p.done <- err })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.log(), "outboxd ready") {
		if strings.Contains(p.log(), "outboxd: ") || time.Now().After(deadline) {
			t.Fatalf("not ready: %s", p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}
