package outbox

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is; the wrapped error
// carries the details (which file, which table, which record id).
var (
	// ErrQueueFull: the queue holds MaxSize records. A Send that waited for
	// space until its context ended returns an error matching both ErrQueueFull
	// and the context's error.
	ErrQueueFull = errors.New("outbox: queue full")
	// ErrClosed: the queue (or the half of a channel) was closed.
	ErrClosed = errors.New("outbox: queue closed")
	// ErrInvalidTableName: a table name is not 1-64 characters of [A-Za-z0-9_],
	// starts with a digit, or starts with "sqlite_".
	ErrInvalidTableName = errors.New("outbox: invalid table name")
	// ErrDecode: a stored record could not be decoded; it was moved to the
	// dead-letter queue.
	ErrDecode = errors.New("outbox: decode record")
	// ErrEncode: a record could not be encoded; nothing was written.
	ErrEncode = errors.New("outbox: encode record")
	// ErrLeaseNotActive: Ack or Release on a lease that was already acknowledged
	// or released, or whose records were removed by Clear.
	ErrLeaseNotActive = errors.New("outbox: lease not active")
	// ErrDiskFull: SQLite could not grow the database file (SQLITE_FULL).
	// Nothing of the failed write was stored; reads and deletes keep working, so
	// draining the queue frees space.
	ErrDiskFull = errors.New("outbox: disk full")
	// ErrCorrupt: the file is not an SQLite database, or SQLite reports it
	// malformed. The file is left untouched.
	ErrCorrupt = errors.New("outbox: database file is not usable")
)

// SQLite primary result codes that the queue classifies.
const (
	sqliteCorrupt = 11
	sqliteFull    = 13
	sqliteNotADB  = 26
)

// dbError wraps a database error with the operation and the file, and adds the
// sentinel a caller can branch on when SQLite's code says what went wrong.
func dbError(op, path string, err error) error {
	if err == nil {
		return nil
	}
	// The driver's *sqlite.Error and fastInsert's *sqliteError.
	var se interface{ Code() int }
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteFull:
			return fmt.Errorf("outbox: %s %s: %w: %w", op, path, ErrDiskFull, err)
		case sqliteCorrupt, sqliteNotADB:
			return fmt.Errorf("outbox: %s %s: %w: %w", op, path, ErrCorrupt, err)
		}
	}
	return fmt.Errorf("outbox: %s %s: %w", op, path, err)
}
