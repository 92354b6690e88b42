package main

import (
	"bytes"
	"context"
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
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestKillDaemonOTLP(t *testing.T) {
	for _, proto := range []string{"OTLP/HTTP", "OTLP/gRPC"} {
		t.Run("kill -9 under "+proto+" load loses no record answered 200/OK", func(t *testing.T) {
			killUnderOTLPLoad(t, proto)
		})
	}
}

// killUnderOTLPLoad: 8 clients send batches of 50 records over proto; the
// daemon is killed with SIGKILL while requests are in flight; after a
// restart every record of a batch answered 200 (OK) reaches the collector.
func killUnderOTLPLoad(t *testing.T, proto string) {
	bin := outboxdBinary(t)
	coll, up, srv := downSink(t)
	httpPort, grpcPort := freePort(t), freePort(t)
	cfgPath := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(
		"data_dir: %s\ningest:\n  otlp:\n    http: {listen: 127.0.0.1:%d}\n    grpc: {listen: 127.0.0.1:%d}\n"+
			"sinks:\n  collector:\n    type: http\n    url: %s\n    linger: 10ms\n"+
			"    retry:\n      initial: 10ms\n      max: 50ms\nroutes:\n  - sources: [otlp]\n    sinks: [collector]\n", t.TempDir(), httpPort, grpcPort, srv.URL))
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort)
	start := func() *exec.Cmd { return startListening(t, bin, cfgPath, url) }
	batch := func(g, i int) plog.Logs {
		ld := plog.NewLogs()
		lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
		for j := range 50 {
			lrs.AppendEmpty().Body().SetStr(fmt.Sprintf("otlp9-%d-%d-%d", g, i, j))
		}
		return ld
	}
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	grpcClient := plogotlp.NewGRPCClient(conn)
	// send sends one batch; it returns whether it was answered 200 (OK),
	// and whether the daemon is gone.
	send := func(ld plog.Logs) (ok, gone bool) {
		if proto == "OTLP/HTTP" {
			b, _ := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
			resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(b))
			if err != nil {
				return false, true
			}
			resp.Body.Close()
			return resp.StatusCode == 200, false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Waits for the connection at first; after the kill, the call fails.
		_, err := grpcClient.Export(ctx, plogotlp.NewExportRequestFromLogs(ld), grpc.WaitForReady(true))
		return err == nil, status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded
	}

	cmd := start()
	var (
		mu       sync.Mutex
		accepted []string // the messages of batches answered 200 (OK)
		senders  sync.WaitGroup
		stop     atomic.Bool
	)
	for g := range 8 {
		senders.Go(func() {
			for i := 0; !stop.Load(); i++ {
				ok, gone := send(batch(g, i))
				if gone {
					return
				}
				if ok {
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
		t.Fatal("no request was answered 200/OK before the kill")
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
	waitUntil(t, "every record answered 200/OK at the collector", func() bool { return len(missing()) == 0 })
	t.Logf("%s: %d records answered before kill -9 under load; all delivered after restart", proto, len(accepted))
}
