package files

import (
	"bytes"
	"regexp"
	"time"
	"unicode/utf8"
)

// line is one line of a file, or a joined CRI message: its bytes without
// the newline, where it starts and where the next one starts.
type line struct {
	off, end int64
	msg      []byte
	cut      bool      // cut at max_line_bytes
	ts       time.Time // cri: the runtime's timestamp
	stream   string    // cri: stdout or stderr
	bad      bool      // cri: not in CRI form, kept whole as text
}

// record is what one stored record is made of: one line, or several
// (multiline), joined by newlines.
type record struct {
	off, end int64
	msg      []byte
	cut      bool
	ts       time.Time
	stream   string
	bad      bool
}

// framer turns the bytes of a file, read from a record boundary, into
// records. It keeps no state between calls but what a long line needs:
// the bytes after a record boundary are framed again on every read, so
// that a crash or an error has nothing to lose.
type framer struct {
	maxLine int
	start   *regexp.Regexp // multiline: a line matching it begins a record
	cri     bool
}

// split cuts buf, which starts at file offset base, into complete lines.
// It returns them and the offset where the unfinished rest begins. A line
// longer than maxLine is cut there and its rest skipped up to its newline;
// long says where such a line's newline search stands when buf ends
// before it (the caller reads on from there, keeping the cut head).
func (f *framer) split(buf []byte, base int64, long *longLine) (lines []line, rest int64) {
	i := 0
	if long.active() {
		nl := bytes.IndexByte(buf, '\n')
		if nl < 0 {
			long.scanned = base + int64(len(buf))
			return nil, long.start
		}
		lines = append(lines, line{off: long.start, end: base + int64(nl) + 1, msg: long.head, cut: true})
		*long = longLine{}
		i = nl + 1
	}
	for i < len(buf) {
		nl := bytes.IndexByte(buf[i:], '\n')
		if nl < 0 {
			if len(buf)-i > f.maxLine { // no newline yet, and already too long
				*long = longLine{start: base + int64(i), head: cutRunes(buf[i:], f.maxLine), scanned: base + int64(len(buf))}
				return lines, long.start
			}
			return lines, base + int64(i)
		}
		msg := buf[i : i+nl]
		l := line{off: base + int64(i), end: base + int64(i+nl) + 1, msg: msg}
		if len(msg) > f.maxLine {
			l.msg, l.cut = cutRunes(msg, f.maxLine), true
		}
		lines = append(lines, l)
		i += nl + 1
	}
	return lines, base + int64(i)
}

// longLine is a line longer than max_line_bytes whose newline has not been
// read yet: its first max_line_bytes, where it starts, and how far the
// search for its newline got.
type longLine struct {
	start, scanned int64
	head           []byte
}

func (l *longLine) active() bool { return l.head != nil }

// cutRunes returns the first n bytes of b, fewer when n falls inside a
// UTF-8 sequence, so that a cut line stays valid text when it was.
func cutRunes(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	cut := n
	for k := 0; k < utf8.UTFMax && cut > 0 && !utf8.RuneStart(b[cut]); k++ {
		cut--
	}
	if cut == 0 || !utf8.Valid(b[:cut]) && utf8.Valid(b[:n]) {
		cut = n
	}
	return append([]byte(nil), b[:cut]...)
}

// records groups lines into records. Complete records are returned; the
// lines of the ones still open (a multiline record that the next start
// line has not closed yet, a CRI message whose last part has not come) are
// held back, unless flush says the file will give no more (timeout,
// rotation, deletion): then they are records too. heldFrom is where the
// held lines start, or -1 when none are held.
func (f *framer) records(lines []line, flush bool) (recs []record, heldFrom int64) {
	heldFrom = -1
	if f.cri {
		lines, heldFrom = joinCRI(lines, f.maxLine, flush)
	}
	if f.start == nil {
		for _, l := range lines {
			if len(l.msg) == 0 && !l.cut {
				continue // blank lines are not records
			}
			recs = append(recs, record(l))
		}
		return recs, heldFrom
	}
	var cur *record
	for _, l := range lines {
		if cur != nil && !f.start.Match(l.msg) {
			cur.end = l.end
			if !cur.cut {
				room := f.maxLine - len(cur.msg) - 1
				if room < len(l.msg) {
					cur.cut = true
				}
				if room > 0 {
					cur.msg = append(append(cur.msg, '\n'), cutRunes(l.msg, room)...)
				}
			}
			cur.cut = cur.cut || l.cut
			continue
		}
		if cur != nil {
			recs = append(recs, *cur)
		}
		r := record(l)
		r.msg = append([]byte(nil), l.msg...) // grows with the lines that follow
		cur = &r
	}
	if cur != nil {
		if flush {
			recs = append(recs, *cur)
		} else {
			heldFrom = cur.off // the CRI parts held after it start later
		}
	}
	return recs, heldFrom
}
