package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outboxd/outboxd/config"
)

func TestHTTPSinkBasicAuth(t *testing.T) {
	t.Run("basic_auth from the config, its password from the environment, reaches the collector", func(t *testing.T) {
		var got atomic.Value
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, _ := r.BasicAuth()
			got.Store(u + ":" + p)
		}))
		defer srv.Close()
		t.Setenv("COLLECTOR_PASSWORD", "s3cret")
		cfg, err := config.Parse(fmt.Appendf(nil, "sinks:\n  c:\n    type: http\n    url: %s\n    basic_auth:\n      username: shipper\n      password: ${COLLECTOR_PASSWORD}\n", srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		sink, err := buildSink("c", cfg.Sinks["c"], slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		if err := sink.Send(t.Context(), [][]byte{[]byte(`{"message":"hi"}`)}); err != nil {
			t.Fatal(err)
		}
		if got.Load() != "shipper:s3cret" {
			t.Fatalf("the collector saw basic auth %q", got.Load())
		}
	})
}

func TestSinkSecretsRedacted(t *testing.T) {
	t.Run("a collector answering 401 keeps the records queued, and /readyz and the log hold no secret of the URL", func(t *testing.T) {
		var refused atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			refused.Add(1)
			http.Error(w, "token expired", http.StatusUnauthorized)
		}))
		defer srv.Close()
		secretURL := strings.Replace(srv.URL, "http://", "http://shipper:pa55word@", 1) + "/v1?api_key=t0ken"
		port, adminPort := freePort(t), freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, fmt.Appendf(nil, "data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:%d\nadmin:\n  listen: 127.0.0.1:%d\nsinks:\n  c:\n    type: http\n    url: %s\n    linger: 10ms\n    retry: {initial: 10ms, max: 50ms}\n",
			t.TempDir(), port, adminPort, secretURL), 0o600)
		d := startDaemon(t, cfgPath)
		postLines(t, port, "kept-%02d", 10)
		waitUntil(t, "several refusals", func() bool { return refused.Load() >= 3 })
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ready struct {
			Sinks map[string]struct {
				QueueDepth int    `json:"queue_depth"`
				LastError  string `json:"last_error"`
			}
		}
		if err := json.Unmarshal(body, &ready); err != nil {
			t.Fatalf("/readyz: %v: %s", err, body)
		}
		c := ready.Sinks["c"]
		if c.QueueDepth != 10 || !strings.Contains(c.LastError, "401") || !strings.Contains(c.LastError, "misconfigured or unauthorized") {
			t.Fatalf("/readyz: %s", body)
		}
		if err := d.stop(t); err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"pa55word", "t0ken"} {
			if strings.Contains(string(body), secret) || strings.Contains(d.log(), secret) {
				t.Errorf("%q leaked:\n/readyz: %s\nlog: %s", secret, body, lastLines(d.log(), 5))
			}
		}
		if !strings.Contains(d.log(), "level=ERROR") {
			t.Errorf("a refused credential was not logged as an error:\n%s", lastLines(d.log(), 5))
		}
	})
}
