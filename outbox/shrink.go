package outbox

import (
	"context"
	"strconv"
	"time"
)

// The vacuum policy. SQLite keeps the pages of deleted records for reuse,
// so a file grown by a backlog stays large after the backlog drained. The
// committer gives the free pages back to the file system once the file has
// stayed mostly free for shrinkAfter: then incremental_vacuum only cuts the
// end off the file. (On a FIFO queue the live records sit at the end, so
// vacuuming a file that is still full would move every live page; the
// committer leaves such a file alone.)
//
// The wait keeps a queue that swings between empty and full every few
// seconds from shrinking and regrowing its file each time: a benchmark that
// drains and refills 50,000 records lost 15% of its ack rate to that churn.
const (
	shrinkMinFree   = 256 // pages (1 MiB at SQLite's 4 KiB pages): less is not worth a commit
	shrinkFreeShare = 0.8 // the share of pages that must be free
	shrinkAfter     = 5 * time.Second
	shrinkInterval  = time.Second // between checks
	shrinkStepPages = 64          // 256 KiB per step
)

// shrinker is the state of giving free pages back. Only this file changes
// it; the committer's loop asks it what to schedule.
type shrinker struct {
	lastCheck time.Time
	freeSince time.Time // since when every check found the file mostly free
	pending   bool      // a check was put off; the loop runs it later
	shrinking bool      // the file is being cut back, a step at a time
}

// putOff reports whether a check was put off: the loop runs it later.
func (s *shrinker) putOff() bool { return s.pending }

// stepping reports whether the file is being cut back: the loop runs a
// step whenever nothing else waits.
func (s *shrinker) stepping() bool { return s.shrinking }

// maybeShrink checks, at most once per shrinkInterval after commits that
// deleted records, whether the file is mostly free, and gives the free pages
// back once it has been so at every check for shrinkAfter. A check that
// comes too soon, or a file that must stay free a little longer, is looked
// at again by the loop.
func (c *committer) maybeShrink() {
	s := &c.shrink
	if time.Since(s.lastCheck) < shrinkInterval {
		s.pending = true // the last ack of a drain must not go unchecked
		return
	}
	s.lastCheck, s.pending = time.Now(), false
	ctx := context.Background()
	var pages, free int64
	err := c.conn.QueryRowContext(ctx, "SELECT page_count, freelist_count FROM pragma_page_count(), pragma_freelist_count()").Scan(&pages, &free)
	if err != nil || free < shrinkMinFree || float64(free) < shrinkFreeShare*float64(pages) {
		s.freeSince = time.Time{}
		return
	}
	if s.freeSince.IsZero() {
		s.freeSince = time.Now()
	}
	if time.Since(s.freeSince) < shrinkAfter {
		s.pending = true
		return
	}
	s.freeSince = time.Time{}
	s.shrinking = true // the loop cuts the file in steps, between commits
}

// shrinkStep gives back up to shrinkStepPages free pages; the loop calls it
// while shrinking and takes any waiting op first, so that a shrink delays a
// commit by one step at most (one step of a 300 MB file at once stalled
// ingest for 150 ms).
func (c *committer) shrinkStep() {
	if c.giveBack(context.Background(), shrinkStepPages, 1) == 0 {
		c.shrink.shrinking = false
		c.stats.shrinks.Add(1)
	}
}

// giveBack hands free pages back to the file system in at most steps steps
// of step pages, each made durable and cut off the file by a truncating
// checkpoint, and returns how many free pages are left. On a full disk the
// steps are small: one big step needs WAL room that the disk does not have.
//
// Relaxed acks count as synced only when something synced the WAL: a
// vacuum step committed at the queue's durability, or a checkpoint copied
// every frame back (it syncs the WAL first). A call that stops early (no
// free pages, an error) synced nothing, and syncWAL's timer must still run.
func (c *committer) giveBack(ctx context.Context, step, steps int) (left int) {
	full := c.relax(ctx, false) == nil && (c.durability == DurabilityFull || c.durability == DurabilityExtra)
	synced := false
	defer func() {
		if synced {
			c.ackSync.synced()
		}
	}()
	for range steps {
		if err := c.conn.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&left); err != nil || left == 0 {
			return left
		}
		rows, err := c.conn.QueryContext(ctx, "PRAGMA incremental_vacuum("+strconv.Itoa(step)+")")
		if err != nil {
			return left
		}
		for rows.Next() { // each freed page is a result row: read them all
		}
		failed := rows.Err() != nil
		if rows.Close() != nil {
			failed = true
		}
		if !failed && full {
			synced = true // a commit at FULL or EXTRA syncs the whole WAL
		}
		if c.truncateWAL(ctx) {
			synced = true
		}
		if failed {
			return left
		}
	}
	c.conn.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&left)
	return left
}

// truncateWAL checkpoints and, when no reader is using the WAL, truncates
// it, and reports whether every frame was copied back (so the WAL was
// synced first). A truncating checkpoint waits for readers through the busy
// handler, and the committer must not sleep while sends wait behind it:
// with a forwarder claiming every few milliseconds that sleep reached
// 255 ms. With the handler off for the call it copies what it can and
// leaves the rest to the next step.
func (c *committer) truncateWAL(ctx context.Context) (synced bool) {
	c.conn.ExecContext(ctx, "PRAGMA busy_timeout=0")
	defer c.conn.ExecContext(ctx, "PRAGMA busy_timeout="+strconv.Itoa(busyTimeoutMS))
	var busy, logFrames, done int
	err := c.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done)
	// -1 frames: the checkpoint did not run at all.
	return err == nil && logFrames >= 0 && done == logFrames
}
