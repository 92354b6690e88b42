package outbox

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestMarks(t *testing.T) {
	ctx := testCtx(t)
	t.Run("stores marks with the records and reads them back", func(t *testing.T) {
		path := tempDB(t)
		q := mustOpen(t, path, "events", Options[int]{})
		err := SendMarked(ctx, []Target[int]{{Queue: q, Items: []int{1, 2, 3}}},
			[]Mark{{Key: "file/1", Value: []byte("30")}, {Key: "journal/x", Value: []byte("c")}})
		if err != nil {
			t.Fatal(err)
		}
		if err := SendMarked(ctx, []Target[int]{{Queue: q, Items: []int{4}}}, []Mark{{Key: "file/1", Value: []byte("40")}}); err != nil {
			t.Fatal(err)
		}
		marks, err := q.Marks(ctx, "file/")
		if err != nil {
			t.Fatal(err)
		}
		if len(marks) != 1 || string(marks["file/1"]) != "40" {
			t.Fatalf("marks = %q, want only file/1 = 40", marks)
		}
		if got := drain(t, q); !slices.Equal(got, []int{1, 2, 3, 4}) {
			t.Fatalf("records = %v", got)
		}
		q.Close()
		q = mustOpen(t, path, "events", Options[int]{})
		if marks, _ = q.Marks(ctx, ""); len(marks) != 2 || string(marks["journal/x"]) != "c" {
			t.Fatalf("after reopen: marks = %q", marks)
		}
	})
	t.Run("deletes a mark given nil", func(t *testing.T) {
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		for _, v := range [][]byte{[]byte("1"), nil} {
			if err := SendMarked(ctx, []Target[int]{{Queue: q}}, []Mark{{Key: "k", Value: v}}); err != nil {
				t.Fatal(err)
			}
		}
		if marks, _ := q.Marks(ctx, ""); len(marks) != 0 {
			t.Fatalf("marks = %q, want none", marks)
		}
	})
	t.Run("stores marks when every target dropped its records", func(t *testing.T) {
		q := mustOpen(t, tempDB(t), "events", Options[int]{MaxSize: 2})
		if err := q.SendBatch(ctx, []int{1, 2}); err != nil {
			t.Fatal(err)
		}
		targets := []Target[int]{{Queue: q, Items: []int{3}, WhenFull: DropNewest}}
		if err := SendMarked(ctx, targets, []Mark{{Key: "k", Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
		if targets[0].Dropped != 1 {
			t.Fatalf("dropped = %d, want 1", targets[0].Dropped)
		}
		if marks, _ := q.Marks(ctx, "k"); string(marks["k"]) != "v" {
			t.Fatalf("marks = %q", marks)
		}
	})
	t.Run("a full block queue stores neither records nor marks", func(t *testing.T) {
		q := mustOpen(t, tempDB(t), "events", Options[int]{MaxSize: 1})
		if err := q.Send(ctx, 1); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithCancel(ctx)
		cancel()
		err := SendMarked(short, []Target[int]{{Queue: q, Items: []int{2}}}, []Mark{{Key: "k", Value: []byte("v")}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if marks, _ := q.Marks(ctx, ""); len(marks) != 0 {
			t.Fatalf("marks = %q, want none", marks)
		}
	})
	t.Run("reads only keys with the prefix, case and wildcards exact", func(t *testing.T) {
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		keys := []string{"a_b/1", "aXb/1", "A_B/2", "a_b"}
		var marks []Mark
		for _, k := range keys {
			marks = append(marks, Mark{Key: k, Value: []byte(k)})
		}
		if err := SendMarked(ctx, []Target[int]{{Queue: q}}, marks); err != nil {
			t.Fatal(err)
		}
		got, err := q.Marks(ctx, "a_b/")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got["a_b/1"] == nil {
			t.Fatalf("marks = %q, want only a_b/1", got)
		}
	})
	t.Run("the marks table is no queue", func(t *testing.T) {
		path := tempDB(t)
		if _, err := Open(ctx, path, "OUTBOX_MARKS", Options[int]{}); !errors.Is(err, ErrInvalidTableName) {
			t.Fatalf("open outbox_marks as a queue: err = %v", err)
		}
		q := mustOpen(t, path, "events", Options[int]{})
		if err := SendMarked(ctx, []Target[int]{{Queue: q}}, []Mark{{Key: "k", Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
		in, err := Inspect(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		tables, err := in.Tables(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tables, []string{"events"}) {
			t.Fatalf("tables = %v, want [events]", tables)
		}
	})
}

// TestMarksCrash kills a child that stores numbered records with a mark
// saying how many it stored: after every kill, each writer's records are
// exactly 0 .. mark-1, none missing and none beyond.
func TestMarksCrash(t *testing.T) {
	path := tempDB(t)
	for round := range 5 {
		cmd, lines := startChild(t, "marked", path)
		killAfter(t, cmd, lines, 500+rand.IntN(2000))
		q := mustOpen(t, path, "events", Options[int]{})
		ctx := testCtx(t)
		marks, err := q.Marks(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		l, err := q.Claim(ctx, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		per := map[int][]int{}
		for _, v := range l.Items() {
			per[v/markedSpan] = append(per[v/markedSpan], v%markedSpan)
		}
		l.Release(ctx)
		for w := range markedWriters {
			n, _ := strconv.Atoi(string(marks["w"+strconv.Itoa(w)]))
			got := per[w]
			if len(got) != n || (n > 0 && got[n-1] != n-1) {
				t.Fatalf("round %d writer %d: mark %d, records %d (last %v)", round, w, n, len(got), got[max(0, len(got)-1):])
			}
		}
		t.Logf("round %d: marks %q", round, marks)
		q.Close()
	}
}

const (
	markedWriters = 4
	markedSpan    = 1 << 24
)

// runMarkedChild stores batches of numbered records for each writer with
// its mark (the count stored so far), until killed. A restart goes on from
// the stored mark, as an input reading a file would.
func runMarkedChild(ctx context.Context, q *Queue[int], say func(string, ...any)) int {
	marks, err := q.Marks(ctx, "w")
	if err != nil {
		say("error %v", err)
		return 1
	}
	done := make(chan struct{})
	for w := range markedWriters {
		key := "w" + strconv.Itoa(w)
		next, _ := strconv.Atoi(string(marks[key]))
		go func() {
			for {
				n := 1 + rand.IntN(50)
				items := make([]int, n)
				for i := range items {
					items[i] = w*markedSpan + next + i
				}
				next += n
				err := SendMarked(ctx, []Target[int]{{Queue: q, Items: items}}, []Mark{{Key: key, Value: []byte(strconv.Itoa(next))}})
				if err != nil {
					say("error %v", err)
					close(done)
					return
				}
				ids := make([]string, n)
				for i, v := range items {
					ids[i] = strconv.Itoa(v)
				}
				say("acked %s", strings.Join(ids, " "))
			}
		}()
	}
	<-done
	return 1
}
