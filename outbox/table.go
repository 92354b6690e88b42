package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// recordRow is the schema of a queue table, owned by GORM. Operators can read
// it with the sqlite3 shell: SELECT id, created_at, data FROM <table>.
type recordRow struct {
	ID        int64  `gorm:"column:id;primaryKey;autoIncrement"`
	Data      []byte `gorm:"column:data;type:BLOB;not null"`
	CreatedAt int64  `gorm:"column:created_at;not null;autoCreateTime:false"`
}

// tableState is the in-memory bookkeeping of one table, shared by every
// Queue open on it in this process.
//
// Claims walk the table with a cursor: every row with an id at or below the
// cursor is leased or gone, so a claim reads only what lies past it. Rows
// become visible to claims only up to the watermark, the last id whose commit
// has been counted, so a claim never takes a row that Len has not counted yet.
type tableState struct {
	name  string
	store *store
	refs  int // guarded by store.mu

	claimMu sync.Mutex // serialises claims and releases (both move the cursor)

	mu        sync.Mutex
	count     int64        // rows in the table
	reserved  int64        // rows handed to the committer, not yet committed
	dropping  int64        // oldest rows that booked DropOldest writes will delete
	waiting   int          // writes waiting in reserve for room
	evicted   atomic.Int64 // rows DropOldest deleted to make room
	watermark int64
	cursor    int64
	leases    []*leaseCore // outstanding leases
	// A claim reads rows first and checks them against leases after: an
	// ack that commits and drops its lease in between would let it take
	// deleted rows. While a claim reads, dropped keeps the ids that acks
	// and dead letters removed from leases, and the claim skips them too.
	claiming   bool
	dropped    []*leaseCore
	gen        uint64        // bumped by Clear; leases of an older gen are void
	spaceFreed chan struct{} // closed (and replaced) when rows are removed
	dataAdded  chan struct{} // closed (and replaced) when rows become claimable
}

// leaseCore is the part of a lease the table keeps: which ids, and from which
// generation of the table.
type leaseCore struct {
	ids []int64 // ascending
	gen uint64
}

func (l *leaseCore) has(id int64) bool {
	if len(l.ids) == 0 || id < l.ids[0] || id > l.ids[len(l.ids)-1] {
		return false
	}
	_, found := slices.BinarySearch(l.ids, id)
	return found
}

// ranges compresses the lease's ids into runs of consecutive ids.
func (l *leaseCore) ranges() []idRange {
	var out []idRange
	for _, id := range l.ids {
		if n := len(out); n > 0 && out[n-1].hi == id-1 {
			out[n-1].hi = id
			continue
		}
		out = append(out, idRange{id, id})
	}
	return out
}

func broadcast(ch *chan struct{}) {
	close(*ch)
	*ch = make(chan struct{})
}

// acquireTable returns the state of table, creating the table when needed.
func (s *store) acquireTable(ctx context.Context, table string) (*tableState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts, ok := s.tables[table]; ok {
		ts.refs++
		return ts, nil
	}
	if err := s.gorm.WithContext(ctx).Table(table).AutoMigrate(&recordRow{}); err != nil {
		return nil, dbError("create table "+table+" in", s.path, err)
	}
	ts := &tableState{
		name: table, store: s, refs: 1,
		spaceFreed: make(chan struct{}), dataAdded: make(chan struct{}),
	}
	// Counting once at open keeps Len O(1) afterwards.
	q := fmt.Sprintf(`SELECT COUNT(*), COALESCE(MAX(id), 0) FROM "%s"`, table)
	if err := s.db.QueryRowContext(ctx, q).Scan(&ts.count, &ts.watermark); err != nil {
		return nil, dbError("count table "+table+" in", s.path, err)
	}
	s.tables[table] = ts
	return ts, nil
}

func (s *store) releaseTable(ts *tableState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts.refs--
	if ts.refs == 0 {
		delete(s.tables, ts.name)
	}
}

// committed applies a committed op to the bookkeeping. The committer calls it
// before answering the op.
func (ts *tableState) committed(op *writeOp) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := int64(len(op.rows))
	stored := n
	if op.leftOut { // SendBatches left the part out at the byte limit
		stored = 0
	}
	ts.count += stored - op.deleted
	ts.reserved -= n
	ts.dropping -= op.dropOldest
	if op.dropOldest > 0 {
		ts.evicted.Add(op.deleted)
	}
	if op.clears {
		ts.gen++
		ts.leases = nil
	}
	if op.lastID > ts.watermark {
		ts.watermark = op.lastID
	}
	if stored > 0 {
		broadcast(&ts.dataAdded)
	}
	if op.deleted > 0 || stored < n {
		broadcast(&ts.spaceFreed)
	}
}

