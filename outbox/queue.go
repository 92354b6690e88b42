package outbox

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Durability is how hard a commit tries to reach the disk before Send returns.
type Durability int

// The durability levels, as SQLite's synchronous pragma in WAL mode.
const (
	DurabilityFull   Durability = iota // default (zero value): PRAGMA synchronous=FULL; survives power loss
	DurabilityNormal                   // synchronous=NORMAL: survives kill -9, may lose the last commits on power loss
	DurabilityOff                      // synchronous=OFF: no power-loss protection
	DurabilityExtra                    // synchronous=EXTRA: FULL, and syncs the directory after deleting journals
)

var durabilityNames = []string{"full", "normal", "off", "extra"}

func (d Durability) String() string {
	if d < 0 || int(d) >= len(durabilityNames) {
		return fmt.Sprintf("Durability(%d)", int(d))
	}
	return durabilityNames[d]
}

func (d Durability) pragma() string { return strings.ToUpper(d.String()) }

// ParseDurability reads "full", "normal", "off" or "extra".
func ParseDurability(s string) (Durability, error) {
	for i, n := range durabilityNames {
		if strings.EqualFold(s, n) {
			return Durability(i), nil
		}
	}
	return 0, fmt.Errorf("outbox: unknown durability %q (want full, normal, off or extra)", s)
}

// Options configure a queue. The zero value is an unbounded, fully durable
// queue with the default codec.
type Options[T any] struct {
	MaxSize int // most records the queue may hold; 0 = no limit
	// MaxBytes limits the pages in use in the whole database file, shared
	// by every queue in it (so every Open of the file must pass the same
	// value); inserts past it fail at once with ErrQueueFull. 0 = no limit.
	// The WAL (up to a few MiB between checkpoints) is not counted.
	MaxBytes   int64
	Durability Durability // zero value = DurabilityFull
	Codec      Codec[T]   // nil = JSON; when T is []byte, nil stores the bytes unchanged
}

