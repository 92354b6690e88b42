package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/outboxd/outboxd/ingest/otlp"
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

// counting is an Appender that takes every record.
type counting struct{ n atomic.Int64 }

func (c *counting) Append(_ context.Context, _ string, records [][]byte) error {
	c.n.Add(int64(len(records)))
	return nil
}

func TestOTLPExporters(t *testing.T) {
	// The clients against the receivers in this process (the race pass runs
	// this; the command's test below drives the real daemon).
	tmpl, err := newOTLPTemplate(64, 256)
	if err != nil {
		t.Fatal(err)
	}
	receivers := map[string]func(t *testing.T, app *counting) string{
		"http": func(t *testing.T, app *counting) string {
			srv := httptest.NewServer(otlp.NewHTTP(otlp.Config{}, app))
			t.Cleanup(srv.Close)
			return srv.Listener.Addr().String()
		},
		"grpc": func(t *testing.T, app *counting) string {
			g := otlp.NewGRPC(otlp.Config{}, app)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var serving sync.WaitGroup
			serving.Go(func() { g.Serve(ln) })
			t.Cleanup(func() {
				g.Stop(context.Background())
				serving.Wait()
			})
			return ln.Addr().String()
		},
	}
	for _, key := range []string{"http", "grpc"} {
		for _, gzip := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s gzip %v: every request from every client is answered and its records taken", key, gzip), func(t *testing.T) {
				app := &counting{}
				exps, closeExps, err := otlpProtocols[key].exporters(receivers[key](t, app), 4, gzip)
				if err != nil {
					t.Fatal(err)
				}
				defer closeExps()
				if len(exps) != 4 {
					t.Fatalf("%d exporters, want 4", len(exps))
				}
				latencies, refused, firstErr := otlpLoad(context.Background(), exps, tmpl, 40)
				if len(latencies) != 40 || refused != 0 || firstErr != nil {
					t.Fatalf("%d answered, %d refused (%v)", len(latencies), refused, firstErr)
				}
				if app.n.Load() != 40*64 {
					t.Fatalf("%d records taken, want %d", app.n.Load(), 40*64)
				}
			})
		}
	}
}

func TestOTLPCommand(t *testing.T) {
	t.Run("an unknown protocol is refused", func(t *testing.T) {
		var out bytes.Buffer
		err := otlpCommand(context.Background(), []string{"-protocol", "http/json"}, &out)
		if err == nil || !strings.Contains(err.Error(), "want http, grpc or both") {
			t.Fatalf("err = %v", err)
		}
	})
	if raceEnabled {
		t.Skip("builds and drives the real binary; runs in the plain pass")
	}
	for _, sink := range []string{"kafka", "down"} {
		t.Run("a short run of both protocols against the real daemon, sink "+sink+", prints every figure", func(t *testing.T) {
			os.Chdir("../..") // the bench builds ./cmd/outboxd from the repository root
			defer os.Chdir("cmd/outboxd-bench")
			var out bytes.Buffer
			err := otlpCommand(context.Background(), []string{"-protocol", "both", "-records", "10240", "-clients", "4", "-runs", "2", "-sink", sink}, &out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			text := out.String()
			for _, name := range []string{"OTLP/HTTP protobuf", "OTLP/gRPC"} {
				table := text[strings.Index(text, name+" into outboxd"):]
				rows := []string{"| 1 | ", "| 2 | ", "| median | ", "requests of 512 LogRecords of 256 bytes", "| " + name + ", 4 clients, 512 LogRecords a request"}
				if sink == "kafka" {
					rows = append(rows, "run 1: 10240 of 10240 accepted records at Kafka", "run 2: 10240 of 10240 accepted records at Kafka")
				} else {
					rows = append(rows, "ingest only")
				}
				for _, row := range rows {
					if !strings.Contains(table, row) {
						t.Errorf("no %q after %q in:\n%s", row, name+" into outboxd", text)
					}
				}
			}
			for _, ratio := range []string{"OTLP/gRPC / OTLP/HTTP protobuf, medians: records/s ", "records/s, run by run (each pair back to back): "} {
				if !strings.Contains(text, ratio) {
					t.Errorf("no %q in:\n%s", ratio, text)
				}
			}
			if strings.Contains(text, "(first: ") {
				t.Errorf("requests were refused:\n%s", text)
			}
			t.Log("\n" + text)
		})
	}
}
