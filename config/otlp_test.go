package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestOTLPInput(t *testing.T) {
	t.Run("http: {} listens on loopback 4318, and routes may name sources: [otlp]", func(t *testing.T) {
		c, err := Parse([]byte("ingest:\n  otlp:\n    http: {}\nsinks:\n  c:\n    type: console\nroutes:\n  - sources: [otlp]\n    sinks: [c]\n"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Ingest.OTLP == nil || c.Ingest.OTLP.HTTP == nil || c.Ingest.OTLP.HTTP.Listen != "127.0.0.1:4318" || c.Ingest.OTLP.GRPC != nil {
			t.Fatalf("ingest.otlp = %+v", c.Ingest.OTLP)
		}
	})
	t.Run("an OTLP listener on another input's address is refused", func(t *testing.T) {
		_, err := Parse([]byte("ingest:\n  http:\n    listen: 127.0.0.1:9000\n  otlp:\n    http: {listen: 127.0.0.1:9000}\nsinks:\n  c:\n    type: console\n"))
		if err == nil || !strings.Contains(err.Error(), "ingest.otlp.http.listen: tcp://127.0.0.1:9000 is already used by ingest.http.listen") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a listen address that is not host:port is refused", func(t *testing.T) {
		_, err := Parse([]byte("ingest:\n  otlp:\n    http: {listen: nowhere}\nsinks:\n  c:\n    type: console\n"))
		if err == nil || !strings.Contains(err.Error(), `ingest.otlp.http.listen: "nowhere": want host:port`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("otlp with neither protocol is refused", func(t *testing.T) {
		_, err := Parse([]byte("ingest:\n  otlp: {}\nsinks:\n  c:\n    type: console\n"))
		if err == nil || !strings.Contains(err.Error(), "ingest.otlp: set http, grpc or both") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("grpc: {} listens on loopback 4317 with ingest.http's default limits (zero here)", func(t *testing.T) {
		c, err := Parse([]byte("ingest:\n  otlp:\n    grpc: {}\nsinks:\n  c:\n    type: console\n"))
		if err != nil {
			t.Fatal(err)
		}
		if g := c.Ingest.OTLP.GRPC; g == nil || !reflect.DeepEqual(*g, OTLPListener{Listen: "127.0.0.1:4317"}) || c.Ingest.OTLP.HTTP != nil {
			t.Fatalf("ingest.otlp = %+v", c.Ingest.OTLP)
		}
	})
	t.Run("each protocol takes ingest.http's limit keys", func(t *testing.T) {
		c, err := Parse([]byte("ingest:\n  otlp:\n    http: {listen: 127.0.0.1:5318, max_body_bytes: 2MiB}\n" +
			"    grpc: {listen: 127.0.0.1:5317, token: s3cret, max_body_bytes: 4MiB, max_record_bytes: 64KiB, max_concurrent: 8}\n" +
			"sinks:\n  c:\n    type: console\n"))
		if err != nil {
			t.Fatal(err)
		}
		want := OTLPListener{Listen: "127.0.0.1:5317", Token: "s3cret", MaxBodyBytes: 4 << 20, MaxRecordBytes: 64 << 10, MaxConcurrent: 8}
		if !reflect.DeepEqual(*c.Ingest.OTLP.GRPC, want) || c.Ingest.OTLP.HTTP.MaxBodyBytes != 2<<20 {
			t.Fatalf("ingest.otlp = %+v %+v", c.Ingest.OTLP.HTTP, c.Ingest.OTLP.GRPC)
		}
	})
	t.Run("otlp that no route takes is warned about", func(t *testing.T) {
		w := warnings(t, fmt.Sprintf("data_dir: %s\ningest:\n  otlp:\n    http: {}\nsinks:\n  c:\n    type: console\nroutes:\n  - sources: [http]\n    sinks: [c]\n", privateDir(t)))
		if !strings.Contains(w, "ingest.otlp: no route takes records from otlp") {
			t.Fatalf("warnings:\n%s", w)
		}
	})
}
