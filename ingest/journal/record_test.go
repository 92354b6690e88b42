package journal

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/outboxd/outboxd/ingest"
)

func TestEncode(t *testing.T) {
	t.Run("each entry has its own host, though the reader reuses its buffers", func(t *testing.T) {
		var stream []byte
		for _, h := range []string{"alpha", "beta", "alpha", "gamma"} {
			stream = appendExport(stream, &Entry{Fields: []Field{{"_HOSTNAME", []byte(h)}, {"MESSAGE", []byte("m " + h)}}})
		}
		x := newExportReader(bytes.NewReader(stream), 16)
		enc := newEncoder("fallback")
		enc.reset(time.Unix(0, 0))
		var recs [][]byte
		for {
			e, err := x.Next()
			if err != nil {
				break
			}
			recs = append(recs, enc.encode(e))
		}
		for i, want := range []string{"alpha", "beta", "alpha", "gamma"} {
			var r map[string]any
			if err := json.Unmarshal(recs[i], &r); err != nil {
				t.Fatal(err)
			}
			if r["host"] != want || r["message"] != "m "+want {
				t.Errorf("record %d: %s", i, recs[i])
			}
		}
	})
	t.Run("top-level fields that do not parse, or come twice, stay under journal", func(t *testing.T) {
		enc := newEncoder("fallback")
		enc.reset(time.Unix(0, 0))
		rec := enc.encode(&Entry{Fields: []Field{{"PRIORITY", []byte("x")}, {"_PID", []byte("1")}, {"_PID", []byte("2")}, {"MESSAGE", []byte("m")}}})
		var r map[string]any
		if err := json.Unmarshal(rec, &r); err != nil {
			t.Fatal(err)
		}
		j := r["journal"].(map[string]any)
		if r["host"] != "fallback" || r["procid"] != "1" || j["_PID"] != "2" || j["PRIORITY"] != "x" || r["severity"] != nil {
			t.Errorf("record: %s", rec)
		}
		if r["ts"] != "1970-01-01T00:00:00Z" {
			t.Errorf("an entry without __REALTIME_TIMESTAMP has ts %v, want the receive time", r["ts"])
		}
	})
	t.Run("a field not valid UTF-8 in an entry without repeated names", func(t *testing.T) {
		stream := appendExport(nil, &Entry{Fields: []Field{{"BIN", []byte("a\xffb")}, {"X", []byte("y")}, {"MESSAGE", []byte("m")}}})
		e, err := newExportReader(bytes.NewReader(stream), 16).Next()
		if err != nil {
			t.Fatal(err)
		}
		enc := newEncoder("h")
		enc.reset(time.Unix(0, 0))
		var r map[string]any
		rec := enc.encode(e)
		if err := json.Unmarshal(rec, &r); err != nil {
			t.Fatal(err)
		}
		if r["journal"].(map[string]any)["BIN"] != "a\uFFFDb" || r["journal_base64"].(map[string]any)["BIN"] != "Yf9i" {
			t.Errorf("record: %s", rec)
		}
	})
}

func TestEncodeAddFields(t *testing.T) {
	x := newExportReader(bytes.NewReader(appendExport(nil, &Entry{Fields: []Field{{"_HOSTNAME", []byte("h")}, {"MESSAGE", []byte("m")}}})), 16)
	e, err := x.Next()
	if err != nil {
		t.Fatal(err)
	}
	enc := newEncoder("fallback")
	enc.fields = ingest.NewAddFields(map[string]string{"site": "berlin-7"})
	enc.reset(time.Unix(0, 0))
	var r map[string]any
	if err := json.Unmarshal(enc.encode(e), &r); err != nil || r["site"] != "berlin-7" || r["message"] != "m" {
		t.Fatalf("%v %v", r, err)
	}
}
