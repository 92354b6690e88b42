package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestAdmin(t *testing.T) {
	t.Run("healthz, readyz with a failing sink, and metrics", func(t *testing.T) {
		bin := outboxdBinary(t)
		httpPort, adminPort := freePort(t), freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		// The sink points at a port where nothing listens: it fails.
		os.WriteFile(cfgPath, []byte(fmt.Sprintf(`data_dir: %s
ingest:
  http:
    listen: 127.0.0.1:%d
sinks:
  down:
    type: http
    url: http://127.0.0.1:%d/
    linger: 10ms
routes:
  - sinks: [down]
admin:
  listen: 127.0.0.1:%d
`, t.TempDir(), httpPort, freePort(t), adminPort)), 0o600)
		cmd := exec.Command(bin, "run", "-config", cfgPath)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
		get := func(path string) (int, string) {
			resp, err := http.Get(admin + path)
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		waitUntil(t, "the admin endpoint", func() bool { code, _ := get("/healthz"); return code == 200 })
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort), "text/plain", strings.NewReader("a\nb\nc\n"))
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("post: %v %v", err, resp)
		}
		resp.Body.Close()

		var ready struct {
			Ready bool
			Sinks map[string]struct {
				QueueDepth int `json:"queue_depth"`
				Failing    bool
				LastError  string `json:"last_error"`
			}
		}
		waitUntil(t, "readyz to report the failing sink", func() bool {
			_, body := get("/readyz")
			json.Unmarshal([]byte(body), &ready)
			return ready.Sinks["down"].Failing
		})
		if !ready.Ready || ready.Sinks["down"].QueueDepth != 3 || ready.Sinks["down"].LastError == "" {
			t.Fatalf("readyz = %+v", ready)
		}
		out, err := exec.Command(bin, "stats", "-config", cfgPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "down") || !regexp.MustCompile(`down\s+3\s`).Match(out) {
			t.Errorf("stats beside the running daemon: %v\n%s", err, out)
		}
		code, metrics := get("/metrics")
		for _, want := range []string{
			`outboxd_queue_records{sink="down"} 3`, `outboxd_ingest_records_total{endpoint="http"} 3`,
			`outboxd_forward_retries_total{sink="down"}`, `outboxd_queue_oldest_age_seconds{sink="down"}`,
			`outboxd_sink_failing_seconds{sink="down"}`, "go_goroutines",
			`outboxd_dlq_records{sink="down"} 0`, `outboxd_ingest_bytes_total{endpoint="http"}`,
			`outboxd_outbox_commit_seconds_bucket{le="0.001"}`, `outboxd_outbox_group_commit_writes_bucket{le="1"}`,
			"outboxd_outbox_commit_seconds_count", "outboxd_outbox_group_commit_writes_sum",
			`outboxd_sink_full{sink="down"} 0`, "outboxd_outbox_disk_full 0", "outboxd_data_dir_avail_bytes ", "outboxd_data_dir_size_bytes ",
		} {
			if code != 200 || !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %q", want)
			}
		}
		if avail, size := metricValue(metrics, "outboxd_data_dir_avail_bytes"), metricValue(metrics, "outboxd_data_dir_size_bytes"); !(avail > 0 && avail <= size) {
			t.Errorf("data_dir space: %v bytes free of %v", avail, size)
		}
	})
}
