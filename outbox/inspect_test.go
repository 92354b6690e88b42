package outbox

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// deadLettered leaves q with 2 queued records and the dead letters 2, 3, 4
// (of 0..4) moved with the reason "refused".
func deadLettered(t *testing.T, q *Queue[int]) {
	t.Helper()
	ctx := testCtx(t)
	if err := q.SendBatch(ctx, seq(0, 5)); err != nil {
		t.Fatal(err)
	}
	l, err := q.Claim(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DeadLetter(ctx, map[int]string{2: "refused", 3: "refused", 4: "refused"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestInspect(t *testing.T) {
	t.Run("reads tables, counts, the oldest record and dead letters beside the open queue", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		start := time.Now().Add(-time.Second)
		q := mustOpen(t, path, "events", Options[int]{})
		deadLettered(t, q)
		mustOpen(t, path, "other", Options[int]{})
		in, err := Inspect(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		tables, err := in.Tables(ctx)
		if err != nil || !slices.Equal(tables, []string{"events", "other"}) {
			t.Fatalf("Tables = %v, %v", tables, err)
		}
		st, err := in.Stats(ctx, "events")
		if err != nil {
			t.Fatal(err)
		}
		if st.Records != 2 || st.DeadLetters != 3 || st.Oldest.Before(start.Truncate(time.Second)) || st.Oldest.After(time.Now()) {
			t.Fatalf("Stats = %+v, want 2 records, 3 dead letters, stored since %v", st, start)
		}
		if st, err := in.Stats(ctx, "other"); err != nil || st.Records != 0 || !st.Oldest.IsZero() || st.DeadLetters != 0 {
			t.Fatalf("Stats of an empty table without dead letters = %+v, %v", st, err)
		}
		dead, err := in.DeadLetters(ctx, "events", 2)
		if err != nil || len(dead) != 2 {
			t.Fatalf("DeadLetters(2) = %v, %v", dead, err)
		}
		if dead[0].Reason != "refused" || string(dead[0].Data) != "2" || dead[1].ID <= dead[0].ID || dead[0].Moved.IsZero() {
			t.Fatalf("DeadLetters = %+v, want 2 then 3, oldest first", dead)
		}
		if all, err := in.DeadLetters(ctx, "events", 0); err != nil || len(all) != 3 {
			t.Fatalf("DeadLetters(0) = %d, %v; want all 3", len(all), err)
		}
		if files := in.Files(); len(files) != 3 || files[0].Path != path || files[2].Path != DLQPath(path) {
			t.Fatalf("Files = %+v, want the file, its WAL and its dead-letter file", files)
		}
		if n, err := q.DeadLetterLen(ctx); err != nil || n != 3 {
			t.Fatalf("Queue.DeadLetterLen = %d, %v", n, err)
		}
	})

	t.Run("creates no file: a missing queue file is an error, a missing dead-letter file means none", func(t *testing.T) {
		ctx := testCtx(t)
		dir := t.TempDir()
		if _, err := Inspect(ctx, filepath.Join(dir, "none.db")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Inspect of a missing file: %v, want os.ErrNotExist", err)
		}
		path := filepath.Join(dir, "q.db")
		q := mustOpen(t, path, "events", Options[int]{})
		if n, err := q.DeadLetterLen(ctx); err != nil || n != 0 {
			t.Fatalf("Queue.DeadLetterLen without a dead-letter file = %d, %v", n, err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		in, err := Inspect(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := in.DeadLetterLen(ctx, "events"); err != nil || n != 0 {
			t.Fatalf("DeadLetterLen = %d, %v", n, err)
		}
		if dead, err := in.DeadLetters(ctx, "events", 10); err != nil || len(dead) != 0 {
			t.Fatalf("DeadLetters = %v, %v", dead, err)
		}
		if _, err := in.Stats(ctx, "missing"); err == nil {
			t.Fatal("Stats of a table that is not in the file: no error")
		}
		if n, err := PurgeDeadLetters(ctx, path, "events", time.Time{}, 0); err != nil || n != 0 {
			t.Fatalf("PurgeDeadLetters = %d, %v", n, err)
		}
		in.Close()
		// Reading a WAL file makes its -wal and -shm; nothing else is made.
		if names := dirNames(t, dir); slices.Contains(names, filepath.Base(DLQPath(path))) {
			t.Fatalf("the directory holds %v: a dead-letter file was created", names)
		}
	})
}

func TestPurgeDeadLetters(t *testing.T) {
	t.Run("purges by age and by limit, oldest first, beside the open queue", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "events", Options[int]{})
		deadLettered(t, q)
		if n, err := PurgeDeadLetters(ctx, path, "events", time.Now().Add(-time.Hour), 0); err != nil || n != 0 {
			t.Fatalf("purge of those moved over an hour ago: %d, %v; want none", n, err)
		}
		if n, err := PurgeDeadLetters(ctx, path, "events", time.Time{}, 2); err != nil || n != 2 {
			t.Fatalf("purge of at most 2: %d, %v", n, err)
		}
		in, err := Inspect(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		dead, err := in.DeadLetters(ctx, "events", 0)
		if err != nil || len(dead) != 1 || string(dead[0].Data) != "4" {
			t.Fatalf("left after purging 2: %+v, %v; want the newest, 4", dead, err)
		}
		if n, err := PurgeDeadLetters(ctx, path, "events", time.Now().Add(time.Second), 0); err != nil || n != 1 {
			t.Fatalf("purge of those moved before now: %d, %v", n, err)
		}
		if n, err := q.DeadLetterLen(ctx); err != nil || n != 0 {
			t.Fatalf("Queue.DeadLetterLen after the purge = %d, %v", n, err)
		}
	})
}
