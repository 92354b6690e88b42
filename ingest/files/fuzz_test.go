package files

import (
	"bytes"
	"testing"
)

// FuzzSplit holds the line splitter to what a file is: whatever the bytes
// and wherever reads end, the lines come out the same, each at its offset,
// and a line is cut only when it is longer than the limit.
//
//	go test ./ingest/files -run '^$' -fuzz FuzzSplit -fuzztime 30s
func FuzzSplit(f *testing.F) {
	f.Add([]byte("one\ntwo\n\nthree"), 3, 5)
	f.Add([]byte("a very long line that is cut\nshort\n"), 7, 4)
	f.Add([]byte("caf\xc3\xa9 \xe2\x82\xac\n\xff\xfe\n"), 4, 3)
	f.Fuzz(func(t *testing.T, data []byte, maxLine, step int) {
		maxLine = 1 + abs(maxLine)%64
		step = 1 + abs(step)%32
		fr := &framer{maxLine: maxLine}
		whole, wholeRest := splitAll(fr, data, len(data)+1)
		parts, partRest := splitAll(fr, data, step)
		if wholeRest != partRest || len(whole) != len(parts) {
			t.Fatalf("read whole: %d lines, rest at %d; in steps of %d: %d lines, rest at %d", len(whole), wholeRest, step, len(parts), partRest)
		}
		for i, l := range whole {
			p := parts[i]
			if l.off != p.off || l.end != p.end || !bytes.Equal(l.msg, p.msg) || l.cut != p.cut {
				t.Fatalf("line %d differs: %+v vs %+v", i, l, p)
			}
			full := data[l.off : l.end-1]
			if data[l.end-1] != '\n' || !bytes.HasPrefix(full, l.msg) || l.cut != (len(full) > maxLine) || len(l.msg) > maxLine {
				t.Fatalf("line %d: %q from %q (max %d)", i, l.msg, full, maxLine)
			}
		}
	})
}

// splitAll feeds data to the splitter step bytes at a time, as reads of a
// growing file would, re-reading from the unfinished rest as the tailer does.
func splitAll(fr *framer, data []byte, step int) ([]line, int64) {
	var out []line
	var long longLine
	rest := int64(0)
	for end := min(step, len(data)); ; end = min(end+step, len(data)) {
		from := rest
		if long.active() {
			from = long.scanned
		}
		lines, r := fr.split(data[from:end], from, &long)
		for _, l := range lines {
			l.msg = append([]byte(nil), l.msg...)
			out = append(out, l)
		}
		rest = r
		if end == len(data) {
			return out, rest
		}
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// FuzzCRI: the CRI parser never panics, and what it accepts has a stream.
func FuzzCRI(f *testing.F) {
	f.Add([]byte("2026-12-02T10:00:00.123456789Z stdout F hello"))
	f.Add([]byte("2026-12-02T10:00:00Z stderr P:x part"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, stream, _, msg, ok := parseCRI(b)
		if ok && (stream != "stdout" && stream != "stderr" || len(msg) > len(b)) {
			t.Fatalf("%q: stream %q, message %q", b, stream, msg)
		}
		lines, _ := joinCRI([]line{{off: 0, end: int64(len(b)) + 1, msg: b}}, 16, true)
		if len(lines) != 1 {
			t.Fatalf("one line became %d", len(lines))
		}
	})
}
