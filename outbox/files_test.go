package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/glebarez/go-sqlite"
)

// rawDB opens the file the way an operator's tool would, beside the queue.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSchema(t *testing.T) {
	t.Run("the table is what an operator expects to find with the sqlite3 shell", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "events", Options[string]{})
		if err := q.Send(ctx, "hello"); err != nil {
			t.Fatal(err)
		}
		db := rawDB(t, path)
		var ddl string
		if err := db.QueryRow(`SELECT sql FROM sqlite_master WHERE type='table' AND name='events'`).Scan(&ddl); err != nil {
			t.Fatal(err)
		}
		norm := strings.Join(strings.Fields(strings.ToLower(strings.ReplaceAll(ddl, "`", `"`))), " ")
		for _, want := range []string{`"id" integer primary key autoincrement`, `"data" blob not null`, `"created_at" integer not null`} {
			if !strings.Contains(norm, want) {
				t.Errorf("schema %q lacks %q", ddl, want)
			}
		}
		var mode string
		db.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
		if mode != "wal" {
			t.Errorf("journal_mode = %q, want wal", mode)
		}
		var data []byte
		var created int64
		if err := db.QueryRow(`SELECT data, created_at FROM events`).Scan(&data, &created); err != nil {
			t.Fatal(err)
		}
		if string(data) != `"hello"` || created == 0 {
			t.Errorf("row = %q, %d", data, created)
		}
	})

	t.Run("each durability level sets its synchronous pragma and keeps records across a reopen", func(t *testing.T) {
		ctx := testCtx(t)
		for d, want := range map[Durability]int{DurabilityOff: 0, DurabilityNormal: 1, DurabilityFull: 2, DurabilityExtra: 3} {
			path := tempDB(t)
			q, err := Open(ctx, path, "events", Options[int]{Durability: d})
			if err != nil {
				t.Fatal(err)
			}
			var got int
			if err := q.store.db.QueryRow(`PRAGMA synchronous`).Scan(&got); err != nil || got != want {
				t.Errorf("%s: synchronous = %d (%v), want %d", d, got, err, want)
			}
			q.SendBatch(ctx, []int{1, 2})
			q.Close()
			q = mustOpen(t, path, "events", Options[int]{Durability: d})
			if n := mustLen(t, q); n != 2 {
				t.Errorf("%s: Len after reopen = %d", d, n)
			}
		}
	})

	t.Run("a second queue on the same file with another durability is refused", func(t *testing.T) {
		path := tempDB(t)
		mustOpen(t, path, "a", Options[int]{})
		if _, err := Open(testCtx(t), path, "b", Options[int]{Durability: DurabilityOff}); err == nil {
			t.Fatal("opened one file with two durability levels")
		}
	})

	t.Run("durability names parse both ways", func(t *testing.T) {
		for _, d := range benchLevels {
			got, err := ParseDurability(strings.ToUpper(d.String()))
			if err != nil || got != d {
				t.Errorf("ParseDurability(%s) = %v, %v", d, got, err)
			}
		}
		if _, err := ParseDurability("fast"); err == nil {
			t.Error("ParseDurability(fast) succeeded")
		}
	})
}

func TestBadFiles(t *testing.T) {
	t.Run("a file that is not a database is named in the error and left unchanged", func(t *testing.T) {
		path := tempDB(t)
		content := []byte("this is somebody's notes, not a database\n")
		os.WriteFile(path, content, 0o600)
		_, err := Open(testCtx(t), path, "events", Options[int]{})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v, want ErrCorrupt naming %s", err, path)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
			t.Fatal("the file was changed")
		}
	})

	t.Run("a database whose pages are garbage is named in the error and left unchanged", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q, _ := Open(ctx, path, "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 500))
		q.Close()
		os.Remove(path + "-wal")
		os.Remove(path + "-shm")
		content, _ := os.ReadFile(path)
		for i := 100; i < len(content); i++ { // keep the 100-byte header, wreck the rest
			content[i] = byte(i * 7)
		}
		os.WriteFile(path, content, 0o600)
		_, err := Open(ctx, path, "events", Options[int]{})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v, want ErrCorrupt naming %s", err, path)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
			t.Fatal("the file was changed")
		}
	})

	t.Run("a directory that does not exist is a clear error", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "missing", "q.db")
		if _, err := Open(testCtx(t), path, "events", Options[int]{}); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v", err)
		}
	})
}

type point struct {
	N int `json:"n"`
}

