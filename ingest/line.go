package ingest

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Stamp is what an input adds to every record it builds at one moment: the
// receive time, this host and the input's source name, JSON-encoded once.
// Inputs with their own package (files, the journal) build records through
// it, so that every input shares one envelope.
type Stamp struct{ st stamp }

// NewStamp encodes received, host and source once, for many records.
func NewStamp(received time.Time, host, source string) Stamp {
	return Stamp{newStamp(received, host, source)}
}

// WithFields is s that also puts the input's add_fields on every record
// (a JSON object's own field of a name wins).
func (s Stamp) WithFields(f AddFields) Stamp {
	s.st.fields = f
	return s
}

// WithClient is s that also puts tls_client (client: its JSON value, from
// tlsconf.Client.JSON; nil: none) on every record.
func (s Stamp) WithClient(client []byte) Stamp {
	s.st.client = client
	return s
}

// Field is a top-level field an input adds to a record: a key and its
// value, already JSON-encoded (String and Int make them).
type Field struct {
	Key  string
	JSON []byte
}

// String is a field whose value is the JSON string of s.
func String(key, s string) Field { return Field{key, appendJSONString(nil, s)} }

// Int is a field whose value is the JSON number n.
func Int(key string, n int64) Field { return Field{key, strconv.AppendInt(nil, n, 10)} }

// Line is the envelope of one line of text: ts (the receive time, or ts when
// not zero), received_at, host, source, the fields in order, message, and
// when msg is not valid UTF-8 its exact bytes in message_base64 (message
// then has U+FFFD in their place, as syslog records do); truncated when cut.
func (s Stamp) Line(msg []byte, cut bool, ts time.Time, fields ...Field) []byte {
	return s.AppendLine(make([]byte, 0, s.LineSize(msg, fields...)), msg, cut, ts, fields...)
}

// LineSize is about how many bytes Line makes of msg and fields: callers
// that build many records into one buffer size it with this.
func (s Stamp) LineSize(msg []byte, fields ...Field) int {
	st := s.st
	n := 168 + st.fields.size() + 2*len(st.tsJSON) + len(st.hostJSON) + len(st.sourceJSON) + len(st.client) + len(msg) + len(msg)/8
	for _, f := range fields {
		n += len(f.Key) + len(f.JSON) + 4
	}
	return n
}

// AppendLine appends Line's record to b.
func (s Stamp) AppendLine(b, msg []byte, cut bool, ts time.Time, fields ...Field) []byte {
	st := s.st
	valid := utf8.Valid(msg)
	tsJSON := st.tsJSON
	if !ts.IsZero() {
		tsJSON = appendTime(nil, ts)
	}
	b = st.appendHead(b, tsJSON)
	for _, f := range fields {
		b = append(b, ',', '"')
		b = append(b, f.Key...)
		b = append(b, '"', ':')
		b = append(b, f.JSON...)
	}
	b = append(b, `,"message":`...)
	b = appendJSONString(b, unsafe.String(unsafe.SliceData(msg), len(msg))) // only read
	if !valid {
		b = append(b, `,"message_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, msg)
		b = append(b, '"')
	}
	if cut {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, '}')
}

// Object completes a JSON object as HTTP ingest completes the objects it
// takes: ts, received_at, host and source where missing, then each field
// the object does not have itself. The object's own bytes are kept. It
// fails when raw is not one valid JSON object.
func (s Stamp) Object(raw []byte, fields ...Field) ([]byte, error) {
	return completeObjectWith(raw, s.st, fields)
}
