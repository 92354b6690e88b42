// Package otlptest is for tests: it exports numbered log records through
// an OpenTelemetry SDK exporter and checks the records outboxd stored of
// them, so that a receiver's test and a daemon's test check one mapping.
package otlptest

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
)

// ExportNumbered's records carry host.name app-1, service.name checkout,
// scope shop 0.9.1, severity WARN, the attribute i (their number), a trace
// context made of i, and a body of a kind that depends on i.

var base = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// ExportNumbered emits n records numbered by attribute i through exp, in
// batches of 512, and flushes them.
func ExportNumbered(t *testing.T, exp sdklog.Exporter, n int) {
	t.Helper()
	ctx := context.Background()
	res := resource.NewSchemaless(attribute.String("host.name", "app-1"), attribute.String("service.name", "checkout"))
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res),
		sdklog.WithProcessor(sdklog.NewBatchProcessor(exp, sdklog.WithMaxQueueSize(n), sdklog.WithExportMaxBatchSize(512))))
	logger := lp.Logger("shop", otellog.WithInstrumentationVersion("0.9.1"))
	for i := range n {
		var r otellog.Record
		r.SetTimestamp(base.Add(time.Duration(i) * time.Microsecond))
		r.SetSeverity(otellog.SeverityWarn)
		r.SetSeverityText("WARN")
		switch i % 4 {
		case 0:
			r.SetBody(attribute.StringValue("order " + strconv.Itoa(i)))
		case 1:
			r.SetBody(attribute.MapValue(attribute.Int("order", i), attribute.String("state", "paid")))
		case 2:
			r.SetBody(attribute.Int64Value(int64(i)))
		case 3:
			r.SetBody(attribute.ByteSliceValue([]byte{0, 1, byte(i)}))
		}
		r.AddAttributes(attribute.Int("i", i), attribute.Bool("even", i%2 == 0))
		r.SetEventName("order.event")
		var tid trace.TraceID
		var sid trace.SpanID
		copy(tid[:], fmt.Sprintf("%016d", i))
		copy(sid[:], fmt.Sprintf("%08d", i))
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
		logger.Emit(trace.ContextWithSpanContext(ctx, sc), r)
	}
	if err := lp.Shutdown(ctx); err != nil { // flushes every batch
		t.Fatal(err)
	}
}

// CheckNumbered checks that recs (stored records, decoded) are ExportNumbered's n records, each once
// and each with the mapping.
func CheckNumbered(t *testing.T, recs []map[string]any, n int) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("stored %d, want %d", len(recs), n)
	}
	seen := make([]bool, n)
	for _, rec := range recs {
		o := rec["otel"].(map[string]any)
		i := int(o["attributes"].(map[string]any)["i"].(float64))
		if seen[i] {
			t.Fatalf("record %d stored twice", i)
		}
		seen[i] = true
		var want string
		switch i % 4 {
		case 0:
			want = "order " + strconv.Itoa(i)
		case 1:
			want = fmt.Sprintf(`{"order":%d,"state":"paid"}`, i)
		case 2:
			want = strconv.Itoa(i)
		case 3:
			want = base64.StdEncoding.EncodeToString([]byte{0, 1, byte(i)})
		}
		tid := hex.EncodeToString(fmt.Appendf(nil, "%016d", i))
		sid := hex.EncodeToString(fmt.Appendf(nil, "%08d", i))
		scope := o["scope"].(map[string]any)
		resAttrs := o["resource"].(map[string]any)
		ts := base.Add(time.Duration(i) * time.Microsecond).Format(time.RFC3339Nano)
		if rec["message"] != want {
			t.Fatalf("record %d: message %q, want %q", i, rec["message"], want)
		}
		if rec["source"] != "otlp" || rec["host"] != "app-1" || rec["ts"] != ts ||
			rec["severity_number"] != float64(13) || rec["severity_text"] != "WARN" ||
			o["trace_id"] != tid || o["span_id"] != sid || o["flags"] != float64(1) || o["event_name"] != "order.event" ||
			scope["name"] != "shop" || scope["version"] != "0.9.1" ||
			resAttrs["service.name"] != "checkout" || o["attributes"].(map[string]any)["even"] != (i%2 == 0) {
			t.Fatalf("record %d: %v", i, rec)
		}
	}
}
