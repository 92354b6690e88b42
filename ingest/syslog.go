package ingest

import (
	"bytes"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Syslog formats a message was read as.
const (
	FormatRFC5424  = "rfc5424"
	FormatRFC3164  = "rfc3164"
	FormatUnparsed = "unparsed" // no PRI: kept whole as the message
)

// SyslogMessage is one parsed syslog message. Absent fields are empty (the
// RFC 5424 nil value "-" reads as empty), Facility and Severity are user and
// notice without a PRI (RFC 3164 section 4.3.3), and Timestamp is zero when
// the message carries none.
type SyslogMessage struct {
	Format         string
	Facility       int
	Severity       int
	Timestamp      time.Time
	Hostname       string
	AppName        string
	ProcID         string
	MsgID          string
	StructuredData map[string]map[string]string
	Message        []byte
}

// ParseSyslog reads one message, RFC 5424 or RFC 3164, detected per
// message. It is strict where the RFCs are clear and forgiving where real
// senders are sloppy: a missing hostname, a timestamp in the other format,
// a missing year, trailing NULs and newlines. It never fails: what it cannot
// read is kept in Message. now supplies the year for RFC 3164 timestamps.
func ParseSyslog(b []byte, now time.Time) SyslogMessage {
	b = bytes.TrimRight(b, "\x00\r\n")
	m := SyslogMessage{Format: FormatUnparsed, Facility: noPRI / 8, Severity: noPRI % 8, Message: b}
	pri, rest, ok := parsePRI(b)
	if !ok {
		// A message that still starts with a timestamp is RFC 3164 without
		// its PRI; anything else is kept whole.
		if _, _, ok := parse3164Time(b, now); ok {
			parse3164(b, now, &m)
		}
		return m
	}
	m.Facility, m.Severity = pri/8, pri%8
	if len(rest) >= 2 && rest[0] == '1' && rest[1] == ' ' {
		if parse5424(rest[2:], &m) {
			return m
		}
	}
	// Real senders put spaces between the PRI and the timestamp; rsyslog
	// reads past them, and so do we, when a timestamp follows.
	if t := bytes.TrimLeft(rest, " "); len(t) < len(rest) {
		if _, _, ok := parse3164Time(t, now); ok {
			rest = t
		}
	}
	parse3164(rest, now, &m)
	return m
}

// noPRI is the priority of a message without one: user.notice, as RFC 3164
// section 4.3.3 has a relay insert.
const noPRI = 13

// parsePRI reads "<N>" with N in 0..191, at most three digits.
func parsePRI(b []byte) (int, []byte, bool) {
	if len(b) < 3 || b[0] != '<' {
		return 0, nil, false
	}
	end := bytes.IndexByte(b[:min(len(b), 5)], '>')
	if end < 2 {
		return 0, nil, false
	}
	n, err := strconv.Atoi(string(b[1:end]))
	if err != nil || n < 0 || n > 191 {
		return 0, nil, false
	}
	return n, b[end+1:], true
}

// field cuts the next space-separated field.
func field(b []byte) (string, []byte) {
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return string(b), nil
	}
	return string(b[:i]), b[i+1:]
}

func nilable(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// parse5424 reads the part after "<PRI>1 ". On a malformed header it
// returns false and the message is read as RFC 3164 instead.
func parse5424(b []byte, m *SyslogMessage) bool {
	ts, b := field(b)
	host, b := field(b)
	app, b := field(b)
	proc, b := field(b)
	msgid, b := field(b)
	if b == nil && msgid == "" {
		return false
	}
	var t time.Time
	if ts != "-" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return false
		}
	}
	sd, rest, ok := parseSD(b)
	if !ok {
		return false
	}
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	rest = bytes.TrimPrefix(rest, []byte("\xEF\xBB\xBF")) // the BOM that marks UTF-8
	m.Format, m.Timestamp = FormatRFC5424, t
	m.Hostname, m.AppName, m.ProcID, m.MsgID = nilable(host), nilable(app), nilable(proc), nilable(msgid)
	m.StructuredData, m.Message = sd, rest
	return true
}

