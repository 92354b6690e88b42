package outbox

import (
	"context"
	"time"
)

// Relaxed acks. A commit that only deletes acknowledged records need not be
// fsynced: if a power cut undoes it, the records are delivered again (at
// least once), never lost. The committer runs such commits at
// synchronous=NORMAL and syncs them later: with the next commit that adds
// records (the WAL is synced whole), a checkpoint within ackSyncDelay, or
// the next ack once maxRelaxedAcks went unsynced.

// ackSyncDelay bounds how long an acknowledgement may stay unsynced.
const ackSyncDelay = time.Second

// maxRelaxedAcks bounds how many ack commits in a row may skip the fsync.
// A forwarder acks one batch at a time, so each commit holds at most one
// ack per sink: a power cut during a pure drain re-delivers at most this
// many batches per sink, plus the one in flight and the one delivered but
// not yet acknowledged. Syncing every fifth ack costs a drain of 1,000-record
// batches about 0.1 ms per 5,000 records.
const maxRelaxedAcks = 4

// ackSync is the state of relaxed acks. Only this file changes it; the
// committer's other files call its methods.
type ackSync struct {
	relaxed  bool // the connection runs at NORMAL now
	unsynced bool // a relaxed commit is not fsynced yet
	// relaxedAcks counts the relaxed commits since the last sync; at
	// maxRelaxedAcks the next ack commits synced. It bounds what a power cut
	// during a pure drain can send again (see maxRelaxedAcks).
	relaxedAcks int
}

// pending reports whether a relaxed commit waits for a sync.
func (a *ackSync) pending() bool { return a.unsynced }

// synced records that something made the whole WAL durable.
func (a *ackSync) synced() { a.unsynced, a.relaxedAcks = false, 0 }

// committed records a commit: relaxed, or at the queue's durability with
// wrote telling whether it wrote (and so synced) the WAL.
func (a *ackSync) committed(relaxed, wrote bool) {
	switch {
	case relaxed:
		a.unsynced = true
		a.relaxedAcks++
	case wrote:
		a.synced() // a full commit synced the whole WAL, earlier frames too
	case !a.unsynced:
		// A commit that changed nothing wrote no frame and synced nothing
		// (acks of rows that DropOldest had deleted already).
		a.relaxedAcks = 0
	}
}

// syncWAL makes relaxed commits durable: a checkpoint fsyncs the WAL before
// it copies frames back. If a reader kept it from copying anything, the WAL
// may not have been synced; the next timer tries again.
func (c *committer) syncWAL() {
	ctx := context.Background()
	if err := c.relax(ctx, false); err != nil {
		return
	}
	var busy, logFrames, done int
	err := c.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
	if err != nil || done < logFrames {
		c.ackSync.unsynced = true
		return
	}
	c.stats.synced.Add(1)
	c.ackSync.synced()
}

// relax sets the connection to NORMAL (true) or back to the queue's level.
func (c *committer) relax(ctx context.Context, on bool) error {
	if c.ackSync.relaxed == on {
		return nil
	}
	level := c.durability.pragma()
	if on {
		level = "NORMAL"
	}
	if _, err := c.conn.ExecContext(ctx, "PRAGMA synchronous="+level); err != nil {
		return dbError("set synchronous in", c.path, err)
	}
	c.ackSync.relaxed = on
	return nil
}

// ackOnly reports whether a batch may commit relaxed: it only deletes
// records that consumers acknowledged, the queue's durability syncs, and
// fewer than maxRelaxedAcks went unsynced. Inserts, Clear and dead-letter
// copies always commit at the queue's durability.
func (c *committer) ackOnly(batch []*writeOp) bool {
	if c.durability != DurabilityFull && c.durability != DurabilityExtra {
		return false
	}
	if c.ackSync.relaxedAcks >= maxRelaxedAcks {
		return false // this one syncs, and with it every relaxed one before
	}
	for _, op := range batch {
		if len(op.rows) > 0 || op.exec != nil || len(op.del) == 0 {
			return false
		}
	}
	return true
}