// reserve books room for n rows, waiting while the table is full. The booking
// is undone with unreserve if the rows are not committed.
func (ts *tableState) reserve(ctx context.Context, n, max int64, closing <-chan struct{}) error {
	for {
		ts.mu.Lock()
		if max == 0 || ts.count+ts.reserved+n <= max {
			ts.reserved += n
			ts.mu.Unlock()
			return nil
		}
		wait := ts.spaceFreed
		ts.waiting++
		ts.mu.Unlock()
		var stop error
		select {
		case <-wait:
		case <-closing:
			stop = ErrClosed
		case <-ctx.Done():
			stop = ctx.Err()
		}
		ts.mu.Lock()
		ts.waiting--
		ts.mu.Unlock()
		if errors.Is(stop, ErrClosed) {
			return ErrClosed
		}
		if stop != nil {
			return fmt.Errorf("%w (%d records, limit %d): %w", ErrQueueFull, ts.len(), max, ctx.Err())
		}
	}
}

func (ts *tableState) unreserve(n int64) {
	ts.mu.Lock()
	ts.reserved -= n
	broadcast(&ts.spaceFreed)
	ts.mu.Unlock()
}

func (ts *tableState) len() int64 {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.count
}

// storedRow is a row as read back from the table.
type storedRow struct {
	id   int64
	data []byte
}

// claimRows leases up to limit of the oldest unleased rows, and no more than
// maxBytes of data (0: no limit) unless a single row is larger. It never
// waits: no rows means an empty result.
func (ts *tableState) claimRows(ctx context.Context, limit, maxBytes int) ([]storedRow, *leaseCore, error) {
	ts.claimMu.Lock()
	defer ts.claimMu.Unlock()
	ts.mu.Lock()
	cursor, wm, gen := ts.cursor, ts.watermark, ts.gen
	ts.claiming = true
	ts.mu.Unlock()
	defer func() {
		ts.mu.Lock()
		ts.claiming, ts.dropped = false, nil
		ts.mu.Unlock()
	}()

	var out []storedRow
	size, full := 0, false
	for len(out) < limit && cursor < wm && !full {
		want := limit - len(out)
		// The read stops where the rest of maxBytes ends, so that a claim
		// of large records does not read limit of them to return a few.
		var bc *byteCap
		if maxBytes > 0 {
			bc = &byteCap{room: maxBytes - size, first: len(out) == 0}
		}
		rows, stop, err := ts.readAfter(ctx, cursor, wm, want, bc)
		if err != nil {
			return nil, nil, err
		}
		ts.mu.Lock()
		if ts.gen != gen { // Clear deleted what was read: nothing is left to claim
			ts.mu.Unlock()
			return nil, nil, nil
		}
		for _, r := range rows {
			if ts.leasedLocked(r.id) || ts.droppedLocked(r.id) {
				cursor = r.id
				continue
			}
			if maxBytes > 0 && len(out) > 0 && size+len(r.data) > maxBytes {
				full = true
				break
			}
			out = append(out, r)
			size += len(r.data)
			cursor = r.id
		}
		// The read counted leased rows against the cap too: a row it
		// stopped before is judged here, alone, when it comes first.
		if !full && stop != 0 && len(rows) == 0 {
			if ts.leasedLocked(stop) || ts.droppedLocked(stop) {
				cursor = stop
			} else {
				full = true // it does not fit in what is left of maxBytes
			}
		}
		ts.mu.Unlock()
		if !full && stop == 0 && len(rows) < want {
			cursor = wm // nothing unread is left up to the watermark
		}
	}

	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.gen != gen {
		return nil, nil, nil
	}
	ts.cursor = cursor
	if len(out) == 0 {
		return nil, nil, nil
	}
	core := &leaseCore{ids: make([]int64, len(out)), gen: ts.gen}
	for i, r := range out {
		core.ids[i] = r.id
	}
	ts.leases = append(ts.leases, core)
	return out, core, nil
}

// forget removes the given ids from a lease, after they were deleted.
func (ts *tableState) forget(core *leaseCore, gone map[int64]bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.claiming {
		ids := make([]int64, 0, len(gone))
		for _, id := range core.ids {
			if gone[id] {
				ids = append(ids, id)
			}
		}
		ts.dropped = append(ts.dropped, &leaseCore{ids: ids, gen: core.gen})
	}
	core.ids = slices.DeleteFunc(core.ids, func(id int64) bool { return gone[id] })
}

// oldest returns the created_at of the oldest row, if any.
func (ts *tableState) oldest(ctx context.Context) (int64, bool, error) {
	var created int64
	err := ts.store.db.QueryRowContext(ctx, `SELECT created_at FROM "`+ts.name+`" ORDER BY id LIMIT 1`).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, dbError("read "+ts.name+" from", ts.store.path, err)
	}
	return created, true, nil
}

