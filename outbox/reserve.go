package outbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// A full disk must not stop the outbox from draining: deleting acknowledged
// records writes to the WAL too. So each database file keeps a reserve file
// beside it, "<path>-reserve". When a write fails for lack of space, the
// committer deletes the reserve, and from then on refuses new records at once
// (ErrDiskFull) while acks, which free records, use the room. Once records
// were deleted it tries, at most once a second, to give the space back to the
// file system (incremental vacuum, then a truncating checkpoint) and to make
// the reserve again; when that works, new records are taken again.

// reserveBytes is the room set aside; a variable so tests can use a small disk.
var reserveBytes int64 = 8 << 20

// reserveRecheck is how often an idle committer tries to rebuild a spent
// reserve.
const reserveRecheck = 2 * time.Second

type reserve struct {
	path    string
	freed   atomic.Bool // the reserve is spent: refuse new records (read by Writable)
	lastTry time.Time
}

func newReserve(dbPath string) *reserve {
	r := &reserve{path: dbPath + "-reserve"}
	r.fill() // no room at start: the outbox works, without the safety margin
	return r
}

// fill makes the reserve file whole; false when the disk has no room for it
// (what was written of it is given back).
func (r *reserve) fill() bool {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false
	}
	// fallocate reserves the blocks without writing them; where the file
	// system cannot, zeros are written.
	if syscall.Fallocate(int(f.Fd()), 0, 0, reserveBytes) != nil {
		zero := make([]byte, 1<<20)
		for off := info.Size(); off < reserveBytes; off += int64(len(zero)) {
			n := min(int64(len(zero)), reserveBytes-off)
			if _, err := f.WriteAt(zero[:n], off); err != nil {
				f.Truncate(0)
				return false
			}
		}
	}
	return f.Sync() == nil
}

// spent reports whether the reserve is spent: new records are refused. A
// nil reserve (a dead-letter file) is never spent.
func (r *reserve) spent() bool { return r != nil && r.freed.Load() }

// spend deletes the reserve so that deletes find room.
func (r *reserve) spend() {
	if r.freed.Load() {
		return
	}
	if err := os.Remove(r.path); err == nil || errors.Is(err, os.ErrNotExist) {
		r.freed.Store(true)
		r.lastTry = time.Now()
	}
}

// roomToRefill reports whether the file system has room for the reserve and
// as much again: refilling it into the last free bytes would only move the
// full disk to the next write.
func (r *reserve) roomToRefill() bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(r.path), &st); err != nil {
		return false
	}
	return int64(st.Bavail)*int64(st.Bsize) >= 2*reserveBytes
}

// reserveAfterTx spends the reserve when a commit found the disk full, and
// tries to rebuild it after a commit that deleted records.
func (c *committer) reserveAfterTx(err error, batch []*writeOp) {
	if c.res == nil {
		return
	}
	if errors.Is(err, ErrDiskFull) {
		c.res.spend()
		return
	}
	if err == nil && c.res.spent() && deletedAny(batch) {
		c.recoverReserve()
	}
}

// recoverReserve tries to hand space back and rebuild the reserve. Called by the
// committer after a commit that deleted records while the reserve is spent.
func (c *committer) recoverReserve() {
	r := c.res
	if r == nil || !r.freed.Load() || time.Since(r.lastTry) < time.Second {
		return
	}
	r.lastTry = time.Now()
	c.giveBack(context.Background(), 256, 1000)
	if r.roomToRefill() && r.fill() {
		r.freed.Store(false)
	}
}

// refuseIfSpent answers ops that add records with ErrDiskFull while the
// reserve is spent, and returns the ops that may still run.
func (c *committer) refuseIfSpent(batch []*writeOp) []*writeOp {
	if !c.res.spent() {
		return batch
	}
	c.recoverReserve() // at most once a second: room may have come back
	if !c.res.spent() {
		return batch
	}
	keep := batch[:0:0]
	for _, op := range batch {
		if op.rowCount() > 0 {
			c.finish([]*writeOp{op}, fmt.Errorf("outbox: write %s: %w: new records are refused until acknowledged ones free room", c.path, ErrDiskFull))
			continue
		}
		keep = append(keep, op)
	}
	return keep
}

// Writable returns nil while the queue takes new records, and an ErrDiskFull
// error while its file's disk is full and new records are refused (reads and
// acks go on; they are what makes room). A full queue (MaxSize, MaxBytes) is
// back-pressure, not unwritable, and returns nil.
func (q *Queue[T]) Writable() error {
	if q.closed.Load() {
		return q.errClosed("write")
	}
	if q.store.commit.res.spent() {
		return fmt.Errorf("outbox: %s: %w: new records are refused until acknowledged ones free room", q.path, ErrDiskFull)
	}
	return nil
}
