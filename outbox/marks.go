package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// marksTable holds the marks of a file. Queue tables cannot take its name.
const marksTable = "outbox_marks"

// Mark is a position that a reader of some source (a log file's offset, a
// journal cursor) stores in the same transaction as the records it read up
// to there: the two survive a crash or a power cut together, or vanish
// together, so the source is read into the outbox exactly once.
type Mark struct {
	Key   string
	Value []byte // nil deletes the key
}

// markRow is the schema of the marks table; GORM creates it.
type markRow struct {
	Key   string `gorm:"column:key;primaryKey"`
	Value []byte `gorm:"column:value;type:BLOB;not null"`
}

// SendMarked is SendTargets that also stores marks, in the same transaction
// as the records: all of it is committed, or none. The marks are stored
// even when every target left its records out (when_full), and when there
// are no records at all. targets must name at least one queue (the file the
// marks go to); its Items may be empty.
func SendMarked[T any](ctx context.Context, targets []Target[T], marks []Mark) error {
	if len(targets) == 0 {
		return fmt.Errorf("outbox: send marked: no queue to name the file")
	}
	if len(marks) == 0 {
		return SendTargets(ctx, targets)
	}
	st := targets[0].Queue.store
	if err := st.ensureMarks(ctx); err != nil {
		return err
	}
	return sendTargets(ctx, targets, func(t *txn) (int64, error) {
		return 0, t.putMarks(marks)
	})
}

// putMarks writes marks in the running transaction.
func (t *txn) putMarks(marks []Mark) error {
	for _, m := range marks {
		var err error
		if m.Value == nil {
			_, err = t.exec(`DELETE FROM "`+marksTable+`" WHERE key = ?`, m.Key)
		} else {
			_, err = t.exec(`INSERT INTO "`+marksTable+`" (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, m.Key, m.Value)
		}
		if err != nil {
			return fmt.Errorf("store mark %q: %w", m.Key, err)
		}
	}
	return nil
}

// Marks reads the committed marks of q's file whose keys start with prefix.
func (q *Queue[T]) Marks(ctx context.Context, prefix string) (map[string][]byte, error) {
	if q.closed.Load() {
		return nil, q.errClosed("read marks of")
	}
	if err := q.store.ensureMarks(ctx); err != nil {
		return nil, err
	}
	return readMarks(ctx, q.store.db, q.path, prefix)
}

// Marks reads the marks of the file whose keys start with prefix; none when
// no mark was ever stored.
func (in *Inspector) Marks(ctx context.Context, prefix string) (map[string][]byte, error) {
	var n int
	err := in.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, marksTable).Scan(&n)
	if err != nil {
		return nil, dbError("read the marks of", in.path, err)
	}
	if n == 0 {
		return map[string][]byte{}, nil
	}
	return readMarks(ctx, in.db, in.path, prefix)
}

func readMarks(ctx context.Context, db *sql.DB, path, prefix string) (map[string][]byte, error) {
	// Keys are compared as text; the prefix's own % and _ are escaped.
	esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix)
	rows, err := db.QueryContext(ctx, `SELECT key, value FROM "`+marksTable+`" WHERE key LIKE ? ESCAPE '\'`, esc+"%")
	if err != nil {
		return nil, dbError("read the marks of", path, err)
	}
	defer rows.Close()
	marks := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, dbError("read the marks of", path, err)
		}
		if strings.HasPrefix(k, prefix) { // LIKE ignores ASCII case
			marks[k] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("read the marks of", path, err)
	}
	return marks, nil
}

// ensureMarks creates the marks table on first use.
func (s *store) ensureMarks(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hasMarks {
		return nil
	}
	if err := s.gorm.WithContext(ctx).Table(marksTable).AutoMigrate(&markRow{}); err != nil {
		return dbError("create table "+marksTable+" in", s.path, err)
	}
	s.hasMarks = true
	return nil
}
