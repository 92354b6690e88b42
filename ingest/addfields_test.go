package ingest

import (
	"encoding/json"
	"testing"
	"time"
)

func TestAddFields(t *testing.T) {
	f := NewAddFields(map[string]string{"site": "berlin-7", "env": "prod"})
	st := newStamp(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), "h", "http")
	st.fields = f
	decode := func(b []byte) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return m
	}
	t.Run("a text record gets them", func(t *testing.T) {
		m := decode(textRecord([]byte("hi"), false, st))
		if m["site"] != "berlin-7" || m["env"] != "prod" || m["message"] != "hi" {
			t.Fatalf("%v", m)
		}
	})
	t.Run("a JSON record's own field of a name wins; the others are added", func(t *testing.T) {
		b, err := completeObject([]byte(`{"site":"mine","n":1}`), st)
		if err != nil {
			t.Fatal(err)
		}
		if m := decode(b); m["site"] != "mine" || m["env"] != "prod" {
			t.Fatalf("%s", b)
		}
	})
	t.Run("a syslog envelope gets them, after its own fields", func(t *testing.T) {
		e := NewSyslogEnvelope(ParseSyslog([]byte("<13>1 - h app - - - hi"), time.Now()), time.Now(), "syslog", "peer")
		e.Fields = f
		b, _ := e.Marshal()
		if m := decode(b); m["site"] != "berlin-7" || m["env"] != "prod" || m["app"] != "app" {
			t.Fatalf("%s", b)
		}
	})
	t.Run("a line (files, journal, OTLP) gets them", func(t *testing.T) {
		m := decode(NewStamp(time.Now(), "h", "file").WithFields(f).Line([]byte("x"), false, time.Time{}, String("path", "/p")))
		if m["site"] != "berlin-7" || m["path"] != "/p" {
			t.Fatalf("%v", m)
		}
	})
}
