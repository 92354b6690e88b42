package files

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/ingest"

	"github.com/outboxd/outboxd/outbox"
)

// Source is the records' source name, which routes name.
const Source = "file"

// Committer is what the tailer needs of the outbox: records committed with
// a mark in one transaction, and the marks read back at start.
type Committer interface {
	AppendMarked(ctx context.Context, source string, records [][]byte, marks []outbox.Mark) error
	Marks(ctx context.Context, prefix string) (map[string][]byte, error)
}

// Config is the tailer's: the ingest.files entries, and how it runs.
type Config struct {
	Inputs []config.FileInput // with defaults applied (config.Load does)
	Host   string             // the records' host; default os.Hostname
	Logger *slog.Logger
	// Workers read and commit files at once (default 4); ChunkBytes is how
	// much one read takes of a file (default 1 MiB).
	Workers    int
	ChunkBytes int
	// BatchRecords is the most records one commit takes from a file
	// (default 2,048); a queue that refuses so many at once (MaxSize)
	// makes it halve for that file.
	BatchRecords int
}

// Tailer tails the files of every entry. Run owns all its state.
type Tailer struct {
	cfg    Config
	inputs []*input
	c      Committer
	log    *slog.Logger
	chunk  int

	files   map[fileID]*tracked
	byPath  map[string]*tracked
	known   map[fileID]position // marks read at start that no file matched yet
	copies  map[fileID]*copyWait
	ready   []*tracked
	scanned bool              // the run's first scan is done
	failing map[string]string // what last failed per path or step, logged once
	watch   *watcher

	jobs    chan *tracked
	results chan result

	stats Stats
	mu    sync.Mutex
	view  []FileState // what Files returns, refreshed by Run
}

// Stats counts what the tailer did; every field is safe to read at any time.
type Stats struct {
	Records    atomic.Int64 // records committed
	Bytes      atomic.Int64 // bytes of the files those records came from
	Truncated  atomic.Int64 // lines cut at max_line_bytes
	Rotations  atomic.Int64 // truncations seen, and files read to the end after they left the globs
	Errors     atomic.Int64 // files that could not be opened or read, and failed commits
	ParseError atomic.Int64 // json or cri lines that were not, kept as text
}

// FileState is one tracked file, for stats.
type FileState struct {
	Path   string
	Offset int64 // committed
	Size   int64
}

type input struct {
	conf   config.FileInput
	framer framer
	fields ingest.AddFields // add_fields, encoded once
}

// tracked is one open file. Run owns it, except while busy: then the one
// worker it was handed to does.
type tracked struct {
	id     fileID
	in     *input
	f      *os.File
	mu     sync.Mutex // guards pos: Run reads it to tell copies while a worker holds the file
	pos    position   // what is committed
	path   string
	inGlob bool // the last scan found it under a glob
	size   int64
	grewAt time.Time
	heldAt time.Time // when records held back (multiline, cri) were first seen; zero: none
	long   longLine
	busy   bool
	queued bool
	closed bool
	batch  int // records per commit, halved when a queue refuses a batch as too large
}

// copyWait is a new file whose first bytes match a tracked file that has
// not been truncated yet: the copy step of copytruncate, or a file that
// happens to start alike. It waits until the original is truncated (a
// copy: read on from where the original was left) or rotate_wait passes
// (a file of its own: read from 0).
type copyWait struct {
	path   string
	in     *input
	seenAt time.Time
	size   int64 // at the last look: a copy that stopped growing is complete
}

type result struct {
	tr     *tracked
	more   bool // data is left to read now
	forget bool // read to the end after it left the globs: closed and forgotten
	err    error
}

