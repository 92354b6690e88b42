package ingest

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// SyslogEnvelope is the record a syslog message becomes. The JSON field
// names are outboxd's envelope, documented in README.
type SyslogEnvelope struct {
	TS             time.Time                    `json:"ts"`
	ReceivedAt     time.Time                    `json:"received_at"`
	Host           string                       `json:"host,omitempty"`
	Source         string                       `json:"source"`
	RecordID       string                       `json:"record_id"`
	Facility       string                       `json:"facility,omitempty"`
	Severity       string                       `json:"severity,omitempty"`
	App            string                       `json:"app,omitempty"`
	ProcID         string                       `json:"procid,omitempty"`
	MsgID          string                       `json:"msgid,omitempty"`
	StructuredData map[string]map[string]string `json:"structured_data,omitempty"`
	Message        string                       `json:"message"`
	// MessageBase64 holds the exact bytes when Message is not valid UTF-8
	// (JSON would otherwise replace the bad bytes).
	MessageBase64 string `json:"message_base64,omitempty"`
	SyslogFormat  string `json:"syslog_format"`
	// ParseError marks a message that had no syslog header at all; it is
	// kept whole in Message.
	ParseError bool `json:"parse_error,omitempty"`
	// Truncated marks a message that was cut: at the message size limit,
	// or so that the stored record fits the record size limit.
	Truncated bool `json:"truncated,omitempty"`
	// TLSClient names the sender from its verified client certificate
	// (tls:// listeners with client_ca_file): {"cn":...,"dns":[...]}.
	TLSClient json.RawMessage `json:"tls_client,omitempty"`
	// Fields are the listener's add_fields, after the envelope's own.
	Fields AddFields `json:"-"`
}

var facilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

var severities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// NewSyslogEnvelope builds the envelope of m, received at received from a
// peer (its address or socket path, the host when the message names none).
func NewSyslogEnvelope(m SyslogMessage, received time.Time, source, peer string) SyslogEnvelope {
	return newSyslogEnvelope(m, received, source, peer, false)
}

// newSyslogEnvelope is NewSyslogEnvelope; with borrow, a valid UTF-8
// Message shares m.Message's bytes instead of copying them. The caller then
// must neither keep the envelope nor change m.Message while using it: the
// listeners marshal it at once and drop it.
func newSyslogEnvelope(m SyslogMessage, received time.Time, source, peer string, borrow bool) SyslogEnvelope {
	e := SyslogEnvelope{
		TS: m.Timestamp, ReceivedAt: received, Host: m.Hostname, Source: source,
		App: m.AppName, ProcID: m.ProcID, MsgID: m.MsgID, StructuredData: m.StructuredData,
		RecordID:     newRecordID(),
		SyslogFormat: m.Format, ParseError: m.Format == FormatUnparsed,
	}
	if e.TS.IsZero() {
		e.TS = received
	}
	if e.Host == "" {
		e.Host = peer
	}
	if m.Facility >= 0 && m.Facility < len(facilities) {
		e.Facility = facilities[m.Facility]
	}
	if m.Severity >= 0 && m.Severity < len(severities) {
		e.Severity = severities[m.Severity]
	}
	switch {
	case borrow && validUTF8(m.Message):
		e.Message = unsafe.String(unsafe.SliceData(m.Message), len(m.Message))
	case validUTF8(m.Message):
		e.Message = string(m.Message)
	default:
		e.Message = strings.ToValidUTF8(string(m.Message), "\uFFFD")
		e.MessageBase64 = base64.StdEncoding.EncodeToString(m.Message)
	}
	return e
}

// Marshal encodes the envelope as one JSON object, byte for byte what
// encoding/json makes of it (a test holds them equal), without reflection:
// json.Marshal was 18% of the daemon's CPU on a syslog stream.
func (e SyslogEnvelope) Marshal() ([]byte, error) {
	// Room for the keys, the times and every value unescaped: one
	// allocation for a typical record.
	return e.appendTo(make([]byte, 0, 256+len(e.RecordID)+len(e.Host)+len(e.Source)+len(e.Facility)+len(e.Severity)+len(e.App)+
		len(e.ProcID)+len(e.MsgID)+len(e.Message)+len(e.MessageBase64)+len(e.SyslogFormat)+len(e.TLSClient)+e.Fields.size())), nil
}

// appendTo appends the envelope's JSON to b.
func (e SyslogEnvelope) appendTo(b []byte) []byte {
	b = append(b, `{"ts":`...)
	b = appendTime(b, e.TS)
	b = append(b, `,"received_at":`...)
	b = appendTime(b, e.ReceivedAt)
	b = appendField(b, "host", e.Host, true)
	b = appendField(b, "source", e.Source, false)
	b = appendField(b, "record_id", e.RecordID, false)
	b = appendField(b, "facility", e.Facility, true)
	b = appendField(b, "severity", e.Severity, true)
	b = appendField(b, "app", e.App, true)
	b = appendField(b, "procid", e.ProcID, true)
	b = appendField(b, "msgid", e.MsgID, true)
	if len(e.StructuredData) > 0 {
		b = append(b, `,"structured_data":{`...)
		for i, id := range slices.Sorted(maps.Keys(e.StructuredData)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, id)
			b = append(b, ":{"...)
			params := e.StructuredData[id]
			for j, k := range slices.Sorted(maps.Keys(params)) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
				b = append(b, ':')
				b = appendJSONString(b, params[k])
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = appendField(b, "message", e.Message, false)
	b = appendField(b, "message_base64", e.MessageBase64, true)
	b = appendField(b, "syslog_format", e.SyslogFormat, false)
	if e.ParseError {
		b = append(b, `,"parse_error":true`...)
	}
	if e.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	if len(e.TLSClient) > 0 {
		b = append(b, `,"tls_client":`...)
		b = append(b, e.TLSClient...)
	}
	b = e.Fields.appendTo(b)
	return append(b, '}')
}

// appendTime appends t as encoding/json does: RFC 3339 with nanoseconds.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendField appends ,"key":"value", or nothing for an empty value when
// omitEmpty is set.
func appendField(b []byte, key, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, value)
}

const hexDigits = "0123456789abcdef"

// jsonSafe tells the ASCII bytes that encoding/json copies as they are.
var jsonSafe = func() (safe [utf8.RuneSelf]bool) {
	for c := byte(0x20); c < utf8.RuneSelf; c++ {
		safe[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return safe
}()

// appendJSONString appends s quoted as encoding/json quotes it: control
// characters, <, > and & as \u00XX (or \n, \r, \t, \b, \f), invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