// Queue is a durable FIFO queue of T in one SQLite table. It is safe for
// concurrent use by many goroutines.
type Queue[T any] struct {
	path  string
	table string
	max   int64
	codec Codec[T]
	store *store
	ts    *tableState

	closed    atomic.Bool
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error

	dlqMu sync.Mutex
	dlq   *deadLetters // opened on first use
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

func checkTableName(table string) error {
	if !tableNameRE.MatchString(table) || strings.HasPrefix(strings.ToLower(table), "sqlite_") || strings.EqualFold(table, marksTable) {
		return fmt.Errorf("%w: %q (want 1-64 characters of [A-Za-z0-9_], not starting with a digit or sqlite_, and not %s)", ErrInvalidTableName, table, marksTable)
	}
	return nil
}

// Open opens (creating when needed) the queue stored in table of the SQLite
// file at path. Records left leased by an earlier process are delivered again.
func Open[T any](ctx context.Context, path, table string, opts Options[T]) (*Queue[T], error) {
	if err := checkTableName(table); err != nil {
		return nil, err
	}
	if opts.MaxSize < 0 {
		return nil, fmt.Errorf("outbox: open %s: MaxSize %d is negative", path, opts.MaxSize)
	}
	if opts.Durability < DurabilityFull || opts.Durability > DurabilityExtra {
		return nil, fmt.Errorf("outbox: open %s: unknown durability %d", path, int(opts.Durability))
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("outbox: open %s: MaxBytes %d is negative", path, opts.MaxBytes)
	}
	st, err := acquireStore(ctx, path, fileOptions{durability: opts.Durability, reserve: true, maxBytes: opts.MaxBytes})
	if err != nil {
		return nil, err
	}
	ts, err := st.acquireTable(ctx, table)
	if err != nil {
		releaseStore(st)
		return nil, err
	}
	codec := opts.Codec
	if codec == nil {
		codec = defaultCodec[T]()
	}
	return &Queue[T]{
		path: st.path, table: table, max: int64(opts.MaxSize), codec: codec,
		store: st, ts: ts, closing: make(chan struct{}),
	}, nil
}

// errClosed says which queue was used after Close.
func (q *Queue[T]) errClosed(op string) error {
	return fmt.Errorf("outbox: %s %s table %s: %w", op, q.path, q.table, ErrClosed)
}

// Send appends item and returns once it is committed at the queue's
// durability. On a full queue it waits until space frees or ctx ends.
func (q *Queue[T]) Send(ctx context.Context, item T) error {
	return q.SendBatch(ctx, []T{item})
}

// SendBatch appends items, in order, all or nothing, in one commit. A batch
// larger than MaxSize fails at once with ErrQueueFull.
func (q *Queue[T]) SendBatch(ctx context.Context, items []T) error {
	op, err := q.prepare(ctx, items)
	if err != nil || op == nil {
		return err
	}
	return q.submitInsert(ctx, op)
}

// submitInsert hands a booked insert to the committer, and gives the room
// back if it was not stored.
func (q *Queue[T]) submitInsert(ctx context.Context, op *writeOp) error {
	if err := q.store.commit.submit(ctx, op); err != nil {
		q.ts.unreserve(int64(len(op.rows)))
		if errors.Is(err, ErrClosed) {
			return q.errClosed("send to")
		}
		return err
	}
	return nil
}

// prepare checks and encodes items and books room for them (bookRows). It
// returns the insert op (nil for no items); the caller submits it or undoes
// the booking with unreserve.
func (q *Queue[T]) prepare(ctx context.Context, items []T) (*writeOp, error) {
	if q.closed.Load() {
		return nil, q.errClosed("send to")
	}
	if len(items) == 0 {
		return nil, nil
	}
	if n := int64(len(items)); q.max > 0 && n > q.max {
		return nil, fmt.Errorf("%w: batch of %d records exceeds MaxSize %d of %s table %s", ErrQueueFull, n, q.max, q.path, q.table)
	}
	rows, err := q.encode(items)
	if err != nil {
		return nil, err
	}
	return q.bookRows(ctx, rows)
}

// bookRows books room for encoded rows, waiting while the queue is full,
// and returns their insert op.
func (q *Queue[T]) bookRows(ctx context.Context, rows []row) (*writeOp, error) {
	if err := q.ts.reserve(ctx, int64(len(rows)), q.max, q.closing); err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, q.errClosed("send to")
		}
		return nil, fmt.Errorf("outbox: send to %s table %s: %w", q.path, q.table, err)
	}
	op := newWriteOp(q.ts)
	op.rows = rows
	return op, nil
}

// Batch is a SendBatches argument: items for one queue.
type Batch[T any] struct {
	Queue *Queue[T]
	Items []T
}

// SendBatches appends each batch to its queue in one transaction: every
// record of every batch is stored, or none is. The queues must be open on
// the same file. It is how one record routed to several sinks (one queue
// each) is on disk for all of them after a single fsync. A full queue makes
// it wait, as SendBatch does.
func SendBatches[T any](ctx context.Context, batches []Batch[T]) error {
	targets := make([]Target[T], len(batches))
	for i, b := range batches {
		targets[i] = Target[T]{Queue: b.Queue, Items: b.Items}
	}
	return SendTargets(ctx, targets)
}

// Target is a SendTargets argument: items for one queue, and what happens
// when that queue is full.
type Target[T any] struct {
	Queue *Queue[T]
	Items []T
	// WhenFull: Block (the zero value) makes the whole SendTargets wait for
	// room; DropNewest and DropOldest never wait.
	WhenFull WhenFull
	// Dropped is set by SendTargets: how many of Items were left out for
	// lack of room (DropNewest, or DropOldest with too little to give way).
	// The oldest records that DropOldest deleted are counted by
	// Queue.Evicted.
	Dropped int
}