// New checks the entries and returns a tailer; Run starts it.
func New(cfg Config, c Committer) (*Tailer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.ChunkBytes <= 0 {
		cfg.ChunkBytes = 1 << 20
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = 2048
	}
	t := &Tailer{cfg: cfg, c: c, log: cfg.Logger, chunk: cfg.ChunkBytes,
		files: map[fileID]*tracked{}, byPath: map[string]*tracked{}, known: map[fileID]position{},
		copies: map[fileID]*copyWait{}, failing: map[string]string{},
		jobs: make(chan *tracked), results: make(chan result)}
	for i, fc := range cfg.Inputs {
		in := &input{conf: fc, framer: framer{maxLine: int(fc.MaxLineBytes), cri: fc.Format == "cri"}, fields: ingest.NewAddFields(fc.AddFields)}
		if in.framer.maxLine <= 0 {
			in.framer.maxLine = config.DefaultMaxLineBytes
		}
		if fc.Multiline != nil {
			re, err := regexp.Compile(fc.Multiline.Start)
			if err != nil {
				return nil, fmt.Errorf("ingest.files[%d].multiline.start: %w", i, err)
			}
			in.framer.start = re
		}
		t.inputs = append(t.inputs, in)
	}
	return t, nil
}

// Stats returns the tailer's counters.
func (t *Tailer) Stats() *Stats { return &t.stats }

// Files lists the tracked files with their committed offsets and sizes.
func (t *Tailer) Files() []FileState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]FileState(nil), t.view...)
}

