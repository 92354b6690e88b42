package otlp

import (
	"context"
	"strconv"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"

	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/internal/otlptest"
)

// TestSDKExport: the OpenTelemetry Go SDK's OTLP exporters (HTTP and
// gRPC) send thousands of records, plain and gzipped; every one is in the
// outbox with the mapping.
func TestSDKExport(t *testing.T) {
	const n = 5000
	ctx := context.Background()
	for _, comp := range []struct {
		name string
		c    otlploghttp.Compression
	}{{"uncompressed", otlploghttp.NoCompression}, {"gzip", otlploghttp.GzipCompression}} {
		t.Run("otlploghttp "+comp.name+": 5000 records, each stored with resource, attributes, trace context and body", func(t *testing.T) {
			q := openQueue(t, 0)
			h, url := receiver(t, Config{}, ingest.QueueAppender{Queue: q})
			exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(url), otlploghttp.WithCompression(comp.c),
				otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
			if err != nil {
				t.Fatal(err)
			}
			otlptest.ExportNumbered(t, exp, n)
			otlptest.CheckNumbered(t, stored(t, q), n)
			if h.Accepted.Load() != n {
				t.Fatalf("accepted %d, want %d", h.Accepted.Load(), n)
			}
		})
	}
	for _, comp := range []string{"", "gzip"} {
		t.Run("otlploggrpc compressor "+strconv.Quote(comp)+": 5000 records, each stored with resource, attributes, trace context and body", func(t *testing.T) {
			q := openQueue(t, 0)
			g, addr := grpcReceiver(t, Config{}, ingest.QueueAppender{Queue: q})
			exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(addr), otlploggrpc.WithInsecure(),
				otlploggrpc.WithCompressor(comp), otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
			if err != nil {
				t.Fatal(err)
			}
			otlptest.ExportNumbered(t, exp, n)
			otlptest.CheckNumbered(t, stored(t, q), n)
			if g.Accepted.Load() != n {
				t.Fatalf("accepted %d, want %d", g.Accepted.Load(), n)
			}
		})
	}
}
