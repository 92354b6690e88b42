package outbox

import (
	"context"
	"fmt"
	"sync/atomic"
)

// rowOverhead is what SQLite spends on a row beside its payload: the rowid,
// the created_at integer, the cell header and pointer. An estimate; the
// limit is checked against the pages really in use after every commit.
const rowOverhead = 24

// byteLimit is the disk limit (Options.MaxBytes): inserts that would take
// the pages in use past max are refused. used is re-read after every commit
// while a limit is set. Only this file changes it.
type byteLimit struct {
	max  int64        // 0: no limit
	used atomic.Int64 // written by the committer only; Queue.Full reads it
}

// set reports whether the file has a limit.
func (l *byteLimit) set() bool { return l.max > 0 }

// maxBytes is the limit; 0 when there is none.
func (l *byteLimit) maxBytes() int64 { return l.max }

// reached reports whether the pages in use reached the limit.
func (l *byteLimit) reached() bool { return l.max > 0 && l.used.Load() >= l.max }

// measureUsed reads how many bytes of the file hold live pages: the file's
// pages minus the free ones that SQLite will reuse before it grows the file.
func (c *committer) measureUsed(ctx context.Context) error {
	if !c.limit.set() {
		return nil
	}
	var pages, free, size int64
	err := c.conn.QueryRowContext(ctx,
		"SELECT page_count, freelist_count, page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()").
		Scan(&pages, &free, &size)
	if err != nil {
		return dbError("measure the size of", c.path, err)
	}
	c.limit.used.Store((pages - free) * size)
	return nil
}

// refuseOverLimit answers ops that would take the file past its disk limit
// with ErrQueueFull, and returns the ops that may run. Deletes always run:
// they are what makes room. A SendBatches group whose parts may drop gives
// way first: its DropOldest tables evict their oldest records, then its
// parts that may drop are left out; only if the parts that block still do
// not fit is the whole group refused.
func (c *committer) refuseOverLimit(batch []*writeOp) []*writeOp {
	limit := c.limit.max
	if limit <= 0 || len(batch) == 0 {
		return batch
	}
	if over := c.limit.used.Load() + batchPayload(batch) - limit; over > 0 {
		// A page frees only once every row on it is gone: evict a sixteenth
		// of the limit more than needed, so that pages really free and the
		// next evictions come a while later, not on every write.
		c.evictForBytes(batch, over+limit/16)
	}
	keep := batch[:0:0]
	used := c.limit.used.Load()
	for _, op := range batch {
		add := op.payloadBytes()
		if add > 0 && used+add > limit {
			add = op.leaveOutDroppable()
		}
		if add > 0 && used+add > limit {
			c.finish([]*writeOp{op}, fmt.Errorf("outbox: write %s: %w: %d bytes in use, %d more would pass the disk limit of %d bytes",
				c.path, ErrQueueFull, used, add, limit))
			continue
		}
		used += add
		keep = append(keep, op)
	}
	return keep
}

func batchPayload(batch []*writeOp) int64 {
	var n int64
	for _, op := range batch {
		n += op.payloadBytes()
	}
	return n
}

// leaveOutDroppable marks the group's parts that may drop as left out, and
// returns what the op still adds.
func (op *writeOp) leaveOutDroppable() int64 {
	for _, g := range op.group {
		if g.whenFull != Block {
			g.leftOut = true
		}
	}
	return op.payloadBytes()
}

// payloadBytes estimates what the op's new rows take on disk.
func (op *writeOp) payloadBytes() int64 {
	if op.leftOut {
		return 0
	}
	var n int64
	for _, r := range op.rows {
		n += int64(len(r.data)) + rowOverhead
	}
	for _, g := range op.group {
		n += g.payloadBytes()
	}
	return n
}
