package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"
)

// Reading a queue file from outside: an operator's tools (outboxd stats and
// dlq) read the tables and dead letters of a file that a running process may
// own. They open the files read-only, as other connections; WAL mode lets
// them read beside the owner's committer. Purging dead letters is the one
// write, and it touches only the dead-letter file.

// TableStats is what Inspector.Stats reads of one queue table.
type TableStats struct {
	Table       string
	Records     int64     // rows in the table, leased ones included
	Oldest      time.Time // when the oldest record was stored; zero when the table is empty
	DeadLetters int64     // rows in the table's dead-letter table
}

// DeadLetter is one record of a dead-letter table.
type DeadLetter struct {
	ID         int64 // its id in the dead-letter table
	OriginalID int64 // its id in the queue table it came from
	Data       []byte
	Reason     string    // why it was moved
	Created    time.Time // when it was stored in the queue
	Moved      time.Time // when it was moved to the dead-letter table
}

// FileSize is one file of a queue on disk and its size.
type FileSize struct {
	Path string
	Size int64
}

// Inspector reads a queue file and its dead-letter file read-only.
type Inspector struct {
	path string
	db   *sql.DB // the queue file
	dlq  *sql.DB // the dead-letter file; nil when it did not exist at Inspect
}

// Inspect opens the queue file at path, and its dead-letter file when there
// is one, read-only. It creates neither: a missing queue file is an error
// that wraps os.ErrNotExist.
func Inspect(ctx context.Context, path string) (*Inspector, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("outbox: inspect %s: %w", path, err)
	}
	db, err := openReadOnly(ctx, path)
	if err != nil {
		return nil, err
	}
	in := &Inspector{path: path, db: db}
	dlqPath := DLQPath(path)
	if _, err := os.Stat(dlqPath); err == nil {
		if in.dlq, err = openReadOnly(ctx, dlqPath); err != nil {
			db.Close()
			return nil, err
		}
	}
	return in, nil
}

// openReadOnly opens the database file at path read-only, and reads its
// header so that a file that is not a database is reported here, by path.
func openReadOnly(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", fileURI(path)+"?mode=ro&_pragma=busy_timeout("+fmt.Sprint(busyTimeoutMS)+")")
	if err != nil {
		return nil, dbError("open read-only", path, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master").Scan(&n); err != nil {
		db.Close()
		return nil, dbError("open read-only", path, err)
	}
	return db, nil
}

// Close closes both files.
func (in *Inspector) Close() error {
	err := in.db.Close()
	if in.dlq != nil {
		err = errors.Join(err, in.dlq.Close())
	}
	return err
}

// Tables lists the queue tables of the file, by name.
func (in *Inspector) Tables(ctx context.Context) ([]string, error) {
	rows, err := in.db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> ? ORDER BY name`, marksTable)
	if err != nil {
		return nil, dbError("list the tables of", in.path, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, dbError("list the tables of", in.path, err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("list the tables of", in.path, err)
	}
	return names, nil
}

// Stats reads how many records table holds, when the oldest was stored, and
// how many dead letters it has.
func (in *Inspector) Stats(ctx context.Context, table string) (TableStats, error) {
	if err := checkTableName(table); err != nil {
		return TableStats{}, err
	}
	st := TableStats{Table: table}
	var oldest sql.NullInt64
	err := in.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM "`+table+`"`).Scan(&st.Records, &oldest)
	if err != nil {
		return TableStats{}, dbError("count table "+table+" in", in.path, err)
	}
	if oldest.Valid {
		st.Oldest = time.Unix(oldest.Int64, 0)
	}
	if st.DeadLetters, err = in.DeadLetterLen(ctx, table); err != nil {
		return TableStats{}, err
	}
	return st, nil
}

// DeadLetterLen counts the dead letters of table: 0 when the dead-letter file
// or table does not exist.
func (in *Inspector) DeadLetterLen(ctx context.Context, table string) (int64, error) {
	if err := checkTableName(table); err != nil {
		return 0, err
	}
	if ok, err := in.hasDLQTable(ctx, table); !ok || err != nil {
		return 0, err
	}
	var n int64
	if err := in.dlq.QueryRowContext(ctx, `SELECT COUNT(*) FROM "`+DLQTable(table)+`"`).Scan(&n); err != nil {
		return 0, dbError("count table "+DLQTable(table)+" in", DLQPath(in.path), err)
	}
	return n, nil
}

