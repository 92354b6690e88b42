package forwarders

import (
	"bytes"
	"encoding/json"
)

// recordIDKey is the envelope's record id, which ingest gives every record
// before it is committed (or the record brought its own).
var recordIDKey = []byte(`"record_id"`)

// recordID is the record_id at the top level of the JSON object record, or
// nil. It walks the object once without decoding it: keys at depth 1 are
// compared, nested objects and strings are skipped.
func recordID(record []byte) []byte {
	depth := 0
	expectKey := false
	for i := 0; i < len(record); i++ {
		switch c := record[i]; c {
		case '{', '[':
			depth++
			expectKey = c == '{' && depth == 1
		case '}', ']':
			depth--
		case ',':
			expectKey = depth == 1
		case '"':
			end := stringEnd(record, i)
			if end < 0 {
				return nil
			}
			if expectKey && depth == 1 && bytes.Equal(record[i:end+1], recordIDKey) {
				return stringValue(record, end+1)
			}
			expectKey = false
			i = end
		}
	}
	return nil
}

// stringEnd is the index of the quote that closes the string opening at i.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

// stringValue reads `: "value"` from i: the value unescaped, nil when it
// is not a string.
func stringValue(b []byte, i int) []byte {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == ':') {
		i++
	}
	if i >= len(b) || b[i] != '"' {
		return nil
	}
	end := stringEnd(b, i)
	if end < 0 {
		return nil
	}
	raw := b[i : end+1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1]
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	return []byte(s)
}