// readAfter reads up to limit rows with ids in (after, upTo], in id order.
// With a byte cap it stops before the row that bc says would pass it, and
// returns that row's id (0: it did not stop for bytes).
//
// It talks to the driver directly instead of through database/sql's Rows and
// Scan: draining a backlog reads every record once, and that layer's locking
// and conversions cost about a third of the read (BenchmarkClaimAck1000).
func (ts *tableState) readAfter(ctx context.Context, after, upTo int64, limit int, bc *byteCap) (rows []storedRow, stop int64, err error) {
	if r := ts.store.reader; r != nil {
		if bc != nil {
			rows, stop, err = r.readBytes(ctx, ts.name, after, upTo, limit, *bc)
		} else {
			rows, err = r.read(ctx, ts.name, after, upTo, limit)
		}
		if err != nil {
			return nil, 0, dbError("read "+ts.name+" from", ts.store.path, err)
		}
		return rows, stop, nil
	}
	conn, err := ts.store.db.Conn(ctx)
	if err != nil {
		return nil, 0, dbError("read "+ts.name+" from", ts.store.path, err)
	}
	defer conn.Close()
	q := `SELECT id, data FROM "` + ts.name + `" WHERE id > ? AND id <= ? ORDER BY id LIMIT ?`
	rows = make([]storedRow, 0, min(limit, 1024)) // limit may be huge: "everything"
	size := 0
	err = conn.Raw(func(dc any) error {
		qc, ok := dc.(driver.QueryerContext)
		if !ok {
			return fmt.Errorf("driver connection %T cannot query", dc)
		}
		rs, err := qc.QueryContext(ctx, q, []driver.NamedValue{
			{Ordinal: 1, Value: after}, {Ordinal: 2, Value: upTo}, {Ordinal: 3, Value: int64(limit)},
		})
		if err != nil {
			return err
		}
		defer rs.Close()
		dest := make([]driver.Value, 2)
		for {
			if err := rs.Next(dest); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			r, err := scanRow(dest)
			if err != nil {
				return err
			}
			// The driver has read this row whole already: it is dropped, so
			// a claim holds at most one row more than its cap, briefly.
			if bc != nil && bc.stops(len(rows), size, len(r.data)) {
				stop = r.id
				return nil
			}
			size += len(r.data)
			rows = append(rows, r)
		}
	})
	if err != nil {
		return nil, 0, dbError("read "+ts.name+" from", ts.store.path, err)
	}
	return rows, stop, nil
}

// scanRow converts one driver row (id, data). The data slice is kept as the
// driver returned it: glebarez/go-sqlite allocates a fresh slice for every
// blob it reads (TestClaimedRecordsDoNotShareMemory guards this), and
// copying each record again cost 5% of a claim.
func scanRow(dest []driver.Value) (storedRow, error) {
	id, ok := dest[0].(int64)
	if !ok {
		return storedRow{}, fmt.Errorf("id column holds %T, want an integer", dest[0])
	}
	var data []byte
	switch v := dest[1].(type) {
	case []byte:
		data = v
	case string: // a row written as TEXT by hand, with the sqlite3 shell
		data = []byte(v)
	case nil:
	default:
		return storedRow{}, fmt.Errorf("record %d: data column holds %T, want a blob", id, v)
	}
	if data == nil {
		data = []byte{}
	}
	return storedRow{id: id, data: data}, nil
}

// droppedLocked tells whether id left a lease, deleted, while the running
// claim read.
func (ts *tableState) droppedLocked(id int64) bool {
	for _, l := range ts.dropped {
		if l.has(id) {
			return true
		}
	}
	return false
}

func (ts *tableState) leasedLocked(id int64) bool {
	for _, l := range ts.leases {
		if l.has(id) {
			return true
		}
	}
	return false
}

// dropLease forgets a lease whose rows were deleted.
func (ts *tableState) dropLease(core *leaseCore) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.claiming && slices.Contains(ts.leases, core) {
		ts.dropped = append(ts.dropped, core) // its ids are not changed after an ack
	}
	ts.removeLeaseLocked(core)
}

func (ts *tableState) removeLeaseLocked(core *leaseCore) {
	if i := slices.Index(ts.leases, core); i >= 0 {
		ts.leases = slices.Delete(ts.leases, i, i+1)
	}
}

// releaseLease gives the lease's rows back: the cursor moves back before
// them, so the next claim hands them out again, first and in order.
func (ts *tableState) releaseLease(core *leaseCore) {
	ts.claimMu.Lock()
	defer ts.claimMu.Unlock()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.removeLeaseLocked(core)
	if core.gen == ts.gen && len(core.ids) > 0 && core.ids[0]-1 < ts.cursor {
		ts.cursor = core.ids[0] - 1
	}
	broadcast(&ts.dataAdded)
}

// leaseState tells whether core can still be acknowledged.
func (ts *tableState) leaseCurrent(core *leaseCore) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return core.gen == ts.gen
}
