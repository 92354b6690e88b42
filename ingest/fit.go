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
