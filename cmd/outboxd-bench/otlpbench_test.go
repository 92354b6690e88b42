package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
)

func TestOTLPTemplate(t *testing.T) {
	t.Run("a request holds the batch, each LogRecord of the size asked, numbered from first with the send time", func(t *testing.T) {
		tmpl, err := newOTLPTemplate(512, 256)
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.recordSize != 256 {
			t.Fatalf("LogRecord of %d bytes, want 256", tmpl.recordSize)
		}
		sent := time.Unix(0, 1_796_212_800_123_456_789)
		ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(tmpl.request(1024, sent))
		if err != nil {
			t.Fatal(err)
		}
		lrs := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
		if lrs.Len() != 512 {
			t.Fatalf("%d LogRecords, want 512", lrs.Len())
		}
		c := &consumer{}
		for k := range lrs.Len() {
			body := lrs.At(k).Body().Str()
			if want := fmt.Sprintf("bench-%012d-%d ", 1024+k, sent.UnixNano()); !strings.HasPrefix(body, want) {
				t.Fatalf("body %d: %.60q, want it to start %q", k, body, want)
			}
			// As the record reaches Kafka: the consumer must read both numbers.
			c.add([]byte(`{"host":"load-1","message":"`+body+`"}`), sent.Add(time.Millisecond))
		}
		if c.count() != 512 || !c.seen.has(1024) || !c.seen.has(1535) || c.seen.has(1536) {
			t.Fatalf("the consumer counted %d", c.count())
		}
		if p50, _, _ := c.percentiles(); p50 != time.Millisecond {
			t.Fatalf("latency %v, want 1ms", p50)
		}
	})
	t.Run("a size smaller than the LogRecord's fields is refused", func(t *testing.T) {
		if _, err := newOTLPTemplate(512, 40); err == nil || !strings.Contains(err.Error(), "at least") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOTLPCommand(t *testing.T) {
	t.Run("gRPC is refused until its receiver is built", func(t *testing.T) {
		var out bytes.Buffer
		err := otlpCommand(context.Background(), []string{"-protocol", "grpc"}, &out)
		if err == nil || !strings.Contains(err.Error(), "not built yet") {
			t.Fatalf("err = %v", err)
		}
	})
	if raceEnabled {
		t.Skip("builds and drives the real binary; runs in the plain pass")
	}
	for _, sink := range []string{"kafka", "down"} {
		t.Run("a short run against the real daemon, sink "+sink+", prints every figure", func(t *testing.T) {
			os.Chdir("../..") // the bench builds ./cmd/outboxd from the repository root
			defer os.Chdir("cmd/outboxd-bench")
			var out bytes.Buffer
			err := otlpCommand(context.Background(), []string{"-records", "10240", "-clients", "4", "-runs", "2", "-sink", sink}, &out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			rows := []string{"| 1 | ", "| 2 | ", "| median | ", "requests of 512 LogRecords of 256 bytes", "| OTLP/HTTP protobuf, 4 clients, 512 LogRecords a request"}
			if sink == "kafka" {
				rows = append(rows, "run 1: 10240 of 10240 accepted records at Kafka", "run 2: 10240 of 10240 accepted records at Kafka")
			} else {
				rows = append(rows, "ingest only")
			}
			for _, row := range rows {
				if !strings.Contains(out.String(), row) {
					t.Errorf("no %q in:\n%s", row, out.String())
				}
			}
			if strings.Contains(out.String(), "(first: ") {
				t.Errorf("requests were refused:\n%s", out.String())
			}
			t.Log("\n" + out.String())
		})
	}
}
