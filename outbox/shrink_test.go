package outbox

import (
	"bytes"
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
