package forwarders

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestRecordID(t *testing.T) {
	for in, want := range map[string]string{
		`{"ts":"x","source":"http","record_id":"01M8VWS77960EY91WG31EXN4JV","message":"m"}`: "01M8VWS77960EY91WG31EXN4JV",
		`{"n":{"record_id":"nested"},"record_id" : "top"}`:                                  "top",
		`{"message":"\"record_id\":\"in a string\"","record_id":"a\u0062c"}`:                "abc",
		`{"a":["record_id",{"record_id":"x"}]}`:                                             "",
		`{"record_id":42}`:                                                                  "",
		`{"record_id":"unterminated`:                                                        "",
		`not json`:                                                                          "",
	} {
		if got := string(recordID([]byte(in))); got != want {
			t.Errorf("recordID(%s) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRecordID(f *testing.F) {
	f.Add([]byte(`{"record_id":"x"}`))
	f.Add([]byte(`{"a":"\\","record_id":"y\"z"}`))
	// On a valid object that names record_id once, it agrees with
	// encoding/json.
	f.Fuzz(func(t *testing.T, b []byte) {
		got := recordID(b)
		var m map[string]json.RawMessage
		if bytes.Count(b, []byte(`record_id`)) != 1 || json.Unmarshal(b, &m) != nil {
			return
		}
		var want string
		if json.Unmarshal(m["record_id"], &want) != nil {
			want = ""
		}
		if string(got) != want {
			t.Fatalf("recordID(%s) = %q, encoding/json says %q", b, got, want)
		}
	})
}
