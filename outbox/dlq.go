package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// dlqRow is the schema of a dead-letter table "<table>_dlq", kept in the file
// "<path without .db>.dlq.db", as in the Rust crate disk_backed_queue.
type dlqRow struct {
	ID           int64  `gorm:"column:id;primaryKey;autoIncrement"`
	OriginalID   int64  `gorm:"column:original_id;not null;index"`
	Data         []byte `gorm:"column:data;type:BLOB;not null"`
	ErrorMessage string `gorm:"column:error_message;not null"`
	CreatedAt    int64  `gorm:"column:created_at;not null;autoCreateTime:false"`
	MovedAt      int64  `gorm:"column:moved_at;not null;autoCreateTime:false"`
}

// DLQPath returns the dead-letter file that belongs to the queue file path.
func DLQPath(path string) string {
	return strings.TrimSuffix(path, ".db") + ".dlq.db"
}

// DLQTable returns the dead-letter table that belongs to table.
func DLQTable(table string) string { return table + "_dlq" }

// deadLetters is a queue's handle on its dead-letter table.
type deadLetters struct {
	store *store
	table string
}

func (d *deadLetters) close() error { return releaseStore(d.store) }

// deadLettersFor opens the dead-letter table on first use.
func (q *Queue[T]) deadLettersFor(ctx context.Context) (*deadLetters, error) {
	q.dlqMu.Lock()
	defer q.dlqMu.Unlock()
	if q.dlq != nil {
		return q.dlq, nil
	}
	st, err := acquireStore(ctx, DLQPath(q.path), fileOptions{durability: q.store.durability})
	if err != nil {
		return nil, err
	}
	table := DLQTable(q.table)
	if err := st.gorm.WithContext(ctx).Table(table).AutoMigrate(&dlqRow{}); err != nil {
		releaseStore(st)
		return nil, dbError("create table "+table+" in", st.path, err)
	}
	q.dlq = &deadLetters{store: st, table: table}
	return q.dlq, nil
}

// deadLetter is a row on its way to the dead-letter queue, with the reason.
type deadLetter struct {
	storedRow
	reason string
}

