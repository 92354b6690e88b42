package otlp

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecode: whatever a client sends, decoding either fails or gives
// records that are each one valid JSON object, within the record limit,
// and every LogRecord is either stored or counted as rejected.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"},"traceId":"0102"}]}]}]}`), true)
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00}, false)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		ct := ctProto
		if isJSON {
			ct = ctJSON
		}
		ld, err := decode(ct, data)
		if err != nil {
			return
		}
		b := &builder{received: time.Unix(0, 0).UTC(), host: "h", maxRecord: 4096}
		b.build(ld)
		if len(b.records)+b.rejected != ld.LogRecordCount() {
			t.Fatalf("%d stored + %d rejected of %d log records", len(b.records), b.rejected, ld.LogRecordCount())
		}
		for _, rec := range b.records {
			var m map[string]any
			if err := json.Unmarshal(rec, &m); err != nil {
				t.Fatalf("record %q: %v", rec, err)
			}
			if len(rec) > 4096 || m["source"] != "otlp" {
				t.Fatalf("record %q", rec)
			}
		}
	})
}
