package route

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/outbox"
)

func open(t *testing.T, path, table string, max int) *outbox.Queue[[]byte] {
	t.Helper()
	q, err := outbox.Open(context.Background(), path, table, outbox.Options[[]byte]{MaxSize: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func length(t *testing.T, q *outbox.Queue[[]byte]) int {
	t.Helper()
	n, err := q.Len(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRouter(t *testing.T) {
	t.Run("the first route that names the source wins, and no route is ErrNoRoute", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		a, b := open(t, path, "sink_a", 0), open(t, path, "sink_b", 0)
		r := New(nil)
		r.Install([]config.Route{{Sources: []string{"syslog"}, Sinks: []string{"a"}}, {Sources: []string{"http"}, Sinks: []string{"a", "b"}}},
			[]Sink{{Name: "a", Queue: a}, {Name: "b", Queue: b}})
		ctx := context.Background()
		if err := r.Append(ctx, "syslog", [][]byte{[]byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if err := r.Append(ctx, "http", [][]byte{[]byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if length(t, a) != 2 || length(t, b) != 1 {
			t.Fatalf("a holds %d, b %d; want 2 and 1", length(t, a), length(t, b))
		}
		if err := r.Append(ctx, "file", [][]byte{[]byte(`{}`)}); !errors.Is(err, ingest.ErrNoRoute) {
			t.Fatalf("a source no route takes: %v, want ErrNoRoute", err)
		}
		if r.Takes("file") || !r.Takes("http") {
			t.Fatal("Takes disagrees with the routes")
		}
	})

	t.Run("a request waiting on a full queue that a reload removes is routed by the new table", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		good, full := open(t, path, "sink_good", 0), open(t, path, "sink_full", 1)
		r := New(nil)
		r.Install(nil, []Sink{{Name: "good", Queue: good}, {Name: "full", Queue: full}})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := r.Append(ctx, "http", [][]byte{[]byte(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
		if got := r.Blocking(); len(got) != 1 || got[0] != "full" {
			t.Fatalf("Blocking = %v, want [full]", got)
		}
		done := make(chan error, 1)
		go func() { done <- r.Append(ctx, "http", [][]byte{[]byte(`{"n":2}`)}) }()
		select {
		case err := <-done:
			t.Fatalf("an append to a full block queue returned at once: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		r.Install(nil, []Sink{{Name: "good", Queue: good}}) // never waits
		full.Close()                                        // what the daemon does to a removed sink's queue
		if err := <-done; err != nil {
			t.Fatalf("the waiting append after the reload: %v", err)
		}
		if n := length(t, good); n != 2 {
			t.Fatalf("good holds %d records, want 2 (the second routed by the new table)", n)
		}
	})

	t.Run("a drop_newest sink that is full is counted and the others get the record", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		good, best := open(t, path, "sink_good", 0), open(t, path, "sink_best", 2)
		r := New(nil)
		r.Install(nil, []Sink{{Name: "good", Queue: good}, {Name: "best", Queue: best, WhenFull: outbox.DropNewest}})
		for range 5 {
			if err := r.Append(context.Background(), "http", [][]byte{[]byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
		}
		if length(t, good) != 5 || length(t, best) != 2 || r.Dropped("best") != 3 || r.Dropped("good") != 0 {
			t.Fatalf("good %d, best %d, dropped %d; want 5, 2, 3", length(t, good), length(t, best), r.Dropped("best"))
		}
		if got := r.Blocking(); len(got) != 0 {
			t.Fatalf("Blocking = %v: a best-effort sink does not block ingest", got)
		}
	})
}
