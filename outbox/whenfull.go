package outbox

import (
	"context"
	"fmt"
)

// WhenFull says what a write to a full queue does, per Batch of SendBatches.
// A queue is full when it holds MaxSize records, or when its file holds
// MaxBytes of pages in use.
type WhenFull int

const (
	// Block waits for room (bounded by the caller's context): nothing is
	// ever dropped, and the whole SendBatches waits with it. The default.
	Block WhenFull = iota
	// DropNewest leaves this batch's records out of the write when the queue
	// has no room now; the other batches are stored as usual.
	DropNewest
	// DropOldest deletes the queue's oldest records, in the same transaction,
	// to make room for the new ones; when the queue has too few records to
	// give way, the new ones are left out as with DropNewest.
	DropOldest
)

func (w WhenFull) String() string {
	switch w {
	case DropNewest:
		return "drop_newest"
	case DropOldest:
		return "drop_oldest"
	}
	return "block"
}

// ParseWhenFull reads "block", "drop_newest" or "drop_oldest".
func ParseWhenFull(s string) (WhenFull, error) {
	for _, w := range []WhenFull{Block, DropNewest, DropOldest} {
		if w.String() == s {
			return w, nil
		}
	}
	return Block, fmt.Errorf("outbox: unknown when_full %q (want block, drop_newest or drop_oldest)", s)
}

// reserveOrDrop books room for n rows without waiting, for a batch whose
// queue may drop records. It returns how many of the oldest rows the write
// must delete to make room (DropOldest), or skip=true when the new rows are
// to be left out.
func (ts *tableState) reserveOrDrop(n, max int64, policy WhenFull) (dropOld int64, skip bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	over := ts.count + ts.reserved - ts.dropping + n - max
	if max == 0 || over <= 0 {
		ts.reserved += n
		return 0, false
	}
	// Only committed rows that no other write has promised to delete can
	// give way; a queue that has too few drops the new rows instead, so
	// MaxSize holds exactly under DropOldest too.
	if policy != DropOldest || ts.count-ts.dropping < over {
		return 0, true
	}
	ts.reserved += n
	ts.dropping += over
	return over, false
}

// unbook undoes what prepare booked for op when op is not committed.
func (ts *tableState) unbook(op *writeOp) {
	ts.mu.Lock()
	ts.reserved -= int64(len(op.rows))
	ts.dropping -= op.dropOldest
	broadcast(&ts.spaceFreed)
	ts.mu.Unlock()
}

// prepareOrDrop is prepare for a batch whose policy is not Block: it never
// waits. It returns nil and the count of records left out when there is no
// room.
func (q *Queue[T]) prepareOrDrop(items []T, policy WhenFull) (*writeOp, int, error) {
	if q.closed.Load() {
		return nil, 0, q.errClosed("send to")
	}
	if len(items) == 0 {
		return nil, 0, nil
	}
	if n := int64(len(items)); q.max > 0 && n > q.max {
		return nil, len(items), nil // all of it would never fit: dropped, as one full queue drops
	}
	rows, err := q.encode(items)
	if err != nil {
		return nil, 0, err
	}
	dropOld, skip := q.ts.reserveOrDrop(int64(len(rows)), q.max, policy)
	if skip {
		return nil, len(items), nil
	}
	op := newWriteOp(q.ts)
	op.rows, op.whenFull, op.dropOldest = rows, policy, dropOld
	return op, 0, nil
}

