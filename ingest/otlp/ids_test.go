package otlp

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/outboxd/outboxd/ingest"
)

// logRecord encodes a LogRecord with a string body and the ids given (nil:
// none).
func logRecord(body string, traceID, spanID []byte) []byte {
	var b []byte
	if traceID != nil {
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, traceID)
	}
	if spanID != nil {
		b = protowire.AppendTag(b, 10, protowire.BytesType)
		b = protowire.AppendBytes(b, spanID)
	}
	var v []byte // AnyValue{string_value}
	v = protowire.AppendTag(v, 1, protowire.BytesType)
	v = protowire.AppendString(v, body)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

var (
	goodTrace = []byte("0123456789abcdef")
	goodSpan  = []byte("01234567")
)

// TestBadIDsLeftOut: an id of the wrong length is left out of its record,
// and the request is stored (pdata alone refuses the whole request).
func TestBadIDsLeftOut(t *testing.T) {
	proto := requestOf(
		logRecord("span of 3", goodTrace, []byte{1, 2, 3}),
		logRecord("trace of 17", append(goodTrace, 'x'), goodSpan),
		logRecord("both good", goodTrace, goodSpan),
	)
	json := []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[
		{"body":{"stringValue":"span of 3"},"traceId":"30313233343536373839616263646566","spanId":"010203"},
		{"body":{"stringValue":"trace not hex"},"traceId":"zz","spanId":"3031323334353637"},
		{"body":{"stringValue":"both good"},"traceId":"30313233343536373839616263646566","spanId":"3031323334353637","timeUnixNano":"9007199254740993"}]}]}]}`)
	check := func(t *testing.T, recs []map[string]any) {
		t.Helper()
		if len(recs) != 3 {
			t.Fatalf("%d records stored, want 3", len(recs))
		}
		want := map[string][2]bool{"span of 3": {true, false}, "trace of 17": {false, true}, "trace not hex": {false, true}, "both good": {true, true}}
		for _, r := range recs {
			o := r["otel"].(map[string]any)
			w, ok := want[r["message"].(string)]
			if !ok {
				t.Fatalf("record %v", r)
			}
			if (o["trace_id"] == "30313233343536373839616263646566") != w[0] || (o["trace_id"] != nil) != w[0] ||
				(o["span_id"] == "3031323334353637") != w[1] || (o["span_id"] != nil) != w[1] {
				t.Errorf("%s: trace_id %v, span_id %v", r["message"], o["trace_id"], o["span_id"])
			}
		}
	}
	t.Run("OTLP/HTTP protobuf", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := receiver(t, Config{}, ingest.QueueAppender{Queue: q})
		if r := post(t, url, ctProto, proto); r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		check(t, stored(t, q))
	})
	t.Run("OTLP/HTTP JSON", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := receiver(t, Config{}, ingest.QueueAppender{Queue: q})
		if r := post(t, url, ctJSON, json); r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		recs := stored(t, q)
		check(t, recs)
		for _, r := range recs {
			if r["message"] == "both good" && r["ts"] != "1970-04-15T05:59:59.254740993Z" {
				t.Errorf("an int64 given as a string lost its precision: ts %v", r["ts"])
			}
		}
	})
	t.Run("OTLP/gRPC", func(t *testing.T) {
		q := openQueue(t, 0)
		_, addr := grpcReceiver(t, Config{}, ingest.QueueAppender{Queue: q})
		if err := exportRaw(context.Background(), grpcConn(t, addr), proto); err != nil {
			t.Fatal(err)
		}
		check(t, stored(t, q))
	})
	t.Run("a request broken otherwise is still refused", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := receiver(t, Config{}, ingest.QueueAppender{Queue: q})
		broken := append(requestOf(logRecord("x", goodTrace, []byte{1})), 0xff)
		if r := post(t, url, ctProto, broken); r.status != 400 {
			t.Fatalf("status %d", r.status)
		}
	})
}

// FuzzWithoutBadIDs: the rewrite never panics, and leaves bytes pdata
// takes as they are.
func FuzzWithoutBadIDs(f *testing.F) {
	f.Add(requestOf(logRecord("a", goodTrace, []byte{1})))
	f.Add(requestOf(logRecord("a", goodTrace, goodSpan)))
	f.Add([]byte("\xff\xff garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, changed := withoutBadIDsProto(b)
		if _, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b); err == nil && changed {
			t.Fatalf("a request pdata takes was changed: %x -> %x", b, out)
		}
		if !changed && string(out) != string(b) {
			t.Fatal("unchanged, but other bytes")
		}
		withoutBadIDsJSON(b)
	})
}
