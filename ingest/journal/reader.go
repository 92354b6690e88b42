package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/outbox"
	"golang.org/x/sys/unix"
)

// Committer is what the reader needs of the outbox: records committed with
// a mark in one transaction, and the marks read back at start.
type Committer interface {
	AppendMarked(ctx context.Context, source string, records [][]byte, marks []outbox.Mark) error
	Marks(ctx context.Context, prefix string) (map[string][]byte, error)
}

// MarkPrefix starts the key of the stored cursor: MarkPrefix alone for the
// system journal, MarkPrefix + "/" + directory for a directory's.
const MarkPrefix = "journal/cursor"

// fromStart is the stored mark of an input that started on an empty journal
// (or read_from: beginning) and has committed no entry yet: the next start
// reads from the first entry, not from read_from.
const fromStart = "-"

// MinVersion is the oldest journalctl taken: the flags used (-o export,
// --cursor, --merge, --directory, --lines) are all older; 252 is tested.
const MinVersion = 232

// Config is the reader's.
type Config struct {
	Input  config.JournalInput // with defaults applied (config.Load does)
	Host   string              // host of entries without _HOSTNAME; default os.Hostname
	Logger *slog.Logger
	// Journalctl is the command run; default "journalctl" on PATH.
	Journalctl string
	// MinBackoff and MaxBackoff bound the wait before journalctl is run
	// again after it failed (defaults 100ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// BatchRecords caps the records of one commit (default 8192).
	BatchRecords int
}

// Stats counts what the reader did; every field is safe to read at any time.
type Stats struct {
	Records  atomic.Int64 // records committed
	Bytes    atomic.Int64 // bytes of those records
	Filtered atomic.Int64 // entries read and left out by units
	Restarts atomic.Int64 // journalctl runs that failed (exited, killed, missing, unreadable output) or whose commit failed
	Vacuumed atomic.Int64 // starts whose stored cursor was no longer in the journal
	Rereads  atomic.Int64 // entries read again: their fields did not add up to their cursor's hash (read while being written)
	Partial  atomic.Int64 // entries stored although their fields never added up (after maxRereads reads: a damaged journal)
}

// Reader reads the journal through journalctl and commits the entries with
// the cursor of the last one read, in one transaction. Run owns its state.
type Reader struct {
	cfg   Config
	c     Committer
	log   *slog.Logger
	key   string
	units map[string]bool

	stats   Stats
	failing ingest.Failing // what /readyz reports, logged once
	// batch caps the records of one commit: BatchRecords, halved each time
	// a queue refuses a batch as larger than its max_records.
	batch  atomic.Int64
	mu     sync.Mutex
	cursor string // the committed cursor, for stats

	// Run's own: the entry read again because it did not add up, how
	// often, and the one to take as it is (it never added up).
	reread  string
	rereads int
	accept  string
}

// maxRereads is how often an entry whose fields do not add up to its
// cursor's hash is read again (over about 2.5 s) before it is stored as
// read: an entry still being written adds up within milliseconds; one that
// never does is damaged on disk.
const maxRereads = 8

// New returns a reader; Run starts it.
func New(cfg Config, c Committer) *Reader {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	if cfg.Journalctl == "" {
		cfg.Journalctl = "journalctl"
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = 8192
	}
	if cfg.Input.ReadFrom == "" {
		cfg.Input.ReadFrom = "end"
	}
	r := &Reader{cfg: cfg, c: c, log: cfg.Logger, key: MarkKey(cfg.Input.Directory)}
	r.batch.Store(int64(cfg.BatchRecords))
	if len(cfg.Input.Units) > 0 {
		r.units = map[string]bool{}
		for _, u := range cfg.Input.Units {
			r.units[UnitName(u)] = true
		}
	}
	return r
}

// MarkKey is the key of the cursor stored for a directory ("": the system
// journal).
func MarkKey(directory string) string {
	if directory == "" {
		return MarkPrefix
	}
	return MarkPrefix + "/" + directory
}

// UnitName completes a unit name as journalctl -u does: without a type
// suffix it is a service.
func UnitName(u string) string {
	if strings.Contains(u, ".") {
		return u
	}
	return u + ".service"
}

// Stats returns the reader's counters.
func (r *Reader) Stats() *Stats { return &r.stats }

