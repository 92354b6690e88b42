package files

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
)

// found is a path that some entry's globs match.
type found struct {
	path string
	in   *input
	info os.FileInfo
	id   fileID
}

// expand lists the regular files the entries' globs match and their
// excludes do not, each file once (the first entry and path that name it
// win: a file two entries match is read once).
func (t *Tailer) expand() []found {
	var out []found
	seen := map[fileID]bool{}
	for _, in := range t.inputs {
		for _, pattern := range in.conf.Paths {
			base, _ := doublestar.SplitPattern(pattern)
			t.watch.add(base)
			paths, _ := doublestar.FilepathGlob(pattern, doublestar.WithFilesOnly(), doublestar.WithNoFollow())
			for _, p := range paths {
				if excluded(in.conf.Exclude, p) {
					continue
				}
				info, err := os.Stat(p) // a symlink is read as the file it points to
				if err != nil || !info.Mode().IsRegular() {
					continue
				}
				id := idOf(info)
				if seen[id] {
					continue
				}
				seen[id] = true
				t.watch.add(filepath.Dir(p))
				out = append(out, found{path: p, in: in, info: info, id: id})
			}
		}
	}
	return out
}

// excluded: a glob with a / matches the whole path, one without matches
// the base name ("*.gz").
func excluded(globs []string, path string) bool {
	for _, g := range globs {
		var ok bool
		if strings.Contains(g, "/") {
			ok, _ = doublestar.PathMatch(g, path)
		} else {
			ok, _ = doublestar.Match(g, filepath.Base(path))
		}
		if ok {
			return true
		}
	}
	return false
}

// scan expands the globs and brings the tracked files up to date: a file
// still found (perhaps under another name) goes on; a new one is opened; a
// tracked one no longer found left the globs (renamed away or deleted) and
// is read to its end. first: this is the first scan of the first start.
func (t *Tailer) scan(now time.Time, first bool) (seen map[fileID]bool) {
	list := t.expand()
	// Files with a stored mark first: a copy made while outboxd was down is
	// known by the mark of the file it copies.
	slices.SortStableFunc(list, func(a, b found) int {
		_, ka := t.known[a.id]
		_, kb := t.known[b.id]
		switch {
		case ka && !kb:
			return -1
		case kb && !ka:
			return 1
		}
		return 0
	})
	seen = make(map[fileID]bool, len(list))
	for _, m := range list {
		seen[m.id] = true
		if tr := t.files[m.id]; tr != nil {
			t.stillThere(tr, m)
			continue
		}
		if cw := t.copies[m.id]; cw != nil {
			cw.path = m.path
			t.resolveCopy(now, m, cw)
			continue
		}
		t.discover(now, m, first, nil)
	}
	for id, tr := range t.files {
		if tr.busy {
			continue // its worker owns it; the next scan sees it
		}
		if !seen[id] && tr.inGlob {
			tr.inGlob = false
			if t.byPath[tr.path] == tr {
				delete(t.byPath, tr.path)
			}
			tr.path = currentPath(tr.f, tr.path)
		}
		if !tr.inGlob || tr.heldAt != (time.Time{}) {
			t.enqueue(tr)
		}
	}
	for id := range t.copies {
		if !seen[id] {
			delete(t.copies, id)
		}
	}
	return seen
}

// stillThere updates a tracked file that a scan found again.
func (t *Tailer) stillThere(tr *tracked, m found) {
	if tr.busy {
		return // its worker owns it; the next scan sees it
	}
	if tr.path != m.path { // renamed, still under a glob: the same file
		if t.byPath[tr.path] == tr {
			delete(t.byPath, tr.path)
		}
		tr.path = m.path
	}
	t.byPath[m.path] = tr
	tr.inGlob = true
	if m.info.Size() != tr.size || tr.pos.Offset < m.info.Size() {
		t.enqueue(tr)
	}
}

// discover opens a file the globs match that is not tracked, and decides
// where reading starts: at its stored mark when it is the file the mark
// was written for; where the original was left when it is the copy of a
// truncated file; at its end for read_from: end at the first start;
// otherwise at 0.
// decided, when not nil, is where a file that waited as a possible copy
// starts: it is not looked at as a copy again.
func (t *Tailer) discover(now time.Time, m found, first bool, decided *int64) {
	f, err := os.Open(m.path)
	if err != nil {
		t.stats.Errors.Add(1)
		t.fail(m.path, "files: cannot open "+m.path+" (tried again at every scan)", err)
		return
	}
	info, err := f.Stat()
	if err != nil || idOf(info) != m.id {
		f.Close() // replaced between the scan and the open: the next scan sees the new one
		return
	}
	t.recovered(m.path)
	tr := &tracked{id: m.id, in: m.in, f: f, path: m.path, inGlob: true, size: info.Size(), grewAt: now, batch: t.cfg.BatchRecords}
	tr.pos = position{Path: m.path, Dev: m.id.dev, Ino: m.id.ino, FP: fpOf(nil)}
	if p, ok := t.known[m.id]; ok {
		delete(t.known, m.id)
		if matches(f, p.FPLen, p.FP) {
			tr.pos = p // the file the mark was written for: on from there
			tr.pos.Path = m.path
		} else {
			// Truncated while outboxd was down (copytruncate), or a new file
			// on a reused inode: read from 0, and know the copy of what it
			// held, if one turns up, by its first bytes.
			tr.pos = p.truncatedNow()
			tr.pos.Path = m.path
			t.stats.Rotations.Add(1)
			t.log.Info("files: a file read before holds other bytes now (truncated, or a new file on its inode); reading it from the start", "path", m.path)
		}
	} else if decided != nil {
		tr.pos.Offset = min(*decided, info.Size())
	} else if from, decided := t.classify(f, m, nil, now); !decided {
		t.log.Debug("files: a new file may be the copy of a truncated one; waiting", "path", m.path)
		t.copies[m.id] = &copyWait{path: m.path, in: m.in, seenAt: now, size: info.Size()}
		f.Close()
		return
	} else if from > 0 {
		tr.pos.Offset = min(from, info.Size())
		t.log.Info("files: the copy of a truncated file; reading it from where the original was left", "path", m.path, "offset", tr.pos.Offset)
	} else if first && m.in.conf.ReadFrom == "end" {
		tr.pos.Offset = info.Size()
		tr.pos.FP, tr.pos.FPLen, tr.pos.Short, _, _ = fingerprints(f)
	}
	t.log.Debug("files: tracking a file", "path", m.path, "offset", tr.pos.Offset, "size", info.Size())
	t.files[m.id] = tr
	t.byPath[m.path] = tr
	t.enqueue(tr)
}

