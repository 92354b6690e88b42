package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

var now = time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)

func TestParseSyslog(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want SyslogMessage
	}{
		{
			"RFC 5424 from logger --rfc5424, with structured data",
			`<13>1 2026-11-26T14:59:58.123456+00:00 till-3 pos 4242 TX1 [timeQuality tzKnown="1" isSynced="0"][x@1 a="q\"uote" b="br\]acket"] payment ok`,
			SyslogMessage{Format: FormatRFC5424, Facility: 1, Severity: 5,
				Timestamp: time.Date(2026, 11, 26, 14, 59, 58, 123456000, time.UTC),
				Hostname:  "till-3", AppName: "pos", ProcID: "4242", MsgID: "TX1",
				StructuredData: map[string]map[string]string{
					"timeQuality": {"tzKnown": "1", "isSynced": "0"}, "x@1": {"a": `q"uote`, "b": "br]acket"}},
				Message: []byte("payment ok")},
		},
		{
			"RFC 5424 with nil values, a BOM and a trailing NUL",
			"<165>1 - - - - - - \xEF\xBB\xBFhello\x00",
			SyslogMessage{Format: FormatRFC5424, Facility: 20, Severity: 5, Message: []byte("hello")},
		},
		{
			"RFC 3164 from logger --rfc3164",
			"<13>Nov 26 14:59:58 till-3 pos[4242]: drawer opened\n",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 5,
				Timestamp: time.Date(2026, 11, 26, 14, 59, 58, 0, time.UTC),
				Hostname:  "till-3", AppName: "pos", ProcID: "4242", Message: []byte("drawer opened")},
		},
		{
			"RFC 3164 without a hostname, as local sockets get it",
			"<14>Nov  6 01:02:03 cron: job done",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 6,
				Timestamp: time.Date(2026, 11, 6, 1, 2, 3, 0, time.UTC), AppName: "cron", Message: []byte("job done")},
		},
		{
			"RFC 3164 from late December read in January is last year's",
			"<14>Dec 31 23:59:59 h app: x",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 6,
				Timestamp: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), Hostname: "h", AppName: "app", Message: []byte("x")},
		},
		{
			"RFC 3164 with an RFC 3339 timestamp",
			"<30>2026-11-26T10:00:00Z gw sshd[9]: accepted",
			SyslogMessage{Format: FormatRFC3164, Facility: 3, Severity: 6,
				Timestamp: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), Hostname: "gw", AppName: "sshd", ProcID: "9", Message: []byte("accepted")},
		},
		{
			"a PRI and nothing else that parses",
			"<11>just some text",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 3, Hostname: "just", Message: []byte("some text")},
		},
		{
			"no PRI and no timestamp: kept whole, user.notice (RFC 3164 4.3.3)",
			"kernel: oops",
			SyslogMessage{Format: FormatUnparsed, Facility: 1, Severity: 5, Message: []byte("kernel: oops")},
		},
		{
			"no PRI but a timestamp: the rest parsed as RFC 3164, user.notice",
			"Nov 26 14:59:58 till-3 pos[4242]: drawer opened",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 5,
				Timestamp: time.Date(2026, 11, 26, 14, 59, 58, 0, time.UTC),
				Hostname:  "till-3", AppName: "pos", ProcID: "4242", Message: []byte("drawer opened")},
		},
		{
			"no PRI but an RFC 3339 timestamp",
			"2026-11-26T10:00:00Z gw sshd[9]: accepted",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 5,
				Timestamp: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), Hostname: "gw", AppName: "sshd", ProcID: "9", Message: []byte("accepted")},
		},
		{
			"spaces between the PRI and the timestamp (rsyslog reads past them)",
			"<13>  Nov 26 14:59:58 till-3 pos[4242]: drawer opened",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 5,
				Timestamp: time.Date(2026, 11, 26, 14, 59, 58, 0, time.UTC),
				Hostname:  "till-3", AppName: "pos", ProcID: "4242", Message: []byte("drawer opened")},
		},
		{
			"a space after the PRI and an RFC 3339 timestamp",
			"<30> 2026-11-26T10:00:00Z gw sshd[9]: accepted",
			SyslogMessage{Format: FormatRFC3164, Facility: 3, Severity: 6,
				Timestamp: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), Hostname: "gw", AppName: "sshd", ProcID: "9", Message: []byte("accepted")},
		},
		{
			"spaces after the PRI and no timestamp: the message keeps them",
			"<13>  indented text",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 5, Message: []byte("  indented text")},
		},
		{
			"a PRI out of range is not a PRI",
			"<999>1 - - - - - - x",
			SyslogMessage{Format: FormatUnparsed, Facility: 1, Severity: 5, Message: []byte("<999>1 - - - - - - x")},
		},
		{
			"a broken RFC 5424 header falls back to RFC 3164",
			"<13>1 yesterday host app - - - msg",
			SyslogMessage{Format: FormatRFC3164, Facility: 1, Severity: 5, Hostname: "1", Message: []byte("yesterday host app - - - msg")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			if tc.name == "RFC 3164 from late December read in January is last year's" {
				clock = time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC)
			}
			got := ParseSyslog([]byte(tc.in), clock)
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.want)
			if string(gj) != string(wj) {
				t.Fatalf("got  %s\nwant %s", gj, wj)
			}
		})
	}
}

