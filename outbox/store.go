package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// store is one open database file: its GORM handle, the *sql.DB under it, the
// group committer that owns its write connection, and the state of each table
// opened in it. Every Queue on the same file in this process shares one store,
// so that one commit (one fsync) serves all of them.
type store struct {
	path       string
	durability Durability
	gorm       *gorm.DB
	db         *sql.DB
	commit     *committer
	reader     rowReader // nil: claims read through database/sql

	mu       sync.Mutex
	refs     int
	tables   map[string]*tableState
	hasMarks bool // the marks table exists (marks.go)
}

// stores maps an absolute file path to its open store.
var stores = struct {
	sync.Mutex
	m map[string]*store
}{m: map[string]*store{}}

// fileOptions are the settings of a whole database file. Every Queue on a
// file must ask for the same ones.
type fileOptions struct {
	durability Durability
	reserve    bool  // keep a reserve file for deletes on a full disk
	maxBytes   int64 // disk limit; 0 = none
}

// acquireStore returns the open store for path, opening the file when this is
// its first user. Every acquireStore is paired with one releaseStore.
func acquireStore(ctx context.Context, path string, fo fileOptions) (*store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("outbox: resolve path %q: %w", path, err)
	}
	stores.Lock()
	defer stores.Unlock()
	if s, ok := stores.m[abs]; ok {
		if s.durability != fo.durability {
			return nil, fmt.Errorf("outbox: open %s: already open with durability %s, not %s", abs, s.durability, fo.durability)
		}
		if have := s.commit.limit.maxBytes(); have != fo.maxBytes {
			return nil, fmt.Errorf("outbox: open %s: already open with MaxBytes %d, not %d", abs, have, fo.maxBytes)
		}
		s.mu.Lock()
		s.refs++
		s.mu.Unlock()
		return s, nil
	}
	s, err := openStore(ctx, abs, fo)
	if err != nil {
		return nil, err
	}
	s.refs = 1
	stores.m[abs] = s
	return s, nil
}

// releaseStore drops one reference; the last one stops the committer (after
// it has answered every write handed to it) and closes the file.
func releaseStore(s *store) error {
	stores.Lock()
	defer stores.Unlock()
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if !last {
		return nil
	}
	delete(stores.m, s.path)
	s.commit.stop()
	if s.reader != nil {
		s.reader.close()
	}
	if err := s.db.Close(); err != nil {
		return dbError("close", s.path, err)
	}
	return nil
}

// sqliteHeader is how every SQLite 3 database file begins.
var sqliteHeader = []byte("SQLite format 3\x00")

// checkExistingFile refuses a file that exists but is not an SQLite database,
// before SQLite is given a chance to write to it (switching to WAL mode writes
// the header). An empty file is a new database to SQLite, and to us.
func checkExistingFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("outbox: open %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, len(sqliteHeader))
	n, err := io.ReadFull(f, head)
	if n == 0 && (err == io.EOF) {
		return nil
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("outbox: read %s: %w", path, err)
	}
	if !bytes.Equal(head[:n], sqliteHeader) {
		return fmt.Errorf("outbox: open %s: %w: not an SQLite database (bad header); the file was left untouched", path, ErrCorrupt)
	}
	return nil
}

// fileMode is the mode of a database file. Records are logs, often with
// secrets in them, for the daemon's user alone. SQLite gives the WAL and
// the shm file the database file's mode, whatever the umask, but creates a
// database with 0644 less the umask: so the file is created here first.
const fileMode = 0o600

// restrictFiles creates the database file at path with fileMode if it does
// not exist, and takes the group's and others' permissions off an existing
// one and its WAL and shm.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err == nil {
		f.Close()
		// The umask may have taken more than group and other bits.
		if err := os.Chmod(path, fileMode); err != nil {
			return fmt.Errorf("outbox: create %s: %w", path, err)
		}
		return nil
	}
	if !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("outbox: create %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("outbox: check the mode of %s: %w", p, err)
		}
		if perm := info.Mode().Perm(); perm&^fileMode != 0 {
			if err := os.Chmod(p, perm&fileMode); err != nil {
				return fmt.Errorf("outbox: restrict %s (mode %04o) to its owner: %w", p, perm, err)
			}
		}
	}
	return nil
}

