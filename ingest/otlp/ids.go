package otlp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// A LogRecord's trace or span id of the wrong length (a span id of 3
// bytes, a trace id that is not hex) makes pdata refuse the whole request.
// outboxd leaves such an id out of its record instead and stores the rest,
// as it leaves out empty ids: one broken id must not cost a client its
// batch. Only a request pdata refused is looked at again, so a valid one
// costs nothing.

// The field numbers on the way to a LogRecord's ids.
const (
	fieldResourceLogs = 1 // ExportLogsServiceRequest.resource_logs
	fieldScopeLogs    = 2 // ResourceLogs.scope_logs
	fieldLogRecords   = 2 // ScopeLogs.log_records
	fieldTraceID      = 9 // LogRecord.trace_id
	fieldSpanID       = 10
)

// withoutBadIDsProto returns the request with every trace or span id of
// the wrong length removed, and whether there was one. Bytes it cannot
// read are left as they are (pdata then says what is wrong).
func withoutBadIDsProto(req []byte) ([]byte, bool) {
	return rewrite(req, 0)
}

// rewrite walks one message at depth (0: the request, 3: a LogRecord).
func rewrite(msg []byte, depth int) ([]byte, bool) {
	var out []byte // nil until something changes
	for rest := msg; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return msg, false
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return msg, false
		}
		field := rest[:n+m]
		at := len(msg) - len(rest)
		rest = rest[n+m:]
		if typ != protowire.BytesType {
			if out != nil {
				out = append(out, field...)
			}
			continue
		}
		value, _ := protowire.ConsumeBytes(field[n:])
		switch {
		case depth == 3 && (num == fieldTraceID && len(value) != 0 && len(value) != 16 ||
			num == fieldSpanID && len(value) != 0 && len(value) != 8):
			if out == nil {
				out = append(make([]byte, 0, len(msg)), msg[:at]...) // non-nil even when at is 0
			}
			continue // left out
		case depth == 0 && num == fieldResourceLogs, depth == 1 && num == fieldScopeLogs, depth == 2 && num == fieldLogRecords:
			if inner, changed := rewrite(value, depth+1); changed {
				if out == nil {
					out = append(make([]byte, 0, len(msg)), msg[:at]...) // non-nil even when at is 0
				}
				out = protowire.AppendTag(out, num, protowire.BytesType)
				out = protowire.AppendBytes(out, inner)
				continue
			}
		}
		if out != nil {
			out = append(out, field...)
		}
	}
	if out == nil {
		return msg, false
	}
	return out, true
}

// jsonFixing lets one withoutBadIDsJSON run at a time.
var jsonFixing sync.Mutex

// withoutBadIDsJSON is withoutBadIDsProto for OTLP JSON, whose ids are hex:
// an id that is not 32 (trace) or 16 (span) hex digits is removed.
func withoutBadIDsJSON(req []byte) ([]byte, bool) {
	// The generic decode takes several times the body, outside the ingest
	// budget: one at a time, so that clients sending such requests at once
	// cannot multiply it.
	jsonFixing.Lock()
	defer jsonFixing.Unlock()
	d := json.NewDecoder(bytes.NewReader(req))
	d.UseNumber() // int64 values as strings or numbers stay exact
	var doc map[string]any
	if d.Decode(&doc) != nil {
		return req, false
	}
	changed := false
	for _, rl := range list(doc["resourceLogs"]) {
		for _, sl := range list(field(rl, "scopeLogs")) {
			for _, lr := range list(field(sl, "logRecords")) {
				rec, ok := lr.(map[string]any)
				if !ok {
					continue
				}
				for key, size := range map[string]int{"traceId": 16, "spanId": 8} {
					if s, ok := rec[key].(string); ok && s != "" && !hexOf(s, size) {
						delete(rec, key)
						changed = true
					}
				}
			}
		}
	}
	if !changed {
		return req, false
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return req, false
	}
	return out, true
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func field(v any, key string) any {
	m, _ := v.(map[string]any)
	return m[key]
}

// hexOf says whether s is size bytes in hex.
func hexOf(s string, size int) bool {
	if len(s) != 2*size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
