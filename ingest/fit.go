package ingest

import "unicode/utf8"

// envelopeRoom is what a stored record may take beyond the size limit of
// what the client sent: the fields outboxd adds (times, host, source,
// facility, ...). The limits apply to what is stored, not only to what is
// sent: JSON escapes a control byte as six bytes, so without a cut a 64 KiB
// syslog message of control bytes became a 384 KiB record.
const envelopeRoom = 4 << 10

// fitRecord builds the record of msg and, while it is longer than limit,
// cuts msg until it fits; cut says it did (build is then called with cut
// set, so that the record can say so). A valid UTF-8 message is cut at a
// character boundary. When even an empty message does not fit, the shortest
// record is returned with fits false. limit <= 0 means no limit.
func fitRecord(msg []byte, limit int, build func(msg []byte, cut bool) []byte) (rec []byte, cut, fits bool) {
	rec = build(msg, false)
	if limit <= 0 || len(rec) <= limit {
		return rec, false, true
	}
	fixed := len(build(nil, true))
	valid := utf8.Valid(msg)
	n := len(msg)
	for len(rec) > limit && n > 0 {
		// Guess from what a message byte costs on average in this record;
		// cut at least one byte a round, so the loop ends.
		perByte := float64(len(rec)-fixed) / float64(n)
		next := max(0, min(n-1, int(float64(limit-fixed)/perByte)))
		for valid && next > 0 && !utf8.RuneStart(msg[next]) {
			next--
		}
		n = next
		rec = build(msg[:n], true)
	}
	return rec, true, len(rec) <= limit
}

// jsonPrefix is how many bytes of msg fit in limit bytes once escaped as a
// JSON string (as appendJSONString escapes). Cutting there before a record
// is built keeps a flood of control bytes from allocating six times the
// limit for every message only to cut it afterwards.
func jsonPrefix(msg []byte, limit int) int {
	cost := 0
	for i := 0; i < len(msg); {
		w, size := 1, 1
		if c := msg[i]; c < utf8.RuneSelf {
			switch {
			case jsonSafe[c]:
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
				w = 2
			default:
				w = 6 // \u00XX
			}
		} else {
			var r rune
			r, size = utf8.DecodeRune(msg[i:])
			w = size
			if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
				w = 6
			}
		}
		if cost+w > limit {
			return i
		}
		cost += w
		i += size
	}
	return len(msg)
}

// precut cuts msg where its escaped form reaches limit; cut says it did.
// Messages too short to reach it are not scanned.
func precut(msg []byte, limit int) ([]byte, bool) {
	if limit <= 0 || len(msg)*6 <= limit {
		return msg, false
	}
	if n := jsonPrefix(msg, limit); n < len(msg) {
		return msg[:n], true
	}
	return msg, false
}
