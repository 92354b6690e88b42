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
	st, err := acquireStore(ctx, DLQPath(q.path), q.store.durability, false)
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
