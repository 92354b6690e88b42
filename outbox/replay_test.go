package outbox

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestReplayDeadLetters(t *testing.T) {
	t.Run("dead letters go back to the end of the queue, oldest first, and leave the DLQ", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 6))
		l, _ := q.Claim(ctx, 6)
		if err := l.DeadLetter(ctx, map[int]string{1: "refused", 3: "refused", 4: "refused"}); err != nil {
			t.Fatal(err)
		}
		l.Ack(ctx)
		q.Send(ctx, 100)

		n, err := q.ReplayDeadLetters(ctx, 2)
		if err != nil || n != 2 {
			t.Fatalf("replay with limit 2: %d, %v", n, err)
		}
		n, err = q.ReplayDeadLetters(ctx, 0)
		if err != nil || n != 1 {
			t.Fatalf("replay of the rest: %d, %v", n, err)
		}
		got, err := q.RecvBatch(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []int{100, 1, 3, 4}) {
			t.Fatalf("queue after replay = %v, want [100 1 3 4]", got)
		}
		var left int
		rawDB(t, DLQPath(path)).QueryRow(`SELECT count(*) FROM events_dlq`).Scan(&left)
		if left != 0 {
			t.Fatalf("%d dead letters left after replaying all", left)
		}
		if n, err := q.ReplayDeadLetters(ctx, 0); n != 0 || err != nil {
			t.Fatalf("replay of an empty DLQ: %d, %v", n, err)
		}
	})

	t.Run("replay respects MaxSize and moves nothing it cannot store", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "events", Options[int]{MaxSize: 3})
		q.SendBatch(ctx, seq(0, 3))
		l, _ := q.Claim(ctx, 3)
		l.DeadLetter(ctx, map[int]string{0: "x", 1: "x"})
		l.Ack(ctx)
		q.SendBatch(ctx, []int{7, 8})
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := q.ReplayDeadLetters(short, 0); err == nil {
			t.Fatal("replayed 2 records into a queue with room for 1")
		}
		var left int
		rawDB(t, DLQPath(path)).QueryRow(`SELECT count(*) FROM events_dlq`).Scan(&left)
		if left != 2 || mustLen(t, q) != 2 {
			t.Fatalf("after a refused replay: %d dead letters, %d queued; want 2 and 2", left, mustLen(t, q))
		}
	})
}