// parseSD reads "-" or one or more [id param="value" ...] elements.
func parseSD(b []byte) (map[string]map[string]string, []byte, bool) {
	if len(b) > 0 && b[0] == '-' {
		return nil, b[1:], true
	}
	sd := map[string]map[string]string{}
	for len(b) > 0 && b[0] == '[' {
		id, rest, ok := parseSDElement(b[1:], sd)
		if !ok || id == "" {
			return nil, nil, false
		}
		b = rest
	}
	if len(sd) == 0 {
		return nil, nil, false
	}
	return sd, b, true
}

func parseSDElement(b []byte, sd map[string]map[string]string) (string, []byte, bool) {
	end := bytes.IndexAny(b, " ]")
	if end <= 0 {
		return "", nil, false
	}
	id := string(b[:end])
	params := sd[id]
	if params == nil {
		params = map[string]string{}
		sd[id] = params
	}
	b = b[end:]
	for {
		if len(b) == 0 {
			return "", nil, false
		}
		switch b[0] {
		case ']':
			return id, b[1:], true
		case ' ':
			b = b[1:]
			continue
		}
		eq := bytes.IndexByte(b, '=')
		if eq <= 0 || eq+1 >= len(b) || b[eq+1] != '"' {
			return "", nil, false
		}
		name := string(b[:eq])
		value, rest, ok := parseSDValue(b[eq+2:])
		if !ok {
			return "", nil, false
		}
		params[name] = value
		b = rest
	}
}

// parseSDValue reads a quoted value up to the closing quote; \" \\ and \]
// are escapes.
func parseSDValue(b []byte) (string, []byte, bool) {
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\\':
			if i+1 < len(b) && (b[i+1] == '"' || b[i+1] == '\\' || b[i+1] == ']') {
				i++
				sb.WriteByte(b[i])
				continue
			}
			sb.WriteByte(c)
		case '"':
			return sb.String(), b[i+1:], true
		default:
			sb.WriteByte(c)
		}
	}
	return "", nil, false
}

// parse3164 reads "TIMESTAMP HOSTNAME TAG: MSG", each part optional.
func parse3164(b []byte, now time.Time, m *SyslogMessage) {
	m.Format = FormatRFC3164
	if t, rest, ok := parse3164Time(b, now); ok {
		m.Timestamp, b = t, rest
	}
	// HOSTNAME is there unless the first word is already the tag
	// ("app:" or "app[42]:"): local senders often leave it out.
	if word, rest := field(b); rest != nil && !isTag(word) && word != "" {
		m.Hostname, b = word, rest
	}
	if word, rest := field(b); isTag(word) {
		m.AppName, m.ProcID = splitTag(strings.TrimSuffix(word, ":"))
		b = rest
		if b == nil {
			b = []byte{}
		}
	}
	m.Message = b
}

func isTag(w string) bool {
	if !strings.HasSuffix(w, ":") || len(w) < 2 {
		return false
	}
	return !strings.ContainsAny(w[:len(w)-1], ":/= ")
}

func splitTag(t string) (app, pid string) {
	if i := strings.IndexByte(t, '['); i > 0 && strings.HasSuffix(t, "]") {
		return t[:i], t[i+1 : len(t)-1]
	}
	return t, ""
}

// parse3164Time reads "Mmm dd hh:mm:ss" (the year from now, the previous
// one if that would put it more than a day ahead) or an RFC 3339 timestamp,
// which many senders use in BSD-style messages.
func parse3164Time(b []byte, now time.Time) (time.Time, []byte, bool) {
	if len(b) >= 16 && b[15] == ' ' {
		if t, err := time.ParseInLocation(time.Stamp, string(b[:15]), now.Location()); err == nil {
			t = t.AddDate(now.Year(), 0, 0)
			if t.Sub(now) > 24*time.Hour {
				t = t.AddDate(-1, 0, 0)
			}
			return t, b[16:], true
		}
	}
	word, rest := field(b)
	if len(word) >= 20 && word[4] == '-' {
		if t, err := time.Parse(time.RFC3339Nano, word); err == nil {
			return t, rest, true
		}
	}
	return time.Time{}, b, false
}

// validUTF8 reports whether the message can go into JSON unchanged.
func validUTF8(b []byte) bool { return utf8.Valid(b) }
