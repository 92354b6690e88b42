package ingest

// AppendJSONString appends s quoted as encoding/json quotes it (invalid
// UTF-8 as \ufffd), for inputs with their own package that build nested
// objects (the journal).
func AppendJSONString(b []byte, s string) []byte { return appendJSONString(b, s) }

// SeverityName is the syslog name of severity n (0 emerg .. 7 debug), or ""
// when n is out of range.
func SeverityName(n int) string {
	if n < 0 || n >= len(severities) {
		return ""
	}
	return severities[n]
}

// FacilityName is the syslog name of facility n (0 kern .. 23 local7), or ""
// when n is out of range.
func FacilityName(n int) string {
	if n < 0 || n >= len(facilities) {
		return ""
	}
	return facilities[n]
}
