package ingest

import (
	"encoding/json"
	"testing"
	"time"
)

// The hand-written Marshal must give exactly what encoding/json gives.
func checkMarshal(t *testing.T, e SyslogEnvelope) {
	t.Helper()
	want, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Marshal()
	if err != nil || string(got) != string(want) {
		t.Fatalf("Marshal differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

func TestMarshalMatchesEncodingJSON(t *testing.T) {
	t.Run("every field, escapes, invalid UTF-8, structured data, zero values", func(t *testing.T) {
		ts := time.Date(2026, 11, 26, 17, 0, 0, 123456789, time.UTC)
		for _, e := range []SyslogEnvelope{
			{},
			{TS: ts, ReceivedAt: ts.Add(time.Second), Source: "syslog", Message: "plain", SyslogFormat: "rfc5424"},
			{TS: ts.In(time.FixedZone("x", 3600)), ReceivedAt: ts, Host: "h<>&", Source: "syslog", Facility: "local0", Severity: "err",
				App: "app\"q\\", ProcID: "12", MsgID: "ID\t1", Message: "line\nbreak\r\x00\x1f\x7f é \u2028 \u2029 \U0001F600",
				MessageBase64: "AAEC", SyslogFormat: "rfc3164", ParseError: true, Truncated: true,
				StructuredData: map[string]map[string]string{"b@1": {"z": "1", "a": "\"2\""}, "a@1": {}}},
			{Message: "bad \xff\xfe utf8 \xc3", SyslogFormat: "unparsed", StructuredData: map[string]map[string]string{}},
		} {
			checkMarshal(t, e)
		}
	})
}

func FuzzMarshalMatchesEncodingJSON(f *testing.F) {
	f.Add("host", "app", "message with \"quotes\" and <tags>", "id", "key", "value\x01")
	f.Add("", "", "\xff\u2028", "", "", "")
	f.Fuzz(func(t *testing.T, host, app, msg, sdID, key, value string) {
		e := SyslogEnvelope{TS: time.Unix(1_800_000_000, 5).UTC(), Host: host, App: app, Message: msg, SyslogFormat: "rfc5424"}
		if sdID != "" {
			e.StructuredData = map[string]map[string]string{sdID: {key: value}}
		}
		checkMarshal(t, e)
	})
}

func TestTextRecordMatchesEncodingJSON(t *testing.T) {
	t.Run("text records, built by hand, are what encoding/json makes of them", func(t *testing.T) {
		st := newStamp(time.Date(2026, 11, 26, 1, 2, 3, 4, time.UTC), "edge<1>", "http")
		for _, line := range []string{"", "plain", "ctl \x00\x01\x1f \"q\" \\ <>& \u2028 é \xff\xfe"} {
			for _, cut := range []bool{false, true} {
				want, _ := json.Marshal(struct {
					TS         string `json:"ts"`
					ReceivedAt string `json:"received_at"`
					Host       string `json:"host"`
					Source     string `json:"source"`
					RecordID   string `json:"record_id"`
					Message    string `json:"message"`
					Truncated  bool   `json:"truncated,omitempty"`
				}{st.received.Format(time.RFC3339Nano), st.received.Format(time.RFC3339Nano), st.host, st.source, "ID", line, cut})
				got := recordIDRE.ReplaceAll(textRecord([]byte(line), cut, st), []byte(`"record_id":"ID"`))
				if string(got) != string(want) {
					t.Fatalf("textRecord(%q, %v)\n got %s\nwant %s", line, cut, got, want)
				}
			}
		}
	})
}
