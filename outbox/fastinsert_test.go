package outbox

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestFastInsert(t *testing.T) {
	t.Run("the committer reaches the driver's SQLite handle", func(t *testing.T) {
		// If a driver upgrade renames the fields handleOf reads, inserts
		// quietly fall back to database/sql at half the speed; fail here
		// instead.
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		if q.store.commit.fast == nil {
			t.Fatal("committer has no fastInsert: handleOf no longer understands the driver's connection")
		}
		if q.store.reader == nil {
			t.Fatal("store has no claimReader: handleOf no longer understands the driver's connection")
		}
	})

	t.Run("records of every size arrive byte for byte and in order", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		// 341 = 256+64+16+4+1: every prepared chunk size is used. Empty
		// records must stay empty blobs (the column is NOT NULL); records
		// bigger than the kept C buffer make it grow and shrink back.
		var in [][]byte
		for i := range 341 {
			switch {
			case i%100 == 7:
				in = append(in, []byte{})
			case i == 100 || i == 300:
				in = append(in, bytes.Repeat([]byte{byte(i)}, 3*blobsKeep))
			default:
				in = append(in, fmt.Appendf(nil, "record %d", i))
			}
		}
		if err := q.SendBatch(ctx, in); err != nil {
			t.Fatal(err)
		}
		if err := q.Send(ctx, []byte("after the big ones")); err != nil {
			t.Fatal(err)
		}
		in = append(in, []byte("after the big ones"))
		out := drain(t, q)
		if len(out) != len(in) {
			t.Fatalf("got %d records, want %d", len(out), len(in))
		}
		for i := range in {
			if !bytes.Equal(out[i], in[i]) {
				t.Fatalf("record %d: got %d bytes %.20q, want %d bytes %.20q", i, len(out[i]), out[i], len(in[i]), in[i])
			}
		}
		if c := q.store.commit.fast.blobsCap; c != blobsKeep {
			t.Errorf("C buffer is %d bytes after the batch, want it back at %d", c, blobsKeep)
		}
	})

	t.Run("a claim leaves no read transaction open that would hold back a checkpoint", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		for i := range 3000 {
			if err := q.Send(ctx, fmt.Appendf(nil, "record %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		l, err := q.Claim(ctx, 10) // stops reading after 10 of 3,000 rows
		if err != nil || l.Len() != 10 {
			t.Fatalf("Claim: %v, %v", l, err)
		}
		var busy, logFrames, done int
		if err := q.store.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
			t.Fatal(err)
		}
		if busy != 0 || done != logFrames {
			t.Fatalf("checkpoint blocked after a claim: busy=%d, %d of %d frames", busy, done, logFrames)
		}
	})

	t.Run("each record keeps its creation time", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		before := time.Now().Add(-time.Second)
		if err := q.SendBatch(ctx, [][]byte{[]byte("a"), []byte("b")}); err != nil {
			t.Fatal(err)
		}
		at, ok, err := q.Oldest(ctx)
		if err != nil || !ok {
			t.Fatalf("Oldest: %v, %v", ok, err)
		}
		if at.Before(before) || at.After(time.Now().Add(time.Second)) {
			t.Fatalf("oldest record created at %v, want about now", at)
		}
	})

	t.Run("an SQLite error keeps its code for dbError", func(t *testing.T) {
		err := dbError("write", "x.db", &sqliteError{code: sqliteFull, msg: "database or disk is full"})
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("dbError(SQLITE_FULL) = %v, want ErrDiskFull", err)
		}
		err = dbError("write", "x.db", &sqliteError{code: 11 | 1<<8, msg: "database disk image is malformed"})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("dbError(SQLITE_CORRUPT_VTAB) = %v, want ErrCorrupt", err)
		}
	})
}
