package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/outbox"
)

// work reads what is new in tr from its committed offset, frames it into
// records and commits them with tr's new mark in one transaction, a batch
// at a time. It runs in a worker, which owns tr until the result is back in
// Run. While one batch commits, the next is read and encoded: a batch is
// committed only after the one before it was, so the marks stay in order,
// and after a failed commit nothing later is committed.
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
		tr.setPos(before.truncatedNow())
		tr.long, tr.heldAt = longLine{}, time.Time{}
	}
	idle := now.Sub(tr.grewAt)
	// A file out of the globs (renamed away, deleted) that stopped growing
	// gives no more: read to its end, its last line without a newline and
	// held records are records too, and then it is forgotten.
	final := !tr.inGlob && idle >= tr.in.conf.RotateWait

	var inflight *batch
	var committed chan error // the answer to inflight's commit
	committedAny := false
	// settle waits for the batch in flight and takes its position.
	settle := func() error {
		if inflight == nil {
			return nil
		}
		err := <-committed
		b := inflight
		inflight = nil
		if err != nil {
			if errors.Is(err, outbox.ErrQueueFull) && b.n > 1 {
				tr.batch = max(1, b.n/2) // a queue smaller than the batch (max_records)
			}
			return fmt.Errorf("store %d records of %s: %w", b.n, tr.path, err)
		}
		committedAny = true
		if b.forget {
			t.stats.Rotations.Add(1)
		}
		t.stats.Records.Add(int64(b.n))
		t.stats.Bytes.Add(b.bytes)
		tr.setPos(b.next)
		return nil
	}
	fail := func(err error) result {
		if !committedAny {
			tr.setPos(before) // a truncation seen here is seen again
		}
		tr.long, tr.heldAt = longLine{}, time.Time{} // read again from the committed offset
		res.err = err
		return res
	}
	cur := tr.position()
	for range batchesPerJob {
		b, err := t.prepare(tr, cur, size, final, now, idle, truncated && !committedAny && inflight == nil)
		if serr := settle(); serr != nil {
			return fail(serr)
		}
		if errors.Is(err, errChanged) {
			tr.long, tr.heldAt = longLine{}, time.Time{}
			res.more = true // the next look finds the truncation
			return res
		}
		if err != nil {
			return fail(err)
		}
		if b == nil {
			return res // nothing (more) to store
		}
		inflight, committed = b, make(chan error, 1)
		go func() { committed <- t.c.AppendMarked(ctx, Source, b.records, b.marks) }() // settle waits for it
		cur = b.next
		if b.eof || b.forget {
			if err := settle(); err != nil {
				return fail(err)
			}
			res.forget = b.forget
			return res
		}
	}
	if err := settle(); err != nil {
		return fail(err)
	}
	res.more = true // a file with much to read lets the others have a turn
	return res
}

// batchesPerJob is how many batches one job commits of a file before it
// goes back in line behind the others.
const batchesPerJob = 16

// batch is one commit's worth of a file: its records, encoded, and the
// mark that takes the file's position to next.
type batch struct {
	records     [][]byte
	marks       []outbox.Mark
	n           int
	bytes       int64 // of the file, from the old offset to next.Offset
	next        position
	eof, forget bool
}

// prepare reads and encodes the next batch of tr after position cur; nil
// when there is nothing to store. changed says cur was set by this job (a
// truncation) and is to be stored even without records.
func (t *Tailer) prepare(tr *tracked, cur position, size int64, final bool, now time.Time, idle time.Duration, changed bool) (*batch, error) {
	recs, upTo, eof, err := t.read(tr, cur.Offset, size, final, now, idle)
	if err != nil {
		return nil, err
	}
	if len(recs) > tr.batch { // the rest in the next batch
		recs = recs[:tr.batch]
		upTo, eof, final = recs[len(recs)-1].end, false, false
		tr.heldAt, tr.long = time.Time{}, longLine{} // read again from upTo
	}
	next := cur
	next.Offset, next.Path = upTo, tr.path
	if next.FPLen < fpMax && size > int64(next.FPLen) {
		if next.FP, next.FPLen, next.Short, err = growFingerprint(tr.f, cur); err != nil {
			return nil, err
		}
	}
	forget := final && eof && upTo == size && !tr.long.active()
	if len(recs) == 0 && !forget && next.same(cur) && !changed {
		return nil, nil
	}
	mark := outbox.Mark{Key: tr.id.key(), Value: next.encode()}
	if forget {
		mark.Value = nil
	}
	return &batch{records: t.encode(tr, recs, now), marks: []outbox.Mark{mark}, n: len(recs),
		bytes: upTo - cur.Offset, next: next, eof: eof, forget: forget}, nil
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
	// The file may have been truncated and written again since it was
	// looked at: bytes read then are not those of the file the offset is in.
	if p := tr.position(); p.FPLen > 0 && !matches(tr.f, p.FPLen, p.FP) {
		return nil, 0, false, errChanged
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

// errChanged: the file changed under a read (truncated); nothing is stored,
// and the next look sees the truncation.
var errChanged = errors.New("the file changed while it was read")

// growFingerprint fingerprints the first bytes of f, up to fpMax, after
// checking that they still begin with what cur fingerprinted.
func growFingerprint(f *os.File, cur position) (string, int, []string, error) {
	fp, n, short, first, err := fingerprints(f)
	if err != nil {
		return "", 0, nil, fmt.Errorf("read the first bytes of %s: %w", cur.Path, err)
	}
	if n < cur.FPLen || fpOf(first[:cur.FPLen]) != cur.FP {
		return "", 0, nil, errChanged
	}
	return fp, n, short, nil
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
	st := ingest.NewStamp(now, t.cfg.Host, Source).WithFields(tr.in.fields)
	path := ingest.String("path", tr.path)
	json := tr.in.conf.Format == "json"
	out := make([][]byte, len(recs))
	fields := make([]ingest.Field, 0, 4)
	nums := make([]byte, 0, 12*len(recs)) // every record's offset, in one allocation
	// Every record of the batch in one buffer: one allocation instead of
	// one per record. A record that does not fit moves the rest to a new
	// buffer; the records before keep the old one.
	size := 0
	for _, r := range recs {
		size += st.LineSize(r.msg, path) + 48
	}
	buf := make([]byte, 0, size)
	for i, r := range recs {
		from := len(nums)
		nums = strconv.AppendInt(nums, r.off, 10)
		fields = append(fields[:0], path, ingest.Field{Key: "offset", JSON: nums[from:len(nums):len(nums)]})
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
		start := len(buf)
		buf = st.AppendLine(buf, r.msg, r.cut, r.ts, fields...)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}