func TestDeadLetters(t *testing.T) {
	setup := func(t *testing.T) (string, *Queue[point]) {
		ctx := testCtx(t)
		path := tempDB(t)
		raw := mustOpen(t, path, "events", Options[[]byte]{})
		raw.SendBatch(ctx, [][]byte{[]byte(`{"n":1}`), []byte(`not json`), []byte(`{"n":3}`)})
		return path, mustOpen(t, path, "events", Options[point]{})
	}

	t.Run("a record that cannot be decoded moves to the DLQ file and the queue flows on", func(t *testing.T) {
		ctx := testCtx(t)
		path, q := setup(t)
		if v, ok, err := q.Recv(ctx); err != nil || !ok || v.N != 1 {
			t.Fatalf("first Recv = %v, %v, %v", v, ok, err)
		}
		_, ok, err := q.Recv(ctx)
		if !errors.Is(err, ErrDecode) || ok {
			t.Fatalf("second Recv = %v, %v; want ErrDecode", ok, err)
		}
		if v, ok, err := q.Recv(ctx); err != nil || !ok || v.N != 3 {
			t.Fatalf("third Recv = %v, %v, %v", v, ok, err)
		}
		if n := mustLen(t, q); n != 0 {
			t.Fatalf("Len = %d", n)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), "q.dlq.db")); err != nil {
			t.Fatalf("DLQ file: %v", err)
		}
		db := rawDB(t, DLQPath(path))
		var id, orig, created, moved int64
		var data []byte
		var msg string
		err = db.QueryRow(`SELECT id, original_id, data, error_message, created_at, moved_at FROM events_dlq`).
			Scan(&id, &orig, &data, &msg, &created, &moved)
		if err != nil {
			t.Fatal(err)
		}
		if orig != 2 || string(data) != "not json" || msg == "" || created == 0 || moved < created {
			t.Fatalf("DLQ row = %d %d %q %q %d %d", id, orig, data, msg, created, moved)
		}
	})

	t.Run("claim quarantines the poison record and hands out the good ones next", func(t *testing.T) {
		ctx := testCtx(t)
		_, q := setup(t)
		if _, err := q.Claim(ctx, 10); !errors.Is(err, ErrDecode) {
			t.Fatalf("Claim err = %v, want ErrDecode", err)
		}
		l, err := q.Claim(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Items(); len(got) != 2 || got[0].N != 1 || got[1].N != 3 {
			t.Fatalf("claimed %v", got)
		}
	})

	t.Run("a record that cannot be encoded is refused and nothing is written", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[any]{})
		err := q.SendBatch(ctx, []any{1, func() {}})
		if !errors.Is(err, ErrEncode) {
			t.Fatalf("err = %v, want ErrEncode", err)
		}
		if n := mustLen(t, q); n != 0 {
			t.Fatalf("Len = %d: part of the batch was written", n)
		}
	})

	t.Run("moving the same record twice leaves one copy in the DLQ", func(t *testing.T) {
		ctx := testCtx(t)
		path, q := setup(t)
		row := storedRow{id: 2, data: []byte("not json")}
		letters := []deadLetter{{storedRow: row, reason: "first"}}
		if err := q.moveToDLQ(ctx, letters); err != nil {
			t.Fatal(err)
		}
		// As after a crash between the copy and the delete.
		if err := q.moveToDLQ(ctx, letters); err != nil {
			t.Fatal(err)
		}
		var n int
		rawDB(t, DLQPath(path)).QueryRow(`SELECT COUNT(*) FROM events_dlq`).Scan(&n)
		if n != 1 {
			t.Fatalf("%d DLQ rows, want 1", n)
		}
	})
}

func TestDLQPath(t *testing.T) {
	for in, want := range map[string]string{"/a/q.db": "/a/q.dlq.db", "/a/q": "/a/q.dlq.db", "q.sqlite": "q.sqlite.dlq.db"} {
		if got := DLQPath(in); got != want {
			t.Errorf("DLQPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecodeToDLQ stores arbitrary bytes and receives them through the JSON
// codec: every record either decodes or lands in the DLQ byte for byte, and
// the queue never blocks on it.
func FuzzDecodeToDLQ(f *testing.F) {
	for _, s := range []string{`{"n":1}`, `not json`, ``, `{"n":"x"}`, "\x00\xff", `[1,2]`, `{"n":1e999}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "f.db")
		raw, err := Open(ctx, path, "events", Options[[]byte]{Durability: DurabilityOff})
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SendBatch(ctx, [][]byte{data, []byte(`{"n":7}`)})
		q, err := Open(ctx, path, "events", Options[point]{Durability: DurabilityOff})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		_, ok, err := q.Recv(ctx)
		switch {
		case err == nil && ok:
			if _, derr := (JSONCodec[point]{}).Unmarshal(data); derr != nil {
				t.Fatalf("Recv decoded %q, the codec refuses it: %v", data, derr)
			}
		case errors.Is(err, ErrDecode):
			var got []byte
			db, _ := sql.Open("sqlite", DLQPath(path))
			defer db.Close()
			if err := db.QueryRow(`SELECT data FROM events_dlq WHERE original_id = 1`).Scan(&got); err != nil {
				t.Fatalf("DLQ row: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("DLQ holds %q, stored %q", got, data)
			}
		default:
			t.Fatalf("Recv = %v, %v", ok, err)
		}
		v, ok, err := q.Recv(ctx)
		if err != nil || !ok || v.N != 7 {
			t.Fatalf("the record after it: %v, %v, %v", v, ok, err)
		}
	})
}

func TestOddPaths(t *testing.T) {
	t.Run("a directory named with #, % and ? holds the files, and no other file is opened", func(t *testing.T) {
		ctx := testCtx(t)
		parent := t.TempDir()
		dir := filepath.Join(parent, "a#b%41c?d=e")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "q.db")
		q := mustOpen(t, path, "q", Options[string]{})
		if err := q.SendBatch(ctx, []string{"one", "two"}); err != nil {
			t.Fatal(err)
		}
		l, err := q.Claim(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.DeadLetter(ctx, map[int]string{0: "refused"}); err != nil {
			t.Fatal(err)
		}
		q.Close()
		for _, f := range []string{path, DLQPath(path)} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("no file at %s: %v", f, err)
			}
		}
		entries, _ := os.ReadDir(parent)
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("the parent holds %q, want only the directory", names)
		}
		q = mustOpen(t, path, "q", Options[string]{})
		if got := drain(t, q); len(got) != 1 || got[0] != "two" {
			t.Fatalf("after a reopen: %q", got)
		}
	})
}