// DeadLetters reads up to limit (all when limit <= 0) dead letters of table,
// oldest first: none when the dead-letter file or table does not exist.
func (in *Inspector) DeadLetters(ctx context.Context, table string, limit int) ([]DeadLetter, error) {
	if err := checkTableName(table); err != nil {
		return nil, err
	}
	if ok, err := in.hasDLQTable(ctx, table); !ok || err != nil {
		return nil, err
	}
	dt, path := DLQTable(table), DLQPath(in.path)
	rows, err := in.dlq.QueryContext(ctx, `SELECT id, original_id, data, error_message, created_at, moved_at FROM "`+dt+`" ORDER BY id LIMIT ?`, sqlLimit(limit))
	if err != nil {
		return nil, dbError("read table "+dt+" in", path, err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		var created, moved int64
		if err := rows.Scan(&d.ID, &d.OriginalID, &d.Data, &d.Reason, &created, &moved); err != nil {
			return nil, dbError("read table "+dt+" in", path, err)
		}
		d.Created, d.Moved = time.Unix(created, 0), time.Unix(moved, 0)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("read table "+dt+" in", path, err)
	}
	return out, nil
}

// hasDLQTable reports whether table's dead-letter table exists.
func (in *Inspector) hasDLQTable(ctx context.Context, table string) (bool, error) {
	if in.dlq == nil {
		return false, nil
	}
	return tableExists(ctx, in.dlq, DLQPath(in.path), DLQTable(table))
}

func tableExists(ctx context.Context, db *sql.DB, path, table string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n)
	if err != nil {
		return false, dbError("look for table "+table+" in", path, err)
	}
	return n > 0, nil
}

// Files lists the queue file, its WAL and its dead-letter file, those that
// exist, with their sizes.
func (in *Inspector) Files() []FileSize {
	var out []FileSize
	for _, p := range []string{in.path, in.path + "-wal", DLQPath(in.path)} {
		if info, err := os.Stat(p); err == nil {
			out = append(out, FileSize{Path: p, Size: info.Size()})
		}
	}
	return out
}

// PurgeDeadLetters deletes table's dead letters that were moved before
// before (all of them when before is zero), oldest first, at most limit of
// them (all when limit <= 0), from the dead-letter file of the queue file
// path, and returns how many it deleted. It writes only the dead-letter
// file, so it is safe beside a process that owns the queue: SQLite
// serialises the writes. A missing file or table has nothing to purge, and
// is not created.
func PurgeDeadLetters(ctx context.Context, path, table string, before time.Time, limit int) (int64, error) {
	if err := checkTableName(table); err != nil {
		return 0, err
	}
	dlqPath, dt := DLQPath(path), DLQTable(table)
	if _, err := os.Stat(dlqPath); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	db, err := sql.Open("sqlite", fileURI(dlqPath)+"?mode=rw&_pragma=busy_timeout("+fmt.Sprint(busyTimeoutMS)+")")
	if err != nil {
		return 0, dbError("open", dlqPath, err)
	}
	defer db.Close()
	if ok, err := tableExists(ctx, db, dlqPath, dt); !ok || err != nil {
		return 0, err
	}
	cutoff := int64(1<<63 - 1) // every row
	if !before.IsZero() {
		cutoff = before.Unix()
	}
	res, err := db.ExecContext(ctx, `DELETE FROM "`+dt+`" WHERE id IN (SELECT id FROM "`+dt+`" WHERE moved_at < ? ORDER BY id LIMIT ?)`, cutoff, sqlLimit(limit))
	if err != nil {
		return 0, dbError("purge dead letters from table "+dt+" in", dlqPath, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, dbError("purge dead letters from table "+dt+" in", dlqPath, err)
	}
	return n, nil
}

// sqlLimit is limit as SQLite's LIMIT takes it: -1 for no limit.
func sqlLimit(limit int) int64 {
	if limit <= 0 {
		return -1
	}
	return int64(limit)
}

// DeadLetterLen returns how many records the queue's dead-letter table
// holds; it counts the table's rows. A queue whose dead-letter file does not
// exist has none, and the file is not created for the question.
func (q *Queue[T]) DeadLetterLen(ctx context.Context) (int, error) {
	if q.closed.Load() {
		return 0, q.errClosed("count dead letters of")
	}
	q.dlqMu.Lock()
	d := q.dlq
	q.dlqMu.Unlock()
	if d == nil {
		if _, err := os.Stat(DLQPath(q.path)); errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		var err error
		if d, err = q.deadLettersFor(ctx); err != nil {
			return 0, err
		}
	}
	var n int
	if err := d.store.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM "`+d.table+`"`).Scan(&n); err != nil {
		return 0, dbError("count table "+d.table+" in", d.store.path, err)
	}
	return n, nil
}