// classify tells whether the new file m is the copy of a tracked file's
// content before a truncation (copytruncate). from is where to read it from
// when decided: where the original was left when it is a copy (its first
// bytes match a fingerprint in a mark's Before, and it is that long, or has
// stopped growing), else 0. It is not decided while m may still become a
// copy: it holds the first bytes of a file in its directory that was not
// truncated (yet), or it is shorter than a copy would be and may still be
// being written; then it waits, looked at again by every scan, at most
// rotate_wait. A file's Before stays in its mark for its next truncations:
// a copy found but not committed before a crash is known again at the next
// start, where the files with marks are tracked first.
func (t *Tailer) classify(f *os.File, m found, cw *copyWait, now time.Time) (from int64, decided bool) {
	size := m.info.Size()
	grew := cw == nil || size != cw.size
	waited := cw != nil && now.Sub(cw.seenAt) >= m.in.conf.RotateWait
	maybe := false
	// busy: m starts like a file a worker holds now, so whether that file
	// was truncated (and m its copy) cannot be told yet. Deciding "not a
	// copy" then would read the copy from 0 again: it waits on for the
	// worker, up to busyWaitFactor times rotate_wait (a commit slow on a
	// loaded machine took over rotate_wait in the power-cut proof).
	busy := false
	for _, o := range t.files {
		if o.id == m.id {
			continue
		}
		p := o.position()
		if b, ok := p.copyOf(f, size); ok {
			if size >= b.Offset || !grew || waited {
				return min(b.Offset, size), true
			}
			maybe = true // a copy still being written
			continue
		}
		if filepath.Dir(o.path) != filepath.Dir(m.path) {
			continue
		}
		if alike(f, size, o) {
			// o may have been truncated already, its worker not having
			// looked yet: then what o held is p, and m its copy.
			if from, ok := t.copyOfTruncated(f, size, grew, o, p); ok {
				return from, true
			}
			maybe = true
			busy = busy || o.busy
		} else if p.partialCopy(f, size) {
			maybe = true
		}
	}
	if busy && (cw == nil || now.Sub(cw.seenAt) < busyWaitFactor*m.in.conf.RotateWait) {
		return 0, false
	}
	return 0, !maybe || waited
}

// busyWaitFactor bounds the wait of a possible copy for a worker: times
// rotate_wait.
const busyWaitFactor = 10

// copyOfTruncated: o (not in a worker's hands) is truncated now, and f
// holds what o held when last read (p): f is its copy, read from p.Offset.
func (t *Tailer) copyOfTruncated(f *os.File, size int64, grew bool, o *tracked, p position) (int64, bool) {
	if o.busy || p.FPLen == 0 {
		return 0, false
	}
	info, err := o.f.Stat()
	if err != nil || !t.truncated(o, info.Size()) {
		return 0, false
	}
	was := position{Before: []copied{{FPLen: p.FPLen, FP: p.FP, Offset: p.Offset, Short: p.Short}}}
	if _, ok := was.copyOf(f, size); !ok || size < p.Offset && grew {
		return 0, false
	}
	return min(p.Offset, size), true
}

// prefixOf reports whether the first bytes of f (size long, up to fpMax)
// are the first bytes of o: f may be a copy of o, or becoming one.
func prefixOf(f *os.File, size int64, o *tracked) bool {
	k := int(min(size, fpMax))
	a, b := make([]byte, k), make([]byte, k)
	if n, _ := f.ReadAt(a, 0); n != k {
		return false
	}
	if n, _ := o.f.ReadAt(b, 0); n != k {
		return false
	}
	return string(a) == string(b)
}

// alike: f starts as o did when last read (its fingerprint), or as o does
// now; o may have been truncated since it was read, and not looked at yet.
func alike(f *os.File, size int64, o *tracked) bool {
	p := o.position()
	return p.FPLen > 0 && matches(f, p.FPLen, p.FP) || prefixOf(f, size, o)
}

// resolveCopy decides, at each scan, a file waiting to be told a copy from
// a file of its own.
func (t *Tailer) resolveCopy(now time.Time, m found, cw *copyWait) {
	f, err := os.Open(m.path)
	if err != nil {
		return
	}
	from, decided := t.classify(f, m, cw, now)
	f.Close()
	cw.size = m.info.Size()
	if !decided {
		return
	}
	delete(t.copies, m.id)
	t.discover(now, m, false, &from)
}
