package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// rowReader reads the rows of claims, as readAfter does; tests wrap one.
type rowReader interface {
	read(ctx context.Context, table string, after, upTo int64, limit int) ([]storedRow, error)
	// readBytes is read that stops before the row that bc says would pass
	// the claim's byte cap, and returns that row's id (0: it did not stop).
	readBytes(ctx context.Context, table string, after, upTo int64, limit int, bc byteCap) (rows []storedRow, stop int64, err error)
	close()
}

// byteCap bounds what one read of a claim holds: room is what is left of
// the claim's maxBytes (0 or less when nothing is), and first lets the
// read's first row in whatever its size (a claim holds at least one row).
type byteCap struct {
	room  int
	first bool
}

// stops reports whether a read that holds rows rows of size bytes must stop
// before a row of n bytes.
func (bc byteCap) stops(rows, size, n int) bool {
	return (rows > 0 || !bc.first) && size+n > bc.room
}

// claimReader reads the rows of claims through SQLite's C API, on one
// connection kept for it, with each table's SELECT prepared once.
//
// Why, as for fastInsert: through database/sql the driver parses the query
// again for every claim, asks each column's type, and allocates every record
// on its own. Here a claim's records are copied into a few large slabs, so a
// batch of 1,000 costs a handful of allocations instead of 1,000.
//
// Claims on different tables take turns on the connection; a claim reads
// for well under a millisecond, and the other pooled connections stay free
// for everything else.
type claimReader struct {
	mu    sync.Mutex
	conn  *sql.Conn
	stmts map[string]uintptr // prepared SELECT, by table
}

// slabSize is the size of the blocks a claim's records are copied into; a
// larger record gets a block of its own.
const slabSize = 256 << 10

// openClaimReader takes a connection from db for claims. It returns nil, and
// claims read through database/sql, when the driver's handle cannot be
// reached (see handleOf).
func openClaimReader(ctx context.Context, db *sql.DB) *claimReader {
	if fastPathsOff.Load() {
		return nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil
	}
	err = conn.Raw(func(dc any) error {
		_, err := handleOf(dc)
		return err
	})
	if err != nil {
		conn.Close()
		return nil
	}
	return &claimReader{conn: conn, stmts: map[string]uintptr{}}
}

// read returns up to limit rows of table with ids in (after, upTo], in id
// order, as readAfter does.
func (r *claimReader) read(ctx context.Context, table string, after, upTo int64, limit int) ([]storedRow, error) {
	rows, _, err := r.readRows(ctx, table, after, upTo, limit, nil)
	return rows, err
}

// readBytes is read with a byte cap. A row's size is known before it is
// copied, so a claim over large records reads about maxBytes of them, not
// limit records.
func (r *claimReader) readBytes(ctx context.Context, table string, after, upTo int64, limit int, bc byteCap) ([]storedRow, int64, error) {
	return r.readRows(ctx, table, after, upTo, limit, &bc)
}

// readRows is read, and readBytes when bc is not nil.
func (r *claimReader) readRows(ctx context.Context, table string, after, upTo int64, limit int, bc *byteCap) (rows []storedRow, stop int64, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	slabCap := slabSize
	if bc != nil {
		slabCap = max(min(slabCap, bc.room), 0)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rows = make([]storedRow, 0, min(limit, 1024)) // limit may be huge: "everything"
	size := 0
	err = r.conn.Raw(func(dc any) error {
		h, err := handleOf(dc)
		if err != nil {
			return err
		}
		stmt, err := r.stmt(h, table)
		if err != nil {
			return err
		}
		// Reset ends the read transaction, which would otherwise hold back
		// checkpoints.
		defer sqlite3.Xsqlite3_reset(h.tls, stmt)
		for i, v := range []int64{after, upTo, int64(limit)} {
			if rc := sqlite3.Xsqlite3_bind_int64(h.tls, stmt, int32(i+1), v); rc != sqlite3.SQLITE_OK {
				return h.err(rc)
			}
		}
		var slab []byte
		for {
			switch rc := sqlite3.Xsqlite3_step(h.tls, stmt); rc {
			case sqlite3.SQLITE_ROW:
				id := sqlite3.Xsqlite3_column_int64(h.tls, stmt, 0)
				p := sqlite3.Xsqlite3_column_blob(h.tls, stmt, 1)
				n := int(sqlite3.Xsqlite3_column_bytes(h.tls, stmt, 1))
				if bc != nil && bc.stops(len(rows), size, n) {
					stop = id
					return nil
				}
				size += n
				if cap(slab)-len(slab) < n {
					slab = make([]byte, 0, max(slabCap, n))
				}
				start := len(slab)
				if n > 0 {
					slab = append(slab, unsafe.Slice((*byte)(cmem(p)), n)...)
				}
				// The full slice expression keeps an append to one record
				// from running into the next.
				rows = append(rows, storedRow{id: id, data: slab[start:len(slab):len(slab)]})
			case sqlite3.SQLITE_DONE:
				return nil
			default:
				return h.err(rc)
			}
		}
	})
	return rows, stop, err
}

// stmt returns table's prepared SELECT, preparing it the first time.
func (r *claimReader) stmt(h driverHandle, table string) (uintptr, error) {
	if s, ok := r.stmts[table]; ok {
		return s, nil
	}
	q := `SELECT id, data FROM "` + table + `" WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3`
	s, err := prepare(h, q)
	if err != nil {
		return 0, fmt.Errorf("prepare claim of %s: %w", table, err)
	}
	r.stmts[table] = s
	return s, nil
}

// close finalizes the statements and gives the connection back; the store
// calls it before it closes the database.
func (r *claimReader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.conn.Raw(func(dc any) error {
		h, err := handleOf(dc)
		if err != nil {
			return err
		}
		for t, s := range r.stmts {
			sqlite3.Xsqlite3_finalize(h.tls, s)
			delete(r.stmts, t)
		}
		return nil
	})
	r.conn.Close()
}

// prepare compiles query for repeated use.
func prepare(h driverHandle, query string) (uintptr, error) {
	zSQL, err := libc.CString(query)
	if err != nil {
		return 0, err
	}
	defer libc.Xfree(h.tls, zSQL)
	const ptrSize = int(unsafe.Sizeof(uintptr(0)))
	ppStmt := h.tls.Alloc(ptrSize)
	defer h.tls.Free(ptrSize)
	if rc := sqlite3.Xsqlite3_prepare_v3(h.tls, h.db, zSQL, -1, sqlite3.SQLITE_PREPARE_PERSISTENT, ppStmt, 0); rc != sqlite3.SQLITE_OK {
		return 0, h.err(rc)
	}
	return *(*uintptr)(cmem(ppStmt)), nil
}