// Healthy is nil while journalctl runs and its entries are committed, and
// says why not otherwise (journalctl missing, too old, failing, or the
// outbox refusing the commits).
func (r *Reader) Healthy() error { return r.failing.Err() }

// Cursor is the cursor committed last ("" before the first).
func (r *Reader) Cursor() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursor
}

// Run reads until ctx ends. It reads the stored cursor, catches up with
// journalctl without --follow (to the end of the journal: every boot), then
// follows from the last cursor with --follow --merge (a follower without
// --merge shows only the latest boot). When journalctl fails it is run
// again from the cursor committed last, after a capped backoff; entries
// read and not committed are read again. Shutdown order: ctx ends;
// journalctl is killed; a commit in progress ends (what it held is read
// again at the next start); Run returns.
func (r *Reader) Run(ctx context.Context) error {
	bo := r.cfg.MinBackoff
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(bo):
		}
		bo = min(2*bo, r.cfg.MaxBackoff)
		return true
	}
	// Until journalctl answers and the stored cursor is read: each failure
	// is logged (once) and in Healthy.
	var cursor string
	for {
		err := r.checkVersion(ctx)
		if err == nil {
			cursor, err = r.start(ctx)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		r.fail(err)
		if !wait() {
			return nil
		}
	}
	r.setCursor(cursor)
	follow := false
	for {
		began := time.Now()
		next, n, err := r.session(ctx, cursor, follow)
		if ctx.Err() != nil {
			return nil
		}
		cursor = next
		if n > 0 || time.Since(began) > 10*time.Second {
			bo = r.cfg.MinBackoff
		}
		if err == nil && !follow {
			r.recovered()
			follow = true // caught up: follow from here
			continue
		}
		var inc *incompleteError
		if errors.As(err, &inc) {
			// Not a failure: catch up again from the committed cursor
			// (the entries before this one are committed) after a moment.
			follow = false
			if !r.sleep(ctx, r.rereadAfter(inc.cursor)) {
				return nil
			}
			continue
		}
		if err == nil {
			err = errors.New("journalctl --follow ended")
		}
		r.stats.Restarts.Add(1)
		r.fail(err)
		follow = false // catch up again: journalctl may have missed a boot
		if !wait() {
			return nil
		}
	}
}

// rereadAfter counts another read of the entry at cursor and says how long
// to wait before it: 10 ms, doubling, at most 1 s. At maxRereads the entry
// is taken as it is read next.
func (r *Reader) rereadAfter(cursor string) time.Duration {
	r.stats.Rereads.Add(1)
	if cursor != r.reread {
		r.reread, r.rereads = cursor, 0
		r.log.Info("journal: an entry came out of journalctl without all its fields (read while being written): reading it again", "cursor", cursor)
	}
	r.rereads++
	if r.rereads >= maxRereads {
		r.accept = cursor
	}
	return min(10*time.Millisecond<<(r.rereads-1), time.Second)
}

func (r *Reader) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// incompleteError ends a session at an entry whose fields do not add up to
// its cursor's hash: journalctl read it while it was being written.
type incompleteError struct{ cursor string }

func (e *incompleteError) Error() string {
	return "journal: entry " + e.cursor + " read while it was being written (its fields do not add up to its cursor's hash); reading it again"
}

var versionRE = regexp.MustCompile(`^systemd (\d+)`)

// checkVersion runs journalctl --version: missing or older than MinVersion
// is an error that says so.
func (r *Reader) checkVersion(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, r.cfg.Journalctl, "--version").Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("journal: %s not found: install systemd's journalctl, or remove ingest.journal (%w)", r.cfg.Journalctl, err)
		}
		return fmt.Errorf("journal: run %s --version: %w", r.cfg.Journalctl, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("journal: %s --version printed no systemd version: %q", r.cfg.Journalctl, firstLine(out))
	}
	v, _ := strconv.Atoi(string(m[1]))
	if v < MinVersion {
		return fmt.Errorf("journal: %s is systemd %d; outboxd needs %d or newer", r.cfg.Journalctl, v, MinVersion)
	}
	return nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// start reads the stored cursor. Without one (the very first start),
