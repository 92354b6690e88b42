package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestKillDaemon(t *testing.T) {
	t.Run("kill -9 of the daemon with a sink down loses no record answered 202", func(t *testing.T) {
		bin := outboxdBinary(t)
		coll, up, srv := downSink(t)
		port := freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf(`data_dir: %s
ingest:
  http:
    listen: 127.0.0.1:%d
sinks:
  collector:
    type: http
    url: %s
    linger: 10ms
    retry:
      initial: 10ms
      max: 50ms
routes:
  - sinks: [collector]
`, t.TempDir(), port, srv.URL)), 0o600)
		url := fmt.Sprintf("http://127.0.0.1:%d/v1/logs", port)
		start := func() *exec.Cmd { return startListening(t, bin, cfgPath, url) }

		cmd := start()
		accepted := 0
		for i := range 50 {
			var body strings.Builder
			for j := range 20 {
				fmt.Fprintf(&body, "{\"message\":\"kill9-%d-%d\"}\n", i, j)
			}
			resp, err := http.Post(url, "application/x-ndjson", strings.NewReader(body.String()))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 202 {
				accepted += 20
			}
		}
		cmd.Process.Kill() // SIGKILL, with every record still queued
		cmd.Wait()

		up.Store(true)
		start()
		if accepted != 1000 {
			t.Fatalf("only %d of 1000 records were accepted", accepted)
		}
		distinct := func() int {
			seen := map[string]bool{}
			coll.mu.Lock()
			defer coll.mu.Unlock()
			for _, l := range coll.lines {
				var rec struct{ Message string }
				if json.Unmarshal([]byte(l), &rec) == nil && strings.HasPrefix(rec.Message, "kill9-") {
					seen[rec.Message] = true
				}
			}
			return len(seen)
		}
		waitUntil(t, "every accepted record at the collector", func() bool { return distinct() == accepted })
		t.Logf("%d records answered 202 before kill -9; all delivered after restart", accepted)
	})
}

// downSink is a collector that answers 503 until up is set.
func downSink(t *testing.T) (coll *collector, up *atomic.Bool, srv *httptest.Server) {
	coll, up = &collector{}, &atomic.Bool{}
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(503)
			return
		}
		coll.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return coll, up, srv
}

// startListening runs the daemon on cfgPath until url answers; the test's
// cleanup kills it.
func startListening(t *testing.T, bin, cfgPath, url string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitUntil(t, "the daemon to listen", func() bool {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return cmd
}