// SendTargets is SendBatches where each queue says what happens when it is
// full: every record is stored for every target, or none is, except that a
// target whose WhenFull is not Block may be left out (Target.Dropped).
func SendTargets[T any](ctx context.Context, targets []Target[T]) error {
	if len(targets) == 0 {
		return nil
	}
	return sendTargets(ctx, targets, nil)
}

// sendTargets is SendTargets; exec, when not nil, runs in the same
// transaction (SendMarked), even when every target left its records out.
func sendTargets[T any](ctx context.Context, targets []Target[T], exec func(*txn) (int64, error)) error {
	st := targets[0].Queue.store
	var parts []*writeOp
	var from []int // parts[i] belongs to targets[from[i]]
	undo := func() {
		for _, p := range parts {
			p.ts.unbook(p)
		}
	}
	for i := range targets {
		t := &targets[i]
		t.Dropped = 0
		if t.Queue.store != st {
			undo()
			return fmt.Errorf("outbox: send batches: %s and %s are different files", st.path, t.Queue.path)
		}
		var op *writeOp
		var err error
		if t.WhenFull == Block {
			op, err = t.Queue.prepare(ctx, t.Items)
		} else {
			op, t.Dropped, err = t.Queue.prepareOrDrop(t.Items, t.WhenFull)
		}
		if err != nil {
			undo()
			return err
		}
		if op != nil {
			parts = append(parts, op)
			from = append(from, i)
		}
	}
	if len(parts) == 0 && exec == nil {
		return nil
	}
	group := newWriteOp(nil)
	group.group, group.exec = parts, exec
	if err := st.commit.submit(ctx, group); err != nil {
		undo()
		return err
	}
	for i, p := range parts {
		if p.leftOut {
			targets[from[i]].Dropped = len(p.rows)
		}
	}
	return nil
}

func (q *Queue[T]) encode(items []T) ([]row, error) {
	now := time.Now().Unix()
	rows := make([]row, len(items))
	for i, it := range items {
		b, err := q.codec.Marshal(it)
		if err != nil {
			return nil, fmt.Errorf("%w: item %d of %d for %s table %s: %w", ErrEncode, i, len(items), q.path, q.table, err)
		}
		rows[i] = row{data: b, created: now}
	}
	return rows, nil
}

// Recv removes and returns the oldest record. It never waits: ok is false
// when the queue is empty. A record is gone once Recv returns it
// (at-most-once); use Claim to consume at least once.
func (q *Queue[T]) Recv(ctx context.Context) (item T, ok bool, err error) {
	items, err := q.RecvBatch(ctx, 1)
	if err != nil || len(items) == 0 {
		return item, false, err
	}
	return items[0], true, nil
}

// RecvBatch removes and returns up to limit of the oldest records, oldest
// first. It never waits: an empty queue gives an empty slice.
func (q *Queue[T]) RecvBatch(ctx context.Context, limit int) ([]T, error) {
	l, err := q.claimNow(ctx, limit, 0)
	if err != nil || l == nil {
		return nil, err
	}
	if err := l.Ack(ctx); err != nil {
		// Not deleted: the records stay at the head for the next receive.
		_ = l.Release(ctx)
		return nil, err
	}
	return l.items, nil
}

// Claim leases up to limit of the oldest records that are not leased yet,
// waiting until there is at least one or ctx ends. Leased records are not
// handed out again until released; if the process dies before Ack, they are
// delivered again after the next Open.
func (q *Queue[T]) Claim(ctx context.Context, limit int) (*Lease[T], error) {
	return q.ClaimBytes(ctx, limit, 0)
}