func TestSyslogEnvelope(t *testing.T) {
	t.Run("names, a received time for a message without one, and the peer as host", func(t *testing.T) {
		m := ParseSyslog([]byte("<13>app: hi"), now)
		e := NewSyslogEnvelope(m, now, "syslog", "127.0.0.1")
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		json.Unmarshal(b, &v)
		if v["facility"] != "user" || v["severity"] != "notice" || v["host"] != "127.0.0.1" ||
			v["ts"] != "2026-11-26T15:00:00Z" || v["app"] != "app" || v["message"] != "hi" {
			t.Fatalf("envelope = %s", b)
		}
	})

	t.Run("bytes that are not UTF-8 are kept exactly in message_base64", func(t *testing.T) {
		raw := []byte("<13>1 - h a - - - caf\xe9 \xff")
		e := NewSyslogEnvelope(ParseSyslog(raw, now), now, "syslog", "")
		b, _ := e.Marshal()
		var v struct {
			Message       string `json:"message"`
			MessageBase64 string `json:"message_base64"`
		}
		json.Unmarshal(b, &v)
		got, _ := base64.StdEncoding.DecodeString(v.MessageBase64)
		if string(got) != "caf\xe9 \xff" || !utf8.ValidString(v.Message) {
			t.Fatalf("envelope = %s", b)
		}
	})
}

// FuzzParseSyslog: any input parses without panic into an envelope that is
// valid JSON, and a message without a header is kept whole.
func FuzzParseSyslog(f *testing.F) {
	for _, s := range []string{
		`<13>1 2026-11-26T14:59:58.123456+00:00 till-3 pos 4242 TX1 [a b="c"] payment ok`,
		"<13>Nov 26 14:59:58 till-3 pos[4242]: drawer opened", "<165>1 - - - - - - \xEF\xBB\xBFhi",
		"no header", "<13>1 - - - - - [x a=\"\\\"]", "<1>", "<191>1 - - - - - -", "\xff\xfe<13>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := ParseSyslog(b, now)
		e := NewSyslogEnvelope(m, now, "syslog", "peer")
		out, err := e.Marshal()
		if err != nil || !json.Valid(out) {
			t.Fatalf("envelope of %q: %v %s", b, err, out)
		}
		trimmed := string(bytes.TrimRight(b, "\x00\r\n"))
		if m.Format == FormatUnparsed && utf8.ValidString(trimmed) && e.Message != trimmed {
			t.Fatalf("unparsed message %q came out as %q", trimmed, e.Message)
		}
		if len(m.Message) > len(b) {
			t.Fatalf("message longer than the input")
		}
	})
}
