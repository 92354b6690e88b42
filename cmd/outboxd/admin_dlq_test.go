package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminDeadLetters(t *testing.T) {
	t.Run("metrics count the dead letters through the running queue, and a purge beside the daemon shows at the next scrape", func(t *testing.T) {
		refuser := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "schema mismatch", 400) })
		srv := newServer(refuser)
		defer srv.Close()
		port, adminPort := freePort(t), freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, fmt.Appendf(nil, "data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:%d\nsinks:\n  picky:\n    type: http\n    url: %s\n    linger: 10ms\nadmin:\n  listen: 127.0.0.1:%d\n",
			t.TempDir(), port, srv.URL, adminPort), 0o600)
		startDaemon(t, cfgPath)
		metric := func() string {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, `outboxd_dlq_records{sink="picky"}`) {
					return l
				}
			}
			return "no outboxd_dlq_records for picky"
		}
		if m := metric(); m != `outboxd_dlq_records{sink="picky"} 0` {
			t.Fatalf("before any dead letter: %s", m)
		}
		postLines(t, port, "dead-%02d", 3)
		waitUntil(t, "3 dead letters in the metrics", func() bool { return metric() == `outboxd_dlq_records{sink="picky"} 3` })
		out, err := exec.Command(outboxdBinary(t), "dlq", "purge", "-sink", "picky", "-config", cfgPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "purged 3 dead letters") {
			t.Fatalf("purge: %v\n%s", err, out)
		}
		if m := metric(); m != `outboxd_dlq_records{sink="picky"} 0` {
			t.Fatalf("after the purge: %s", m)
		}
	})
}