// dsn builds the connection string. Every pooled connection runs these
// pragmas:
//   - 8 KiB pages for a new file: a WAL commit writes each dirty page whole,
//     with an lseek and a write per frame in the pure-Go driver, so bigger
//     pages mean fewer syscalls for big commits, and more bytes for small
//     ones. Against 4 KiB, interleaved, benchstat n=6: 64 concurrent sends
//     +14%, single sends, SendBatch1000 and Claim+Ack within the noise
//     (+6%, +7%, +12%). 16 KiB gave batches +24% but single sends -20%;
//   - a checkpoint every 512 pages (4 MiB, what SQLite's default of 1000
//     pages is at 4 KiB): a full disk must still hold the WAL;
//   - WAL, so that readers never block the committer;
//   - a busy timeout, for an operator's sqlite3 shell;
//   - incremental auto-vacuum (it only takes effect on a new file), so that a
//     drained backlog can give disk space back;
//   - memory-mapped reads of the first 8 MiB of the file: mmap saves a
//     syscall and a copy per page, but mapped pages count as resident (at
//     32 MiB the daemon's RSS under 150k records/s was 76 MiB, at 8 MiB 53
//     MiB, and Claim+Ack ran as fast: 419k vs 425k records/s, n=6);
//   - the synchronous level that the durability names.
func dsn(path string, d Durability) string {
	return fileURI(path) + "?_pragma=page_size(8192)&_pragma=busy_timeout(" + strconv.Itoa(busyTimeoutMS) + ")" +
		"&_pragma=auto_vacuum(INCREMENTAL)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=wal_autocheckpoint(512)" +
		"&_pragma=mmap_size(8388608)" +
		"&_pragma=synchronous(" + d.pragma() + ")" +
		"&_txlock=immediate"
}

// fileURI is path as an SQLite URI, "file:" and the path with every byte
// that could mean something escaped: the driver cuts a DSN at its first '?',
// and in a URI '#' ends the path and '%' starts an escape, so a data
// directory named "a#b" would otherwise open "a".
func fileURI(path string) string {
	const hex = "0123456789ABCDEF"
	b := []byte("file:")
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("/-_.~", c) >= 0:
			b = append(b, c)
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

// busyTimeoutMS is how long a connection waits for a lock another holds.
const busyTimeoutMS = 10000

// maxConns bounds the pool: one connection belongs to the committer, the
// others serve readers (Claim, Len at open, operator queries).
const maxConns = 4

func openStore(ctx context.Context, path string, fo fileOptions) (*store, error) {
	d := fo.durability
	if err := checkExistingFile(path); err != nil {
		return nil, err
	}
	if err := restrictFiles(path); err != nil {
		return nil, err
	}
	gdb, err := gorm.Open(sqlite.Open(dsn(path, d)), &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
	})
	if err != nil {
		return nil, dbError("open", path, err)
	}
	db, err := gdb.DB()
	if err != nil {
		return nil, dbError("open", path, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	// Open lazily connects; ask SQLite something that reads the header and the
	// schema, so that a corrupt file is reported here, by path.
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		db.Close()
		return nil, dbError("open", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		db.Close()
		return nil, fmt.Errorf("outbox: open %s: journal mode is %q, want wal (is the file system one that supports shared memory?)", path, mode)
	}
	var res *reserve
	if fo.reserve {
		res = newReserve(path)
	}
	c, err := startCommitter(ctx, db, path, d, res, fo.maxBytes)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &store{path: path, durability: d, gorm: gdb, db: db, commit: c, tables: map[string]*tableState{}}
	if r := openClaimReader(ctx, db); r != nil { // a nil *claimReader is not a nil rowReader
		s.reader = r
	}
	return s, nil
}
