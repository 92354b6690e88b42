package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"

	"github.com/outboxd/outboxd/internal/otlptest"
)

func TestOTLPDaemon(t *testing.T) {
	t.Run("OTLP/HTTP records are answered 200 once stored, reach the sink with source otlp, and are counted", func(t *testing.T) {
		coll := &collector{}
		srv := httptest.NewServer(coll)
		defer srv.Close()
		otlpPort, adminPort := freePort(t), freePort(t)
		cfgPath := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(
			"data_dir: %s\nadmin:\n  listen: 127.0.0.1:%d\ningest:\n  otlp:\n    http: {listen: 127.0.0.1:%d}\n"+
				"sinks:\n  c:\n    type: http\n    url: %s\n    linger: 10ms\nroutes:\n  - sources: [otlp]\n    sinks: [c]\n",
			t.TempDir(), adminPort, otlpPort, srv.URL))
		d := startDaemon(t, cfgPath)
		var recs []string
		for i := range 3 {
			recs = append(recs, fmt.Sprintf(`{"body":{"stringValue":"otlp-%02d"},"severityNumber":9,"traceId":"5b8efff798038103d269b633813fc60c"}`, i))
		}
		body := `{"resourceLogs":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"app-9"}}]},"scopeLogs":[{"logRecords":[` +
			strings.Join(recs, ",") + `]}]}]}`
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", otlpPort), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(answer) != "{}" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("answer %d %q", resp.StatusCode, answer)
		}
		waitUntil(t, "3 otlp records at the sink", func() bool { return coll.count(`"source":"otlp"`) >= 3 })
		coll.exactlyOnce(t, "otlp-%02d", 3)
		if n := coll.count(`"trace_id":"5b8efff798038103d269b633813fc60c"`); n != 3 || coll.count(`"host":"app-9"`) != 3 {
			t.Fatalf("%d records with the trace id, want 3", n)
		}
		m, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(m.Body)
		m.Body.Close()
		if !strings.Contains(string(metrics), `outboxd_ingest_records_total{endpoint="otlp_http"} 3`) {
			t.Fatalf("metrics:\n%s", metrics)
		}
		if err := d.stop(t); err != nil {
			t.Fatalf("exit: %v\n%s", err, d.log())
		}
	})
}

func TestOTLPGRPCDaemon(t *testing.T) {
	t.Run("otlploggrpc -> daemon -> Kafka: every record found once with the mapping, and counted", func(t *testing.T) {
		const n = 3000
		broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "edge-logs"))
		if err != nil {
			t.Fatal(err)
		}
		defer broker.Close()
		grpcPort, adminPort := freePort(t), freePort(t)
		cfgPath := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(
			"data_dir: %s\nadmin:\n  listen: 127.0.0.1:%d\ningest:\n  otlp:\n    grpc: {listen: 127.0.0.1:%d, token: s3cret}\n"+
				"sinks:\n  main:\n    type: kafka\n    brokers: [%s]\n    topic: edge-logs\n    linger: 10ms\nroutes:\n  - sources: [otlp]\n    sinks: [main]\n",
			t.TempDir(), adminPort, grpcPort, broker.ListenAddrs()[0]))
		d := startDaemon(t, cfgPath)
		ctx := context.Background()
		exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(fmt.Sprintf("127.0.0.1:%d", grpcPort)), otlploggrpc.WithInsecure(),
			otlploggrpc.WithCompressor("gzip"), otlploggrpc.WithHeaders(map[string]string{"authorization": "Bearer s3cret"}),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
		if err != nil {
			t.Fatal(err)
		}
		otlptest.ExportNumbered(t, exp, n)
		got := consumeTopic(t, broker, n)
		recs := make([]map[string]any, len(got))
		for i, v := range got {
			if err := json.Unmarshal([]byte(v), &recs[i]); err != nil {
				t.Fatalf("record %q: %v", v, err)
			}
		}
		otlptest.CheckNumbered(t, recs, n)
		m, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(m.Body)
		m.Body.Close()
		if !strings.Contains(string(metrics), fmt.Sprintf(`outboxd_ingest_records_total{endpoint="otlp_grpc"} %d`, n)) {
			t.Fatalf("metrics:\n%s", metrics)
		}
		if err := d.stop(t); err != nil {
			t.Fatalf("exit: %v\n%s", err, d.log())
		}
	})
}
