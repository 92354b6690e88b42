package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// stamp holds the fields outboxd adds to a record that lacks them, encoded
// once per request.
type stamp struct {
	received time.Time
	host     string
	source   string

	tsJSON, hostJSON, sourceJSON []byte
	// client is the tls_client field's JSON value (who sent the records,
	// from a verified client certificate); nil without one.
	client []byte
	// fields are the input's add_fields.
	fields AddFields
}

func newStamp(received time.Time, host, source string) stamp {
	st := stamp{received: received, host: host, source: source}
	st.tsJSON, _ = json.Marshal(received.Format(time.RFC3339Nano))
	st.hostJSON, _ = json.Marshal(host)
	st.sourceJSON, _ = json.Marshal(source)
	return st
}

// errNotObject: a JSON record must be an object.
var errNotObject = errors.New("a record must be a JSON object")

// errOwnClient: a record sent over a connection with a verified client
// certificate may not name its sender itself; outboxd does, and keeps the
// record's bytes, so it could not replace a forged one.
var errOwnClient = errors.New(`a record may not carry "tls_client": outboxd sets it from the client certificate`)

// completeObject returns the JSON object raw with ts, received_at, host and
// source added where missing. The record's own bytes are kept as they are:
// the fields are appended before the closing brace, nothing is re-encoded.
func completeObject(raw []byte, st stamp) ([]byte, error) {
	return completeObjectWith(raw, st, nil)
}

// completeObjectWith is completeObject that also adds extra fields where
// the object does not have them.
func completeObjectWith(raw []byte, st stamp, extra []Field) ([]byte, error) {
	if st.client != nil {
		extra = append(extra[:len(extra):len(extra)], Field{"tls_client", st.client})
	}
	if len(st.fields) > 0 {
		extra = append(extra[:len(extra):len(extra)], st.fields...) // the object's own win
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errNotObject
	}
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v) // only to say what is wrong
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	has := topLevelKeys(raw, extra)
	if st.client != nil && has["tls_client"] {
		return nil, errOwnClient
	}
	// Exactly the room the added fields can take: the budget is charged the
	// capacity.
	room := len(raw) + len(`,"ts":,"received_at":,"host":,"source":,"record_id":""}`) + 26 + 2*len(st.tsJSON) + len(st.hostJSON) + len(st.sourceJSON)
	for _, f := range extra {
		room += len(f.Key) + len(f.JSON) + 4
	}
	out := make([]byte, 0, room)
	out = append(out, raw[:len(raw)-1]...)
	empty := len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
	add := func(key string, value []byte) {
		if has[key] {
			return
		}
		if !empty {
			out = append(out, ',')
		}
		empty = false
		out = append(out, '"')
		out = append(out, key...)
		out = append(out, '"', ':')
		out = append(out, value...)
	}
	add("ts", st.tsJSON)
	add("received_at", st.tsJSON)
	add("host", st.hostJSON)
	add("source", st.sourceJSON)
	if !has["record_id"] { // a record's own id stays
		add("record_id", appendRecordID(nil))
	}
	for _, f := range extra {
		add(f.Key, f.JSON)
	}
	return append(out, '}'), nil
}

// topLevelKeys finds which of the keys outboxd adds (the four of every
// record, and extra's) the object already has. raw must be a valid JSON
// object. Keys are compared as written: an escaped key is not recognised.
func topLevelKeys(raw []byte, extra []Field) map[string]bool {
	has := map[string]bool{}
	depth := 0
	expectKey := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '{', '[':
			depth++
			expectKey = c == '{' && depth == 1
		case '}', ']':
			depth--
		case ',':
			expectKey = depth == 1
		case '"':
			end := i + 1
			for end < len(raw) && raw[end] != '"' {
				if raw[end] == '\\' {
					end++
				}
				end++
			}
			if expectKey && depth == 1 {
				switch k := string(raw[i+1 : end]); k {
				case "ts", "received_at", "host", "source", "record_id":
					has[k] = true
				default:
					for _, f := range extra {
						if f.Key == k {
							has[k] = true
						}
					}
				}
				expectKey = false
			}
			i = end
		}
	}
	return has
}

// appendHead appends the start of a record: {"ts":ts,"received_at":...,
// "host":...,"source":... (no closing brace).
func (st stamp) appendHead(b, ts []byte) []byte {
	b = append(b, `{"ts":`...)
	b = append(b, ts...)
	b = append(b, `,"received_at":`...)
	b = append(b, st.tsJSON...)
	b = append(b, `,"host":`...)
	b = append(b, st.hostJSON...)
	b = append(b, `,"source":`...)
	b = append(b, st.sourceJSON...)
	b = append(b, `,"record_id":`...)
	b = appendRecordID(b)
	b = st.fields.appendTo(b)
	if st.client != nil {
		b = append(b, `,"tls_client":`...)
		b = append(b, st.client...)
	}
	return b
}

// textRecord is the envelope of one line of text/plain; cut marks a line
// that was cut to fit the record limit. It is built by hand, byte for byte
// what encoding/json makes of the same struct (a test holds them equal):
// json.Marshal keeps its buffers in a pool, and a flood of megabyte lines
// would keep megabytes there outside the ingest budget.
func textRecord(line []byte, cut bool, st stamp) []byte {
	b := make([]byte, 0, 136+st.fields.size()+2*len(st.tsJSON)+len(st.hostJSON)+len(st.sourceJSON)+len(st.client)+16+len(line)+len(line)/8)
	b = st.appendHead(b, st.tsJSON)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, unsafe.String(unsafe.SliceData(line), len(line))) // only read
	if cut {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, '}')
}