// moveToDLQ copies the rows into the dead-letter table (one commit), then
// deletes them from the queue (another). A crash in between leaves a copy in
// both; the copy is not made twice, since the insert skips an original_id
// that is already there.
func (q *Queue[T]) moveToDLQ(ctx context.Context, letters []deadLetter) error {
	d, err := q.deadLettersFor(ctx)
	if err != nil {
		return err
	}
	created := q.createdAt(ctx, letters)
	insert := newWriteOp(nil)
	insert.exec = func(t *txn) (int64, error) {
		now := time.Now().Unix()
		for _, l := range letters {
			_, err := t.exec(`INSERT INTO "`+d.table+`" (original_id, data, error_message, created_at, moved_at)
				SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM "`+d.table+`" WHERE original_id = ?)`,
				l.id, nonNil(l.data), l.reason, created[l.id], now, l.id)
			if err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	if err := d.store.commit.submit(ctx, insert); err != nil {
		return fmt.Errorf("outbox: move %d records of %s table %s to the dead-letter queue: %w", len(letters), q.path, q.table, err)
	}
	del := newWriteOp(q.ts)
	for _, l := range letters {
		del.del = append(del.del, idRange{l.id, l.id})
	}
	if err := q.store.commit.submit(ctx, del); err != nil {
		return fmt.Errorf("outbox: delete %d dead-lettered records from %s table %s: %w", len(letters), q.path, q.table, err)
	}
	return nil
}

// createdAt reads when each row was stored. Claims do not read it (it would
// cost every claim a column for the rare dead letter); a row whose time
// cannot be read is stamped now rather than held back.
func (q *Queue[T]) createdAt(ctx context.Context, letters []deadLetter) map[int64]int64 {
	out := make(map[int64]int64, len(letters))
	now := time.Now().Unix()
	for _, l := range letters {
		var c int64
		if err := q.store.db.QueryRowContext(ctx, `SELECT created_at FROM "`+q.table+`" WHERE id = ?`, l.id).Scan(&c); err != nil {
			c = now
		}
		out[l.id] = c
	}
	return out
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// quarantine moves rows that failed to decode to the dead-letter queue and
// returns the ErrDecode error that the receive call reports.
func (q *Queue[T]) quarantine(ctx context.Context, bad []badRow) error {
	letters := make([]deadLetter, len(bad))
	var errs []error
	for i, b := range bad {
		letters[i] = deadLetter{storedRow: b.storedRow, reason: b.err.Error()}
		errs = append(errs, fmt.Errorf("record %d: %w", b.id, b.err))
	}
	cause := errors.Join(errs...)
	if err := q.moveToDLQ(ctx, letters); err != nil {
		return fmt.Errorf("%w in %s table %s (%w); moving to the dead-letter queue failed: %w", ErrDecode, q.path, q.table, cause, err)
	}
	return fmt.Errorf("%w in %s table %s, moved to %s table %s: %w", ErrDecode, q.path, q.table, DLQPath(q.path), DLQTable(q.table), cause)
}

// replayChunk is how many dead letters ReplayDeadLetters moves per commit.
const replayChunk = 1000

// ReplayDeadLetters puts up to limit dead letters (all when limit <= 0) back
// at the end of the queue, oldest first, with their bytes unchanged, and
// returns how many it moved. Each chunk is appended (one commit) before it
// is deleted from the dead-letter table (another): a crash in between leaves
// a record in both places, never in neither. Use it after fixing what made
// the sink reject the records; records that failed to decode will fail again.
func (q *Queue[T]) ReplayDeadLetters(ctx context.Context, limit int) (int, error) {
	if q.closed.Load() {
		return 0, q.errClosed("replay dead letters into")
	}
	d, err := q.deadLettersFor(ctx)
	if err != nil {
		return 0, err
	}
	moved := 0
	for limit <= 0 || moved < limit {
		n := replayChunk
		if limit > 0 {
			n = min(n, limit-moved)
		}
		if q.max > 0 {
			n = min(n, int(q.max)) // a chunk larger than the queue would wait for ever
		}
		ids, rows, err := d.oldest(ctx, n)
		if err != nil || len(rows) == 0 {
			return moved, err
		}
		op, err := q.bookRows(ctx, rows)
		if err == nil {
			err = q.submitInsert(ctx, op)
		}
		if err != nil {
			return moved, fmt.Errorf("outbox: replay dead letters into %s table %s: %w", q.path, q.table, err)
		}
		del := newWriteOp(nil)
		del.exec = func(t *txn) (int64, error) {
			_, err := t.exec(`DELETE FROM "`+d.table+`" WHERE id BETWEEN ? AND ?`, ids.lo, ids.hi)
			return 0, err
		}
		if err := d.store.commit.submit(ctx, del); err != nil {
			return moved, fmt.Errorf("outbox: delete replayed dead letters %d..%d from %s: %w", ids.lo, ids.hi, d.store.path, err)
		}
		moved += len(rows)
	}
	return moved, nil
}

// oldest reads the first n dead letters: their id range and their rows.
func (d *deadLetters) oldest(ctx context.Context, n int) (idRange, []row, error) {
	rs, err := d.store.db.QueryContext(ctx, `SELECT id, data, created_at FROM "`+d.table+`" ORDER BY id LIMIT ?`, n)
	if err != nil {
		return idRange{}, nil, dbError("read dead letters from", d.store.path, err)
	}
	defer rs.Close()
	var ids idRange
	var rows []row
	for rs.Next() {
		var id int64
		var r row
		if err := rs.Scan(&id, &r.data, &r.created); err != nil {
			return idRange{}, nil, dbError("read dead letters from", d.store.path, err)
		}
		if len(rows) == 0 {
			ids.lo = id
		}
		ids.hi = id
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return idRange{}, nil, dbError("read dead letters from", d.store.path, err)
	}
	return ids, rows, nil
}
