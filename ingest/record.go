package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Fields outboxd adds to a record that lacks them.
type stamp struct {
	received time.Time
	host     string
	source   string
}

// errNotObject: a JSON record must be an object.
var errNotObject = errors.New("a record must be a JSON object")

// completeObject returns the JSON object raw with ts, received_at, host and
// source added where missing. The record's own fields are kept as they are.
func completeObject(raw []byte, st stamp) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errNotObject
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if fields == nil {
		return nil, errNotObject
	}
	add := func(k string, v any) {
		if _, ok := fields[k]; !ok {
			b, _ := json.Marshal(v)
			fields[k] = b
		}
	}
	add("ts", st.received.Format(time.RFC3339Nano))
	add("received_at", st.received.Format(time.RFC3339Nano))
	add("host", st.host)
	add("source", st.source)
	return json.Marshal(fields)
}

// textRecord is the envelope of one line of text/plain.
func textRecord(line []byte, st stamp) ([]byte, error) {
	return json.Marshal(struct {
		TS         string `json:"ts"`
		ReceivedAt string `json:"received_at"`
		Host       string `json:"host"`
		Source     string `json:"source"`
		Message    string `json:"message"`
	}{st.received.Format(time.RFC3339Nano), st.received.Format(time.RFC3339Nano), st.host, st.source, string(line)})
}