// deleteOldest deletes the n oldest rows of table and returns how many it
// deleted. Leased rows may be among them: their ack then deletes nothing.
func (t *txn) deleteOldest(table string, n int64) (int64, error) {
	res, err := t.exec(`DELETE FROM "`+table+`" WHERE id IN (SELECT id FROM "`+table+`" ORDER BY id LIMIT ?)`, n)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// deleteOldestBytes deletes the oldest rows of table until about need bytes
// (payload plus rowOverhead each) are gone or the table is empty, and
// returns how many rows and bytes it deleted.
func (t *txn) deleteOldestBytes(table string, need int64) (rows, freed int64, err error) {
	var lastID int64
	const step = 256
	for freed < need {
		ids, err := t.c.conn.QueryContext(t.ctx, `SELECT id, length(data) FROM "`+table+`" WHERE id > ? ORDER BY id LIMIT ?`, lastID, step)
		if err != nil {
			return 0, 0, dbError("read the oldest rows of "+table+" in", t.c.path, err)
		}
		seen := 0
		for ids.Next() && freed < need {
			var size int64
			if err := ids.Scan(&lastID, &size); err != nil {
				ids.Close()
				return 0, 0, dbError("read the oldest rows of "+table+" in", t.c.path, err)
			}
			freed += size + rowOverhead
			seen++
		}
		ids.Close()
		if seen == 0 {
			break
		}
		rows += int64(seen)
		if seen < step && freed < need {
			break
		}
	}
	if rows == 0 {
		return 0, 0, nil
	}
	res, err := t.exec(`DELETE FROM "`+table+`" WHERE id <= ?`, lastID)
	if err != nil {
		return 0, 0, err
	}
	rows, err = res.RowsAffected()
	return rows, freed, err
}

// evictForBytes runs, before a batch that would pass the file's byte limit,
// one transaction that deletes the oldest records of the DropOldest tables
// the batch writes to, about need bytes in all. Their bookkeeping is updated
// as for any delete.
func (c *committer) evictForBytes(batch []*writeOp, need int64) {
	var tables []*tableState
	for _, op := range batch {
		for _, g := range op.group {
			if g.whenFull == DropOldest && !containsTable(tables, g.ts) {
				tables = append(tables, g.ts)
			}
		}
	}
	if len(tables) == 0 {
		return
	}
	// The tables give way in turn, each only for what the ones before it
	// could not free.
	left := need
	var evictions []*writeOp
	for _, ts := range tables {
		op := newWriteOp(ts)
		op.exec = func(t *txn) (int64, error) {
			if left <= 0 {
				return 0, nil
			}
			n, freed, err := t.deleteOldestBytes(ts.name, left)
			left -= freed
			return n, err
		}
		evictions = append(evictions, op)
	}
	err := c.inTx(evictions)
	c.afterTx(err, evictions)
	c.finish(evictions, err)
	for _, op := range evictions {
		if <-op.done == nil {
			op.ts.evicted.Add(op.deleted)
		}
	}
}

func containsTable(tables []*tableState, ts *tableState) bool {
	for _, t := range tables {
		if t == ts {
			return true
		}
	}
	return false
}

// Ping returns once the committer of the queue's file has answered, or ctx
// ends. A committer stuck in a write (a hung disk) does not answer: the
// daemon's watchdog uses it to tell "alive" from "making progress".
func (q *Queue[T]) Ping(ctx context.Context) error {
	if q.closed.Load() {
		return q.errClosed("ping")
	}
	op := newWriteOp(nil)
	op.ping = true
	return q.store.commit.submit(ctx, op)
}

// Full reports whether writes to the queue wait for room now, or a Block
// write would: one is waiting (a batch larger than the room left waits
// too), it holds MaxSize records, or its file's pages in use reached
// MaxBytes.
func (q *Queue[T]) Full() bool {
	q.ts.mu.Lock()
	full := q.ts.waiting > 0 || (q.max > 0 && q.ts.count >= q.max)
	q.ts.mu.Unlock()
	if full {
		return true
	}
	return q.store.commit.limit.reached()
}

// DiskUsage is the bytes of the queue's file in live pages, as last
// measured after a commit, and its disk limit (Options.MaxBytes); both 0
// when no limit is set (the pages are measured only then).
func (q *Queue[T]) DiskUsage() (used, limit int64) {
	l := &q.store.commit.limit
	if !l.set() {
		return 0, 0
	}
	return l.used.Load(), l.maxBytes()
}

// Evicted is how many records DropOldest deleted from the queue's table to
// make room, in this process, counting every Queue open on the table.
func (q *Queue[T]) Evicted() int64 { return q.ts.evicted.Load() }
