package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
)

func TestKillDaemonOTLP(t *testing.T) {
	t.Run("kill -9 under OTLP/HTTP load loses no record answered 200", func(t *testing.T) {
		bin := outboxdBinary(t)
		coll, up, srv := downSink(t)
		port := freePort(t)
		cfgPath := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(
			"data_dir: %s\ningest:\n  otlp:\n    http: {listen: 127.0.0.1:%d}\nsinks:\n  collector:\n    type: http\n    url: %s\n    linger: 10ms\n"+
				"    retry:\n      initial: 10ms\n      max: 50ms\nroutes:\n  - sources: [otlp]\n    sinks: [collector]\n", t.TempDir(), port, srv.URL))
		url := fmt.Sprintf("http://127.0.0.1:%d/v1/logs", port)
		start := func() *exec.Cmd { return startListening(t, bin, cfgPath, url) }
		batch := func(g, i int) []byte {
			ld := plog.NewLogs()
			lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
			for j := range 50 {
				lrs.AppendEmpty().Body().SetStr(fmt.Sprintf("otlp9-%d-%d-%d", g, i, j))
			}
			b, _ := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
			return b
		}

		cmd := start()
		var (
			mu       sync.Mutex
			accepted []string // the messages of batches answered 200
			senders  sync.WaitGroup
			stop     atomic.Bool
		)
		for g := range 8 {
			senders.Go(func() {
				for i := 0; !stop.Load(); i++ {
					resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(batch(g, i)))
					if err != nil {
						return // the daemon is gone
					}
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						for j := range 50 {
							accepted = append(accepted, fmt.Sprintf("otlp9-%d-%d-%d", g, i, j))
						}
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(500 * time.Millisecond)
		cmd.Process.Kill() // SIGKILL while requests are in flight
		cmd.Wait()
		stop.Store(true)
		senders.Wait()
		if len(accepted) == 0 {
			t.Fatal("no request was answered 200 before the kill")
		}

		up.Store(true)
		start()
		missing := func() []string {
			seen := map[string]bool{}
			coll.mu.Lock()
			for _, l := range coll.lines {
				var rec struct{ Message string }
				if json.Unmarshal([]byte(l), &rec) == nil && strings.HasPrefix(rec.Message, "otlp9-") {
					seen[rec.Message] = true
				}
			}
			coll.mu.Unlock()
			var out []string
			for _, m := range accepted {
				if !seen[m] {
					out = append(out, m)
				}
			}
			return out
		}
		waitUntil(t, "every record answered 200 at the collector", func() bool { return len(missing()) == 0 })
		t.Logf("%d records answered 200 before kill -9 under load; all delivered after restart", len(accepted))
	})
}
