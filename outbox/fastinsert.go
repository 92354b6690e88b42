package outbox

import (
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

// fastInsert runs the committer's multi-row INSERTs through SQLite's C API
// (modernc.org/sqlite/lib, the same code the driver calls), each statement
// prepared once and kept.
//
// Why not database/sql: the driver (glebarez/go-sqlite, like the
// modernc.org/sqlite it forks) prepares every statement afresh on every
// Exec, a *sql.Stmt too, and matches each "?" to its argument by a linear
// search over all arguments. For a 256-row INSERT that is a parse of 2 KiB of
// SQL and 130,000 comparisons per statement: under syslog load to Kafka the
// parse alone was 12% of the daemon's CPU and the binding 7%.
//
// The connection's handle is read from the driver's unexported fields with
// reflection. If a driver upgrade changes them, newFastInsert says so and the
// committer keeps using database/sql (TestFastInsertReachesDriver fails too,
// so the change cannot go unnoticed).
type fastInsert struct {
	stmts map[insertKey]uintptr // prepared INSERTs, by table and row count
	// blobs is C memory that one statement's records are copied into before
	// binding: SQLite code may not hold or read pointers into the Go heap
	// (the race detector's checkptr rejects it), so records cross once, by
	// copy, as the driver does it.
	blobs    uintptr
	blobsCap int
}

// blobsKeep is the C buffer size kept between statements; a bigger one,
// grown for large records, is given back after its statement.
const blobsKeep = 1 << 20

// driverHandle is the SQLite connection behind a database/sql driver
// connection: the C library's thread state and the sqlite3* pointer.
type driverHandle struct {
	tls *libc.TLS
	db  uintptr
}

// handleOf reads the handle out of a glebarez/go-sqlite connection.
func handleOf(driverConn any) (driverHandle, error) {
	v := reflect.ValueOf(driverConn)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return driverHandle{}, fmt.Errorf("driver connection is a %T, not a pointer to a struct", driverConn)
	}
	db := v.Elem().FieldByName("db")
	tls := v.Elem().FieldByName("tls")
	if !db.IsValid() || db.Kind() != reflect.Uintptr {
		return driverHandle{}, fmt.Errorf("driver connection %T has no uintptr field db", driverConn)
	}
	if !tls.IsValid() || tls.Type() != reflect.TypeFor[*libc.TLS]() {
		return driverHandle{}, fmt.Errorf("driver connection %T has no *libc.TLS field tls", driverConn)
	}
	h := driverHandle{tls: (*libc.TLS)(tls.UnsafePointer()), db: uintptr(db.Uint())}
	if h.tls == nil || h.db == 0 {
		return driverHandle{}, errors.New("driver connection is closed")
	}
	return h, nil
}

// fastPathsOff, when set, makes files opened afterwards insert and claim
// through database/sql, as they would after a driver upgrade broke
// handleOf. Only tests set it: without it the fallback ran in no test.
var fastPathsOff atomic.Bool

// errFastPathsOff is why newFastInsert refuses while fastPathsOff is set.
var errFastPathsOff = errors.New("fast paths switched off")

// newFastInsert checks that the handle can be reached and allocates the
// C buffer.
func newFastInsert(driverConn any) (*fastInsert, error) {
	if fastPathsOff.Load() {
		return nil, errFastPathsOff
	}
	h, err := handleOf(driverConn)
	if err != nil {
		return nil, err
	}
	f := &fastInsert{stmts: map[insertKey]uintptr{}}
	if err := f.growBlobs(h, blobsKeep); err != nil {
		return nil, err
	}
	return f, nil
}

// cmem turns an address in C memory (never the Go heap) into a pointer.
func cmem(p uintptr) unsafe.Pointer { return unsafe.Add(nil, p) }