// tick is how often Run rescans the globs and looks at every file: the
// shortest rescan, multiline timeout and rotate_wait of the entries.
func (t *Tailer) tick() time.Duration {
	d := time.Duration(0)
	take := func(v time.Duration) {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	for _, in := range t.inputs {
		take(in.conf.Rescan)
		if m := in.conf.Multiline; m != nil {
			take(m.Timeout / 2)
		}
		take(in.conf.RotateWait / 2)
	}
	return max(d, 10*time.Millisecond)
}

// Run tails until ctx ends, then waits for the reads in progress (a commit
// cut short by ctx stores nothing: it is read again at the next start) and
// closes every file. Shutdown order: no new work; the workers end; files
// close.
func (t *Tailer) Run(ctx context.Context) error {
	marks, err := t.loadMarks(ctx)
	if err != nil {
		return err
	}
	first := marks[startedKey] == nil
	t.watch = newWatcher(t.log)
	defer t.watch.close()
	var workers sync.WaitGroup
	for range t.cfg.Workers {
		workers.Go(func() {
			for tr := range t.jobs {
				t.results <- t.work(ctx, tr)
			}
		})
	}
	busy := 0
	defer func() {
		close(t.jobs)
		for ; busy > 0; busy-- {
			t.apply(<-t.results)
		}
		workers.Wait()
		for _, tr := range t.files {
			tr.f.Close()
		}
	}()
	seen := t.scan(time.Now(), first)
	if first {
		if err := t.markStarted(ctx); err != nil {
			return err
		}
	}
	t.forgetMissing(ctx, seen)
	tick := time.NewTicker(t.tick())
	defer tick.Stop()
	for {
		var jobs chan *tracked
		var next *tracked
		if len(t.ready) > 0 {
			jobs, next = t.jobs, t.ready[0]
		}
		select {
		case <-ctx.Done():
			return nil
		case jobs <- next:
			t.ready = t.ready[1:]
			next.queued, next.busy = false, true
			busy++
		case r := <-t.results:
			busy--
			t.apply(r)
		case <-tick.C:
			t.scan(time.Now(), false)
			t.refreshView()
		case ev := <-t.watch.events():
			if tr := t.byPath[ev.path]; tr != nil && !ev.layout {
				t.enqueue(tr)
			} else {
				t.scan(time.Now(), false)
			}
		}
	}
}

// loadMarks reads the stored marks, retrying while the outbox cannot
// answer (it is opened before ingest starts, so that is rare).
func (t *Tailer) loadMarks(ctx context.Context) (map[string][]byte, error) {
	marks, err := t.c.Marks(ctx, markPrefix)
	if err != nil {
		return nil, fmt.Errorf("files: read the stored file positions: %w", err)
	}
	started, err := t.c.Marks(ctx, startedKey)
	if err != nil {
		return nil, fmt.Errorf("files: read the stored file positions: %w", err)
	}
	for k, v := range started {
		marks[k] = v
	}
	for k, v := range marks {
		if !strings.HasPrefix(k, markPrefix) {
			continue
		}
		p, err := decodePosition(v)
		if err != nil {
			t.log.Warn("files: a stored file position does not decode; that file is read as new", "key", k, "err", err)
			continue
		}
		t.known[p.id()] = p
	}
	return marks, nil
}

// markStarted stores, in one commit, that the files input has run and the
// positions of the files read_from: end started at: a crash before it
// leaves the next start a first start again.
func (t *Tailer) markStarted(ctx context.Context) error {
	marks := []outbox.Mark{{Key: startedKey, Value: []byte(time.Now().UTC().Format(time.RFC3339))}}
	for _, tr := range t.files {
		if tr.pos.Offset > 0 {
			marks = append(marks, outbox.Mark{Key: tr.id.key(), Value: tr.pos.encode()})
		}
	}
	for {
		err := t.c.AppendMarked(ctx, Source, nil, marks)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		t.fail("start", "files: store the first start's positions (retrying each second)", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// forgetMissing deletes the stored marks of files that the first scan did
// not find: deleted, or renamed out of the globs, while outboxd was not
// running (what was not read of them then is out of reach; README says
// how globs that match rotated names avoid that). A file found but not
// opened (permissions) keeps its mark. Best effort: what fails now is
// tried at the next start.
func (t *Tailer) forgetMissing(ctx context.Context, seen map[fileID]bool) {
	var marks []outbox.Mark
	for id, p := range t.known {
		if !seen[id] {
			marks = append(marks, outbox.Mark{Key: id.key()})
			delete(t.known, id)
			t.log.Info("files: a file read before is gone; its position is forgotten", "path", p.Path, "offset", p.Offset)
		}
	}
	if len(marks) > 0 {
		if err := t.c.AppendMarked(ctx, Source, nil, marks); err != nil {
			t.log.Warn("files: forget the positions of files that are gone (tried again at the next start)", "err", err)
		}
	}
}

func (t *Tailer) enqueue(tr *tracked) {
	if tr.busy || tr.queued || tr.closed {
		return
	}
	tr.queued = true
	t.ready = append(t.ready, tr)
}

// apply takes a worker's result back into Run's hands.
func (t *Tailer) apply(r result) {
	tr := r.tr
	tr.busy = false
	switch {
	case r.err != nil:
		if !errors.Is(r.err, context.Canceled) {
			t.stats.Errors.Add(1)
			t.fail(tr.path, "files: read and store "+tr.path+" (retried at the next scan)", r.err)
		}
	case r.forget:
		t.recovered(tr.path)
		t.close(tr)
	default:
		t.recovered(tr.path)
		if r.more {
			t.enqueue(tr)
		}
	}
}

// position returns tr's committed position; safe while a worker holds tr.
func (tr *tracked) position() position {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.pos
}

// setPos sets tr's position (the worker holding it, or Run).
func (tr *tracked) setPos(p position) {
	tr.mu.Lock()
	tr.pos = p
	tr.mu.Unlock()
}

func (t *Tailer) close(tr *tracked) {
	tr.closed = true
	tr.f.Close()
	delete(t.files, tr.id)
	if t.byPath[tr.path] == tr {
		delete(t.byPath, tr.path)
	}
}

// fail logs err for key once, until it changes or key recovers.
func (t *Tailer) fail(key, msg string, err error) {
	if t.failing[key] == err.Error() {
		return
	}
	t.failing[key] = err.Error()
	t.log.Error(msg, "err", err)
}

func (t *Tailer) recovered(key string) {
	if _, ok := t.failing[key]; ok {
		delete(t.failing, key)
		t.log.Info("files: " + key + " is read again")
	}
}

func (t *Tailer) refreshView() {
	view := make([]FileState, 0, len(t.files))
	for _, tr := range t.files {
		if !tr.busy {
			view = append(view, FileState{Path: tr.path, Offset: tr.pos.Offset, Size: tr.size})
		}
	}
	t.mu.Lock()
	t.view = view
	t.mu.Unlock()
}

// currentPath is where an open file is now, from /proc: a file renamed out
// of the globs is named by its new path in its records.
func currentPath(f *os.File, last string) string {
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return last
	}
	return strings.TrimSuffix(p, " (deleted)")
}
