package files

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/outbox"
)

// work reads what is new in tr from its committed offset, frames it into
// records and commits them with tr's new mark in one transaction. It runs
// in a worker, which owns tr until the result is back in Run.
func (t *Tailer) work(ctx context.Context, tr *tracked) result {
	res := result{tr: tr}
	info, err := tr.f.Stat()
	if err != nil {
		res.err = fmt.Errorf("stat %s: %w", tr.path, err)
		return res
	}
	now, size := time.Now(), info.Size()
	if size != tr.size {
		tr.grewAt = now
		tr.size = size
	}
	before := tr.position()
	truncated := t.truncated(tr, size)
	if truncated {
		t.stats.Rotations.Add(1)
		t.log.Info("files: file truncated (copytruncate?); reading it from the start", "path", tr.path, "size", size, "was_at", before.Offset)
		p := before
		p.Before = &copied{FPLen: before.FPLen, FP: before.FP, Offset: before.Offset}
		p.Offset, p.FPLen, p.FP = 0, 0, fpOf(nil)
		tr.setPos(p)
		tr.long, tr.heldAt = longLine{}, time.Time{}
	}
	idle := now.Sub(tr.grewAt)
	// A file out of the globs (renamed away, deleted) that stopped growing
	// gives no more: read to its end, its last line without a newline and
	// held records are records too, and then it is forgotten.
	final := !tr.inGlob && idle >= tr.in.conf.RotateWait
	cur := tr.position()
	recs, upTo, eof, err := t.read(tr, cur.Offset, size, final, now, idle)
	if err != nil {
		tr.setPos(before)
		tr.long = longLine{}
		res.err = err
		return res
	}
	next := cur
	next.Offset, next.Path = upTo, tr.path
	if next.FPLen < fpMax && size > int64(next.FPLen) {
		if next.FP, next.FPLen, err = fingerprint(tr.f, fpMax); err != nil {
			tr.setPos(before)
			res.err = fmt.Errorf("read the first bytes of %s: %w", tr.path, err)
			return res
		}
	}
	res.forget = final && eof && upTo == size && !tr.long.active()
	mark := outbox.Mark{Key: tr.id.key(), Value: next.encode()}
	if res.forget {
		mark.Value = nil
	}
	if len(recs) == 0 && !res.forget && next == cur && !truncated {
		res.more = !eof
		return res // nothing to store
	}
	if err := t.c.AppendMarked(ctx, Source, t.encode(tr, recs, now), []outbox.Mark{mark}); err != nil {
		tr.setPos(before)
		tr.long, tr.heldAt = longLine{}, time.Time{}
		res.err = fmt.Errorf("store %d records of %s: %w", len(recs), tr.path, err)
		return res
	}
	t.stats.Records.Add(int64(len(recs)))
	t.stats.Bytes.Add(upTo - before.Offset)
	if res.forget {
		t.stats.Rotations.Add(1)
	}
	tr.mu.Lock()
	next.Before = tr.pos.Before // Run may have found the copy meanwhile
	tr.pos = next
	tr.mu.Unlock()
	res.more = !eof
	return res
}

// truncated: the file is shorter than what was read of it, or its first
// bytes are no longer those fingerprinted (copytruncate, then written past
// the old offset before this look).
func (t *Tailer) truncated(tr *tracked, size int64) bool {
	p := tr.position()
	if size < p.Offset {
		return true
	}
	return p.FPLen > 0 && !matches(tr.f, p.FPLen, p.FP)
}

// read reads one chunk of tr from its committed offset (or from where a long
// line's newline search stands) and frames it. upTo is the end of the last
// record returned (or of bytes that make no record: blank lines); eof says
// the chunk reached the file's size.
func (t *Tailer) read(tr *tracked, offset, size int64, final bool, now time.Time, idle time.Duration) (recs []record, upTo int64, eof bool, err error) {
	from := offset
	if tr.long.active() {
		from = tr.long.scanned
	}
	n := int(min(size-from, int64(t.chunk)))
	buf := make([]byte, max(n, 0))
	if n > 0 {
		got, err := tr.f.ReadAt(buf, from)
		if err != nil && err != io.EOF {
			return nil, 0, false, fmt.Errorf("read %s at %d: %w", tr.path, from, err)
		}
		buf = buf[:got]
	}
	eof = from+int64(len(buf)) >= size
	fr := &tr.in.framer
	lines, rest := fr.split(buf, from, &tr.long)
	flush := final && eof
	if flush { // the last line, without its newline
		switch {
		case tr.long.active():
			lines = append(lines, line{off: tr.long.start, end: size, msg: tr.long.head, cut: true})
			tr.long, rest = longLine{}, size
		case rest < size:
			l := line{off: rest, end: size, msg: buf[rest-from:]}
			if len(l.msg) > fr.maxLine {
				l.msg, l.cut = cutRunes(l.msg, fr.maxLine), true
			}
			lines = append(lines, l)
			rest = size
		}
	}
	// Held records (multiline, cri) go out once the file has not grown for
	// the multiline timeout; a partial line after them still waits.
	if !flush && eof && tr.heldAt != (time.Time{}) && now.Sub(tr.heldAt) >= t.holdFor(tr) && idle >= t.holdFor(tr) {
		flush = true
	}
	recs, heldFrom := fr.records(lines, flush)
	upTo = rest
	if heldFrom >= 0 {
		upTo = heldFrom
		if tr.heldAt == (time.Time{}) {
			tr.heldAt = now
		}
	} else {
		tr.heldAt = time.Time{}
	}
	for _, r := range recs {
		if r.cut {
			t.stats.Truncated.Add(1)
		}
	}
	return recs, upTo, eof, nil
}

// holdFor is how long held records wait for the line that closes them.
func (t *Tailer) holdFor(tr *tracked) time.Duration {
	if m := tr.in.conf.Multiline; m != nil {
		return m.Timeout
	}
	return tr.in.conf.RotateWait // cri parts without multiline
}

// encode builds the envelope of each record.
func (t *Tailer) encode(tr *tracked, recs []record, now time.Time) [][]byte {
	if len(recs) == 0 {
		return nil
	}
	st := ingest.NewStamp(now, t.cfg.Host, Source)
	path := ingest.String("path", tr.path)
	json := tr.in.conf.Format == "json"
	out := make([][]byte, len(recs))
	for i, r := range recs {
		fields := []ingest.Field{path, ingest.Int("offset", r.off)}
		if r.stream != "" {
			fields = append(fields, ingest.String("stream", r.stream))
		}
		if json && !r.cut {
			if obj, err := st.Object(r.msg, fields...); err == nil {
				out[i] = obj
				continue
			}
			r.bad = true
		}
		if r.bad {
			t.stats.ParseError.Add(1)
			fields = append(fields, ingest.Field{Key: "parse_error", JSON: []byte("true")})
		}
		out[i] = st.Line(r.msg, r.cut, r.ts, fields...)
	}
	return out
}
