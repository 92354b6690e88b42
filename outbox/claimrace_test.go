package outbox

import (
	"context"
	"slices"
	"testing"
)

// pausingReader is a store's claim reader that runs a hook once, after a
// read and before the claim checks the rows against the leases: the window
// in which an ack or a dead letter of another lease can commit.
type pausingReader struct {
	rowReader
	afterRead func()
}

func (r *pausingReader) read(ctx context.Context, table string, after, upTo int64, limit int) ([]storedRow, error) {
	rows, err := r.rowReader.read(ctx, table, after, upTo, limit)
	if f := r.afterRead; f != nil {
		r.afterRead = nil
		f()
	}
	return rows, err
}

// pauseNextRead makes the next claim on q run hook between its read and its
// lease check.
func pauseNextRead[T any](t *testing.T, q *Queue[T], hook func()) {
	t.Helper()
	real := q.store.reader
	if real == nil {
		t.Fatal("the store has no claimReader to wrap")
	}
	q.store.reader = &pausingReader{rowReader: real, afterRead: hook}
	t.Cleanup(func() { q.store.reader = real })
}

// twoLeasesOneReleased stores 1..10, leases 1-5 and 6-10, and releases
// 1-5, as a consumer does after its ack failed: the next claim reads from
// the head again, over the rows of the lease 6-10.
func twoLeasesOneReleased(t *testing.T) (*Queue[int], *Lease[int]) {
	t.Helper()
	ctx := testCtx(t)
	q := mustOpen(t, tempDB(t), "q", Options[int]{})
	if err := q.SendBatch(ctx, seq(1, 10)); err != nil {
		t.Fatal(err)
	}
	first, err := q.Claim(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	second, err := q.Claim(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	return q, second
}

func TestClaimRace(t *testing.T) {
	t.Run("a claim does not take records whose ack commits while it reads", func(t *testing.T) {
		ctx := testCtx(t)
		q, second := twoLeasesOneReleased(t)
		pauseNextRead(t, q, func() {
			if err := second.Ack(ctx); err != nil {
				t.Error(err)
			}
		})
		l, err := q.Claim(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Items(); !slices.Equal(got, seq(1, 5)) {
			t.Fatalf("claim took %v; 6-10 were acknowledged (deleted) between its read and its lease check", got)
		}
		if err := l.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if n := mustLen(t, q); n != 0 {
			t.Fatalf("Len = %d after both acks", n)
		}
	})

	t.Run("a claim does not take records dead-lettered while it reads", func(t *testing.T) {
		ctx := testCtx(t)
		q, second := twoLeasesOneReleased(t)
		pauseNextRead(t, q, func() {
			if err := second.DeadLetter(ctx, map[int]string{0: "refused", 4: "refused"}); err != nil {
				t.Error(err)
			}
		})
		l, err := q.Claim(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Items(); !slices.Equal(got, seq(1, 5)) {
			t.Fatalf("claim took %v; 6 and 10 were dead-lettered, 7-9 are still leased", got)
		}
	})

	t.Run("a claim does not take records cleared while it reads", func(t *testing.T) {
		ctx := testCtx(t)
		q, _ := twoLeasesOneReleased(t)
		pauseNextRead(t, q, func() {
			if err := q.Clear(ctx); err != nil {
				t.Error(err)
			}
		})
		l, err := q.claimNow(ctx, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if l != nil {
			t.Fatalf("claim took %v from a cleared queue", l.Items())
		}
		if err := q.Send(ctx, 11); err != nil {
			t.Fatal(err)
		}
		if l, err := q.Claim(ctx, 10); err != nil || !slices.Equal(l.Items(), []int{11}) {
			t.Fatalf("claim after the clear: %v, %v", l, err)
		}
	})
}
