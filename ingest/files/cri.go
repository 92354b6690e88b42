package files

import (
	"bytes"
	"time"
)

// parseCRI reads one line of the CRI log format that Kubernetes runtimes
// (containerd, CRI-O) write: "<RFC 3339 time> <stdout|stderr> <P|F> <message>".
// P marks a part of a message the runtime split (over 16 KiB); F its last
// part. ok is false when the line is not in that form.
func parseCRI(b []byte) (ts time.Time, stream string, partial bool, msg []byte, ok bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return ts, "", false, nil, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(b[:sp]))
	if err != nil {
		return ts, "", false, nil, false
	}
	b = b[sp+1:]
	switch {
	case bytes.HasPrefix(b, []byte("stdout ")):
		stream, b = "stdout", b[len("stdout "):]
	case bytes.HasPrefix(b, []byte("stderr ")):
		stream, b = "stderr", b[len("stderr "):]
	default:
		return ts, "", false, nil, false
	}
	// The tag may carry more flags after a colon (P:..., F:...); the first
	// letter is what matters.
	sp = bytes.IndexByte(b, ' ')
	tag := b
	if sp >= 0 {
		tag, msg = b[:sp], b[sp+1:]
	}
	if len(tag) == 0 || (tag[0] != 'P' && tag[0] != 'F') || (len(tag) > 1 && tag[1] != ':') {
		return ts, "", false, nil, false
	}
	return ts, stream, tag[0] == 'P', msg, true
}

// joinCRI turns CRI lines into messages: the parts of a split message are
// joined into one (cut at maxLine), with the time of its first part. A line
// not in CRI form is kept whole, marked bad. The parts of a message whose
// last part has not come are held back unless flush; heldFrom is where
// they start, or -1.
func joinCRI(lines []line, maxLine int, flush bool) (out []line, heldFrom int64) {
	var cur *line
	for _, l := range lines {
		ts, stream, partial, msg, ok := parseCRI(l.msg)
		if !ok {
			if cur != nil { // a message cut short by a bad line: what came of it
				out = append(out, *cur)
				cur = nil
			}
			l.bad = true
			out = append(out, l)
			continue
		}
		if cur == nil || cur.stream != stream {
			if cur != nil {
				out = append(out, *cur)
			}
			cur = &line{off: l.off, ts: ts, stream: stream, cut: l.cut}
		}
		cur.end = l.end
		if room := maxLine - len(cur.msg); room < len(msg) {
			cur.cut = true
			msg = cutRunes(msg, max(room, 0))
		}
		cur.msg = append(cur.msg, msg...)
		cur.cut = cur.cut || l.cut
		if !partial {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		if flush {
			out = append(out, *cur)
		} else {
			return out, cur.off
		}
	}
	return out, -1
}