// ClaimBytes is Claim with a second bound: the lease holds no more than
// maxBytes of stored data (0: no limit), except that it always holds at
// least one record, however large.
func (q *Queue[T]) ClaimBytes(ctx context.Context, limit, maxBytes int) (*Lease[T], error) {
	for {
		q.ts.mu.Lock()
		added := q.ts.dataAdded // taken before looking, so no wake-up is missed
		q.ts.mu.Unlock()
		l, err := q.claimNow(ctx, limit, maxBytes)
		if err != nil || l != nil {
			return l, err
		}
		select {
		case <-added:
		case <-q.closing:
			return nil, q.errClosed("claim from")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// claimNow leases what is there, without waiting; nil when nothing is.
func (q *Queue[T]) claimNow(ctx context.Context, limit, maxBytes int) (*Lease[T], error) {
	if q.closed.Load() {
		return nil, q.errClosed("receive from")
	}
	if limit <= 0 {
		return nil, fmt.Errorf("outbox: receive from %s table %s: limit %d is not positive", q.path, q.table, limit)
	}
	rows, core, err := q.ts.claimRows(ctx, limit, maxBytes)
	if err != nil {
		if q.closed.Load() {
			return nil, q.errClosed("receive from")
		}
		return nil, err
	}
	if core == nil {
		return nil, nil
	}
	items, bad := q.decode(rows)
	if len(bad) > 0 {
		// Quarantine the poison rows; the good ones go back to the head and
		// the next receive returns them.
		q.ts.releaseLease(core)
		return nil, q.quarantine(ctx, bad)
	}
	return &Lease[T]{q: q, core: core, items: items, rows: rows}, nil
}

// badRow is a stored row that the codec could not decode.
type badRow struct {
	storedRow
	err error
}

func (q *Queue[T]) decode(rows []storedRow) ([]T, []badRow) {
	items := make([]T, 0, len(rows))
	var bad []badRow
	for _, r := range rows {
		v, err := q.codec.Unmarshal(r.data)
		if err != nil {
			bad = append(bad, badRow{r, err})
			continue
		}
		items = append(items, v)
	}
	return items, bad
}

// Len returns how many records the queue holds, leased ones included. It
// reads a counter, not the table.
func (q *Queue[T]) Len(ctx context.Context) (int, error) {
	if q.closed.Load() {
		return 0, q.errClosed("len of")
	}
	return int(q.ts.len()), nil
}

// Oldest returns when the oldest record in the queue was stored; ok is false
// when the queue is empty.
func (q *Queue[T]) Oldest(ctx context.Context) (created time.Time, ok bool, err error) {
	if q.closed.Load() {
		return time.Time{}, false, q.errClosed("read")
	}
	sec, ok, err := q.ts.oldest(ctx)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return time.Unix(sec, 0), true, nil
}

// Path and Table name the queue's file and table.
func (q *Queue[T]) Path() string  { return q.path }
func (q *Queue[T]) Table() string { return q.table }

// IsEmpty reports whether the queue holds no records.
func (q *Queue[T]) IsEmpty(ctx context.Context) (bool, error) {
	n, err := q.Len(ctx)
	return n == 0, err
}

// Clear deletes every record. Leases handed out before are void: their Ack
// returns ErrLeaseNotActive.
func (q *Queue[T]) Clear(ctx context.Context) error {
	if q.closed.Load() {
		return q.errClosed("clear")
	}
	op := newWriteOp(q.ts)
	op.clears = true
	table := q.table
	op.exec = func(t *txn) (int64, error) {
		res, err := t.exec(`DELETE FROM "` + table + `"`)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}
	if err := q.store.commit.submit(ctx, op); err != nil {
		if errors.Is(err, ErrClosed) {
			return q.errClosed("clear")
		}
		return err
	}
	return nil
}

// Close releases the queue. The database file closes when its last queue
// closes, after every write already handed over has been answered. Calling
// Close again returns nil.
func (q *Queue[T]) Close() error {
	q.closeOnce.Do(func() {
		q.closed.Store(true)
		close(q.closing)
		q.store.releaseTable(q.ts)
		var errs []error
		q.dlqMu.Lock()
		if q.dlq != nil {
			errs = append(errs, q.dlq.close())
		}
		q.dlqMu.Unlock()
		errs = append(errs, releaseStore(q.store))
		q.closeErr = errors.Join(errs...)
	})
	return q.closeErr
}