// read_from says where to begin: end stores the cursor of the journal's
// last entry now, beginning (or an empty journal) stores fromStart; either
// way the next start finds a cursor and read_from is not looked at again.
func (r *Reader) start(ctx context.Context) (string, error) {
	marks, err := r.c.Marks(ctx, r.key)
	if err != nil {
		return "", fmt.Errorf("journal: read the stored cursor: %w", err)
	}
	if v, ok := marks[r.key]; ok {
		return string(v), nil
	}
	cursor := fromStart
	if r.cfg.Input.ReadFrom == "end" {
		last, err := r.lastCursor(ctx)
		if err != nil {
			return "", err
		}
		if last != "" {
			cursor = last
		}
	}
	if err := r.c.AppendMarked(ctx, Source, nil, []outbox.Mark{{Key: r.key, Value: []byte(cursor)}}); err != nil {
		return "", fmt.Errorf("journal: store where the first start begins: %w", err)
	}
	r.log.Info("journal: first start", "read_from", r.cfg.Input.ReadFrom, "cursor", cursor)
	return cursor, nil
}

// lastCursor is the cursor of the journal's last entry, "" when it is empty.
func (r *Reader) lastCursor(ctx context.Context) (string, error) {
	args := append(r.baseArgs(), "--lines=1")
	cmd := exec.CommandContext(ctx, r.cfg.Journalctl, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("journal: find the journal's end (%s %s): %w: %s", r.cfg.Journalctl, strings.Join(args, " "), err, firstLine(stderr.Bytes()))
	}
	x := newExportReader(bytes.NewReader(out), 64<<10)
	last := ""
	for {
		e, err := x.Next()
		if err == io.EOF {
			return last, nil
		}
		if err != nil {
			return "", fmt.Errorf("journal: find the journal's end: %w", err)
		}
		if c, ok := e.Get("__CURSOR"); ok {
			last = string(c)
		}
	}
}

func (r *Reader) baseArgs() []string {
	a := []string{"--output=export", "--no-pager", "--merge"}
	if d := r.cfg.Input.Directory; d != "" {
		a = append(a, "--directory="+d)
	}
	return a
}

// args are journalctl's for one run: every entry from cursor on (the
// cursor's own entry included: --after-cursor drops the first entry of a
// new boot, and one more after a vacuumed cursor), followed or not. No
// unit matches: units are filtered here, so that the cursor advances over
// entries of other units too.
func (r *Reader) args(cursor string, follow bool) []string {
	a := r.baseArgs()
	if cursor != fromStart {
		a = append(a, "--cursor="+cursor)
	}
	if follow {
		a = append(a, "--follow", "--lines=all")
	}
	return a
}

// batch is entries read and encoded: each record with its entry's cursor,
// and the cursor of the last entry read (a filtered-out entry's too).
type batch struct {
	recs    [][]byte
	cursors []string
	bytes   int64
	cursor  string
}

func (b *batch) add(rec []byte, cursor string) {
	b.recs = append(b.recs, rec)
	b.cursors = append(b.cursors, cursor)
	b.bytes += int64(len(rec))
}

// maxPendingBytes bounds the records read and not yet committed (with the
// batch size): at that point parse waits, and so does journalctl.
const maxPendingBytes = 16 << 20

// handoff is what parse has read and the committer has not taken yet.
// Batching is by what is waiting, never by a timer: an idle journal's entry
// is committed at once, and what comes during a commit's fsync is taken
// by the next.
type handoff struct {
	mu     sync.Mutex
	b      batch
	closed bool          // parse is done: take what is left and stop
	ready  chan struct{} // cap 1: something waits
	room   chan struct{} // cap 1: the committer took a batch
}

