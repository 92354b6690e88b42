package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"testing"
	"time"
)

func TestShrink(t *testing.T) {
	t.Run("a drained backlog gives its disk space back", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "q", Options[[]byte]{Durability: DurabilityNormal})
		size := func() int64 {
			var n int64
			for _, f := range []string{path, path + "-wal"} {
				if info, err := os.Stat(f); err == nil {
					n += info.Size()
				}
			}
			return n
		}
		q.Send(ctx, []byte("warm-up"))
		l, _ := q.Claim(ctx, 1)
		l.Ack(ctx)
		idle := size()
		rec := bytes.Repeat([]byte("r"), 256)
		batch := make([][]byte, 1000)
		for i := range batch {
			batch[i] = rec
		}
		for range 100 {
			if err := q.SendBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		full := size()
		for {
			l, err := q.Claim(ctx, 5000)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Ack(ctx); err != nil {
				t.Fatal(err)
			}
			if n, _ := q.Len(ctx); n == 0 {
				break
			}
		}
		deadline := time.Now().Add(15 * time.Second) // the policy waits 5s
		for size() >= 2*idle && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		after := size()
		t.Logf("idle %d bytes, 100,000 records of 256 bytes %d, drained %d", idle, full, after)
		if after >= 2*idle {
			t.Fatalf("after the drain the file holds %d bytes; idle it held %d", after, idle)
		}
		if err := q.Send(ctx, rec); err != nil {
			t.Fatalf("send after the shrink: %v", err)
		}
	})
}

func TestShrinkDoesNotWaitForReaders(t *testing.T) {
	t.Run("a reader holding the WAL does not hold up a shrink, nor the sends behind it", func(t *testing.T) {
		// Each shrink step ends in a truncating checkpoint, which waits
		// for readers through the busy handler (10 s). The committer must
		// not: sends queue behind it. A forwarder claiming every few
		// milliseconds held sends up to 255 ms that way.
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		rec := bytes.Repeat([]byte("r"), 256)
		batch := make([][]byte, 1000)
		for i := range batch {
			batch[i] = rec
		}
		for range 20 {
			if err := q.SendBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		for n := mustLen(t, q); n > 0; n = mustLen(t, q) {
			l, err := q.Claim(ctx, 5000)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// A reader on another connection keeps its snapshot open (a
		// deferred BEGIN: the pool's BeginTx would take the write lock).
		reader, err := q.store.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer reader.Close()
		if _, err := reader.ExecContext(ctx, "BEGIN DEFERRED"); err != nil {
			t.Fatal(err)
		}
		defer reader.ExecContext(ctx, "ROLLBACK")
		var n int
		if err := reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM "q"`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for q.store.commit.stats.shrinks.Load() == 0 {
			if time.Since(start) > shrinkAfter+5*time.Second {
				t.Fatalf("no shrink %v after the drain: a step waits for the reader", time.Since(start))
			}
			if err := q.Send(ctx, rec); err != nil { // keeps the committer's checks going
				t.Fatal(err)
			}
			l, err := q.Claim(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Ack(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// bareCommitter is a committer on a fresh file without its loop, so a test
// can call its methods and read its fields from one goroutine.
func bareCommitter(t *testing.T) (*committer, *sql.DB) {
	t.Helper()
	path := tempDB(t)
	db, err := sql.Open("sqlite", dsn(path, DurabilityFull))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &committer{path: path, durability: DurabilityFull, conn: conn}
	mustExec(t, c.conn, `CREATE TABLE r (id INTEGER PRIMARY KEY, data BLOB)`)
	return c, db
}

func mustExec(t *testing.T, conn interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, query string) {
	t.Helper()
	if _, err := conn.ExecContext(testCtx(t), query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// relaxedCommit makes a commit without an fsync, as an ack does.
func relaxedCommit(t *testing.T, c *committer) {
	t.Helper()
	if err := c.relax(testCtx(t), true); err != nil {
		t.Fatal(err)
	}
	mustExec(t, c.conn, `INSERT INTO r (data) VALUES (x'00')`)
	c.unsynced = true
}

// freePages leaves the file with many free pages.
func freePages(t *testing.T, c *committer) {
	t.Helper()
	mustExec(t, c.conn, `INSERT INTO r (data) SELECT zeroblob(4000) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) SELECT i FROM n)`)
	mustExec(t, c.conn, `DELETE FROM r`)
}

func TestGiveBackSync(t *testing.T) {
	t.Run("a call that finds no free page leaves relaxed acks unsynced", func(t *testing.T) {
		c, _ := bareCommitter(t)
		relaxedCommit(t, c)
		if left := c.giveBack(testCtx(t), shrinkStepPages, 1); left != 0 {
			t.Fatalf("%d free pages on a new file", left)
		}
		if !c.unsynced {
			t.Fatal("giveBack synced nothing, yet the relaxed commit counts as synced")
		}
	})

	t.Run("a step whose checkpoint copies the whole WAL marks them synced", func(t *testing.T) {
		c, _ := bareCommitter(t)
		freePages(t, c)
		relaxedCommit(t, c)
		c.giveBack(testCtx(t), shrinkStepPages, 1)
		if c.unsynced {
			t.Fatal("the checkpoint synced the WAL, yet the relaxed commit counts as unsynced")
		}
	})

}