func (f *fastInsert) growBlobs(h driverHandle, n int) error {
	if n <= f.blobsCap {
		return nil
	}
	p := libc.Xrealloc(h.tls, f.blobs, types.Size_t(n))
	if p == 0 {
		return fmt.Errorf("allocate %d bytes for records", n)
	}
	f.blobs, f.blobsCap = p, n
	return nil
}

// insert runs the INSERT of len(rows) rows into table (len(rows) is one of
// insertChunks) and returns the last row id.
func (f *fastInsert) insert(h driverHandle, table string, rows []row) (int64, error) {
	stmt, err := f.stmt(h, table, len(rows))
	if err != nil {
		return 0, err
	}
	size := 0
	for _, r := range rows {
		size += len(r.data)
	}
	if err := f.growBlobs(h, size); err != nil {
		return 0, err
	}
	buf := unsafe.Slice((*byte)(cmem(f.blobs)), f.blobsCap)
	off := 0
	for i, r := range rows {
		n := copy(buf[off:], r.data)
		// A non-nil pointer binds an empty record as a zero-length blob,
		// not NULL. SQLITE_STATIC (0): the buffer outlives the step.
		rc := sqlite3.Xsqlite3_bind_blob(h.tls, stmt, int32(2*i+1), f.blobs+uintptr(off), int32(n), 0)
		if rc == sqlite3.SQLITE_OK {
			rc = sqlite3.Xsqlite3_bind_int64(h.tls, stmt, int32(2*i+2), r.created)
		}
		if rc != sqlite3.SQLITE_OK {
			return 0, h.err(rc)
		}
		off += n
	}
	rc := sqlite3.Xsqlite3_step(h.tls, stmt)
	var stepErr error
	if rc != sqlite3.SQLITE_DONE {
		stepErr = h.err(rc)
	}
	// Reset ends the statement; its code repeats the step's error.
	sqlite3.Xsqlite3_reset(h.tls, stmt)
	if f.blobsCap > blobsKeep {
		libc.Xfree(h.tls, f.blobs)
		f.blobs, f.blobsCap = 0, 0
		if err := f.growBlobs(h, blobsKeep); err != nil && stepErr == nil {
			stepErr = err
		}
	}
	if stepErr != nil {
		return 0, stepErr
	}
	return sqlite3.Xsqlite3_last_insert_rowid(h.tls, h.db), nil
}

// stmt returns the prepared INSERT of n rows into table, preparing it the
// first time.
func (f *fastInsert) stmt(h driverHandle, table string, n int) (uintptr, error) {
	key := insertKey{table, n}
	if s, ok := f.stmts[key]; ok {
		return s, nil
	}
	s, err := prepare(h, insertSQL(table, n))
	if err != nil {
		return 0, err
	}
	f.stmts[key] = s
	return s, nil
}

// close finalizes the statements (a connection with live statements does not
// close) and frees the buffer.
func (f *fastInsert) close(h driverHandle) {
	for k, s := range f.stmts {
		sqlite3.Xsqlite3_finalize(h.tls, s)
		delete(f.stmts, k)
	}
	libc.Xfree(h.tls, f.blobs)
	f.blobs, f.blobsCap = 0, 0
}

// err is SQLite's error for result code rc, as the driver would report it.
func (h driverHandle) err(rc int32) error {
	code := int(sqlite3.Xsqlite3_extended_errcode(h.tls, h.db))
	if code == sqlite3.SQLITE_OK {
		code = int(rc)
	}
	return &sqliteError{code: code, msg: libc.GoString(sqlite3.Xsqlite3_errmsg(h.tls, h.db))}
}

// sqliteError is an SQLite result code with SQLite's message. Code has the
// signature of the driver's *sqlite.Error, so dbError classifies both alike.
type sqliteError struct {
	code int
	msg  string
}

func (e *sqliteError) Error() string { return fmt.Sprintf("%s (%d)", e.msg, e.code) }

// Code is SQLite's extended result code.
func (e *sqliteError) Code() int { return e.code }