func newHandoff() *handoff {
	return &handoff{ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// put adds b, and waits while what waits is over the limits (the committer
// is behind: a full outbox stops the reading here).
func (h *handoff) put(ctx context.Context, b batch, limit func() int) error {
	h.mu.Lock()
	h.b.recs = append(h.b.recs, b.recs...)
	h.b.cursors = append(h.b.cursors, b.cursors...)
	h.b.bytes += b.bytes
	h.b.cursor = b.cursor
	h.mu.Unlock()
	signal(h.ready)
	for {
		h.mu.Lock()
		full := len(h.b.recs) >= limit() || h.b.bytes >= maxPendingBytes
		h.mu.Unlock()
		if !full {
			return nil
		}
		select {
		case <-h.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (h *handoff) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	signal(h.ready)
}

// take returns at most max records of what waits, with the cursor to
// commit them with, and whether parse is done and nothing is left.
func (h *handoff) take(max int) (batch, bool) {
	h.mu.Lock()
	b := h.b
	if len(b.recs) <= max {
		h.b = batch{}
	} else {
		b = batch{recs: b.recs[:max:max], cursors: b.cursors[:max:max], cursor: b.cursors[max-1]}
		for _, rec := range b.recs {
			b.bytes += int64(len(rec))
		}
		h.b.recs, h.b.cursors, h.b.bytes = h.b.recs[max:], h.b.cursors[max:], h.b.bytes-b.bytes
		signal(h.ready) // the rest: the next commit
	}
	done := h.closed && h.b.cursor == ""
	h.mu.Unlock()
	signal(h.room)
	return b, done
}

// session runs journalctl once from cursor and commits what it prints. It
// returns the cursor committed last, the records committed, and why it
// ended (nil: the catch-up reached the journal's end).
func (r *Reader) session(ctx context.Context, cursor string, follow bool) (string, int64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	args := r.args(cursor, follow)
	cmd := exec.CommandContext(sctx, r.cfg.Journalctl, args...)
	// journalctl dies with outboxd, even on SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	stdout, w, err := os.Pipe()
	if err != nil {
		return cursor, 0, fmt.Errorf("journal: %w", err)
	}
	defer stdout.Close()
	// A 1 MiB pipe (64 KiB by default) lets journalctl write on while a
	// commit holds the reader up; best effort (a lower pipe-max-size).
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	cmd.Stdout = w
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return cursor, 0, fmt.Errorf("journal: %w", err)
	}
	err = cmd.Start()
	w.Close() // journalctl has its copy: its exit is our EOF
	if err != nil {
		return cursor, 0, fmt.Errorf("journal: start %s: %w", r.cfg.Journalctl, err)
	}
	var wg sync.WaitGroup
	var lastErrLine atomic.Pointer[string]
	wg.Go(func() { r.drain(stderr, &lastErrLine) })
	h := newHandoff()
	type done struct {
		cursor string
		n      int64
		err    error
	}
	committed := make(chan done, 1)
	wg.Go(func() {
		c, n, err := r.commit(sctx, h, cursor)
		if err != nil {
			cancel() // stop journalctl: what it printed since is read again
		}
		committed <- done{c, n, err}
	})
	perr := r.parse(sctx, stdout, cursor, h)
	h.close()
	var inc *incompleteError
	if perr != nil && !errors.As(perr, &inc) {
		cancel() // an incomplete entry: the entries before it are committed first
	}
	res := <-committed
	if perr != nil {
		cancel()
	}
	wg.Wait()
	werr := cmd.Wait()
	r.setCursor(res.cursor)
	switch {
	case ctx.Err() != nil:
		return res.cursor, res.n, ctx.Err()
	case res.err != nil:
		return res.cursor, res.n, fmt.Errorf("journal: commit entries: %w", res.err)
	case inc != nil:
		return res.cursor, res.n, perr
	case perr != nil:
		return res.cursor, res.n, fmt.Errorf("journal: read %s's output: %w", r.cfg.Journalctl, perr)
	case werr != nil:
		msg := ""
		if l := lastErrLine.Load(); l != nil {
			msg = ": " + *l
		}
		return res.cursor, res.n, fmt.Errorf("journal: %s %s: %w%s", r.cfg.Journalctl, strings.Join(args, " "), werr, msg)
	}
	return res.cursor, res.n, nil
}

// drain logs what journalctl writes on stderr, a line at a time.
func (r *Reader) drain(stderr io.Reader, last *atomic.Pointer[string]) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		l := strings.ToValidUTF8(sc.Text(), "\uFFFD")
		if l == "" {
			continue
		}
		last.Store(&l)
		r.log.Warn("journal: journalctl says", "line", l)
	}
	io.Copy(io.Discard, stderr) // a line over 1 MiB: keep it from blocking journalctl
}

// parse reads journalctl's output and hands it to the committer: what the
// pipe holds at once goes as one, so that the lock is taken per pipe read,
// not per entry. A full outbox stops the committer, then parse (put waits),
// then journalctl (the pipe is full): nothing is dropped.
func (r *Reader) parse(ctx context.Context, stdout io.Reader, cursor string, h *handoff) error {
	x := newExportReader(stdout, 1<<20)
	enc := newEncoder(r.cfg.Host)
	enc.fields = ingest.NewAddFields(r.cfg.Input.AddFields)
	first := cursor != fromStart
	var scratch []byte // complete's
	var b batch
	flush := func() error {
		if b.cursor == "" {
			return nil
		}
		err := h.put(ctx, b, r.batchSize)
		b = batch{}
		return err
	}
	for {
		e, err := x.Next()
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return err
		}
		c, ok := e.Get("__CURSOR")
		if !ok || len(c) == 0 {
			return fmt.Errorf("%w: an entry without __CURSOR", ErrFormat)
		}
		if first {
			first = false
			if string(c) == cursor {
				continue // --cursor is inclusive: this one is committed
			}
			r.stats.Vacuumed.Add(1)
			r.log.Warn("journal: cursor not found (vacuumed?): reading on from the entry after where it was", "cursor", cursor, "first", string(c))
		}
		if !complete(e, c, &scratch) {
			if string(c) != r.accept {
				if err := flush(); err != nil {
					return err
				}
				return &incompleteError{cursor: string(c)}
			}
			r.stats.Partial.Add(1)
			r.log.Warn("journal: an entry's fields never added up to its cursor's hash: stored as read (a damaged journal file?)",
				"cursor", string(c), "reads", maxRereads)
		}
		if b.cursor == "" {
			enc.reset(time.Now())
		}
		b.cursor = string(c)
		if r.units == nil || r.units[string(unitOf(e))] {
			b.add(enc.encode(e), b.cursor)
		} else {
			r.stats.Filtered.Add(1)
		}
		if x.buffered() == 0 || len(b.recs) >= 1024 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

func (r *Reader) batchSize() int { return int(r.batch.Load()) }

func unitOf(e *Entry) []byte {
	u, _ := e.Get("_SYSTEMD_UNIT")
	return u
}

// markEvery is how often a cursor that moved only over filtered-out
// entries is committed: each commit is an fsync.
const markEvery = time.Second

// commit takes what parse has read, all of it at once, and commits the
// records with the last cursor in one transaction. It returns the cursor
// committed last and the records committed; on a failed commit it stops
// (the session ends; the next reads again from the cursor returned).
func (r *Reader) commit(ctx context.Context, h *handoff, cursor string) (string, int64, error) {
	var total int64
	pending := "" // a cursor past filtered-out entries only, not committed yet
	var lastCommit time.Time
	var timer <-chan time.Time
	store := func(recs [][]byte, bytes int64, c string) error {
		if err := r.c.AppendMarked(ctx, Source, recs, []outbox.Mark{{Key: r.key, Value: []byte(c)}}); err != nil {
			if errors.Is(err, outbox.ErrQueueFull) && len(recs) > 1 && ctx.Err() == nil {
				r.batch.Store(int64(max(1, len(recs)/2))) // a queue smaller than the batch (max_records)
			}
			return err
		}
		cursor, pending, timer, lastCommit = c, "", nil, time.Now()
		total += int64(len(recs))
		r.stats.Records.Add(int64(len(recs)))
		r.stats.Bytes.Add(bytes)
		r.setCursor(c)
		if len(recs) > 0 {
			r.recovered()
		}
		return nil
	}
	for {
		select {
		case <-h.ready:
		case <-timer:
			if err := store(nil, 0, pending); err != nil {
				return cursor, total, err
			}
			continue
		case <-ctx.Done():
			return cursor, total, ctx.Err()
		}
		b, closed := h.take(r.batchSize())
		if b.cursor == "" {
			b.cursor = pending
		}
		switch {
		case b.cursor == "":
		case len(b.recs) > 0 || closed || time.Since(lastCommit) >= markEvery:
			if err := store(b.recs, b.bytes, b.cursor); err != nil {
				return cursor, total, err
			}
		default:
			pending = b.cursor
			if timer == nil {
				timer = time.After(markEvery - time.Since(lastCommit))
			}
		}
		if closed {
			return cursor, total, nil
		}
	}
}

func (r *Reader) setCursor(c string) {
	r.mu.Lock()
	r.cursor = c
	r.mu.Unlock()
}

// fail logs err once, until it changes or the reader recovers, and reports
// it in Healthy.
func (r *Reader) fail(err error) {
	r.failing.Fail(r.log, "journal: reading stopped; journalctl is run again after a backoff", err)
}

// recovered clears the error and logs once that reading works again (Run
// and the committer both call it).
func (r *Reader) recovered() { r.failing.Recovered(r.log, "journal: reading again") }
