package ingest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// SyslogEnvelope is the record a syslog message becomes. The JSON field
// names are outboxd's envelope, documented in README.
type SyslogEnvelope struct {
	TS             time.Time                    `json:"ts"`
	ReceivedAt     time.Time                    `json:"received_at"`
	Host           string                       `json:"host,omitempty"`
	Source         string                       `json:"source"`
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
}

var facilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

var severities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// NewSyslogEnvelope builds the envelope of m, received at received from a
// peer (its address or socket path, the host when the message names none).
func NewSyslogEnvelope(m SyslogMessage, received time.Time, source, peer string) SyslogEnvelope {
	e := SyslogEnvelope{
		TS: m.Timestamp, ReceivedAt: received, Host: m.Hostname, Source: source,
		App: m.AppName, ProcID: m.ProcID, MsgID: m.MsgID, StructuredData: m.StructuredData,
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
	e.Message = strings.ToValidUTF8(string(m.Message), "\uFFFD")
	if !validUTF8(m.Message) {
		e.MessageBase64 = base64.StdEncoding.EncodeToString(m.Message)
	}
	return e
}

// Marshal encodes the envelope as one JSON object.
func (e SyslogEnvelope) Marshal() ([]byte, error) { return json.Marshal(e) }
