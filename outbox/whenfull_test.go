package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestSendTargetsWhenFull(t *testing.T) {
	t.Run("a full DropNewest queue is left out while the other queue gets every record", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		healthy := mustOpen(t, path, "healthy", Options[int]{})
		dead := mustOpen(t, path, "dead", Options[int]{MaxSize: 10})
		dropped := 0
		for i := range 30 {
			targets := []Target[int]{{Queue: healthy, Items: []int{i}}, {Queue: dead, Items: []int{i}, WhenFull: DropNewest}}
			if err := SendTargets(ctx, targets); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			dropped += targets[1].Dropped
		}
		if got := drain(t, healthy); !slices.Equal(got, seq(0, 30)) {
			t.Fatalf("healthy = %v, want 0..29", got)
		}
		if got := drain(t, dead); !slices.Equal(got, seq(0, 10)) {
			t.Fatalf("dead = %v, want the first ten, 0..9", got)
		}
		if dropped != 20 {
			t.Fatalf("Dropped adds up to %d, want 20", dropped)
		}
	})

	t.Run("a full DropOldest queue gives way with its oldest records and keeps the newest", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		healthy := mustOpen(t, path, "healthy", Options[int]{})
		dead := mustOpen(t, path, "dead", Options[int]{MaxSize: 10})
		for i := range 30 {
			targets := []Target[int]{{Queue: healthy, Items: []int{i}}, {Queue: dead, Items: []int{i}, WhenFull: DropOldest}}
			if err := SendTargets(ctx, targets); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			if targets[1].Dropped != 0 {
				t.Fatalf("send %d: %d new records dropped, want the oldest to give way", i, targets[1].Dropped)
			}
			if n := mustLen(t, dead); n > 10 {
				t.Fatalf("dead holds %d records, MaxSize 10", n)
			}
		}
		if got := drain(t, healthy); !slices.Equal(got, seq(0, 30)) {
			t.Fatalf("healthy = %v, want 0..29", got)
		}
		if got := drain(t, dead); !slices.Equal(got, seq(20, 10)) {
			t.Fatalf("dead = %v, want the newest ten, 20..29", got)
		}
		if n := dead.Evicted(); n != 20 {
			t.Fatalf("Evicted %d, want 20", n)
		}
	})

	t.Run("DropOldest under concurrency never passes MaxSize and a leased record's ack still works", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "q", Options[int]{MaxSize: 50})
		if err := q.SendBatch(ctx, seq(0, 50)); err != nil {
			t.Fatal(err)
		}
		lease, err := q.Claim(ctx, 5) // 0..4 are in flight, and the oldest
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 8)
		for w := range 8 {
			go func() {
				for i := range 25 {
					err := SendTargets(ctx, []Target[int]{{Queue: q, Items: []int{1000 + w*100 + i}, WhenFull: DropOldest}})
					if err == nil && mustLen(t, q) > 50 {
						err = fmt.Errorf("Len %d > MaxSize 50", mustLen(t, q))
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if err := lease.Ack(ctx); err != nil {
			t.Fatalf("ack of a lease whose records gave way: %v", err)
		}
		if n := mustLen(t, q); n != 50 {
			t.Fatalf("Len %d after 200 DropOldest sends into a full queue of 50, want 50", n)
		}
		if got := drain(t, q); len(got) != 50 || slices.Contains(got, 0) {
			t.Fatalf("drained %d records (%v...), want the 50 newest", len(got), got[:min(5, len(got))])
		}
	})

	t.Run("at the byte limit DropOldest tables give way and the Block queue goes on", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		const limit = 1 << 20
		healthy := mustOpen(t, path, "healthy", Options[[]byte]{MaxBytes: limit})
		dead := mustOpen(t, path, "dead", Options[[]byte]{MaxBytes: limit})
		rec := bytes.Repeat([]byte("z"), 1000)
		for i := range 3000 { // 3 MiB through a 1 MiB file
			targets := []Target[[]byte]{{Queue: healthy, Items: [][]byte{rec}}, {Queue: dead, Items: [][]byte{rec}, WhenFull: DropOldest}}
			if err := SendTargets(ctx, targets); err != nil {
				t.Fatalf("send %d: %v (the dead queue holds %d)", i, err, mustLen(t, dead))
			}
			if i%10 == 9 { // the healthy sink drains as it goes
				l, err := healthy.Claim(ctx, 10)
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Ack(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if dead.Evicted() == 0 {
			t.Fatal("nothing evicted from the dead queue though 3 MiB went through a 1 MiB file")
		}
		if n := mustLen(t, dead); n < 500 {
			t.Fatalf("the dead queue keeps %d records, want most of the file (the newest)", n)
		}
	})

	t.Run("at the byte limit DropNewest is left out and a Block queue alone is refused", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		const limit = 512 << 10
		healthy := mustOpen(t, path, "healthy", Options[[]byte]{MaxBytes: limit})
		dead := mustOpen(t, path, "dead", Options[[]byte]{MaxBytes: limit})
		rec := bytes.Repeat([]byte("z"), 1000)
		for { // fill the file through the dead queue
			if err := dead.SendBatch(ctx, [][]byte{rec, rec, rec, rec}); err != nil {
				if !errors.Is(err, ErrQueueFull) {
					t.Fatal(err)
				}
				break
			}
		}
		targets := []Target[[]byte]{{Queue: healthy, Items: [][]byte{rec}}, {Queue: dead, Items: [][]byte{rec}, WhenFull: DropNewest}}
		err := SendTargets(ctx, targets)
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("a Block target that does not fit either: err %v, want ErrQueueFull", err)
		}
		if !healthy.Full() || !dead.Full() {
			t.Fatal("Full is false for queues of a file at its byte limit")
		}
	})
}

func TestPing(t *testing.T) {
	t.Run("a ping is answered by the committer without a transaction", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[int]{})
		before := q.store.commit.stats.commits.Load()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := q.Ping(pctx); err != nil {
			t.Fatal(err)
		}
		if n := q.store.commit.stats.commits.Load() - before; n != 0 {
			t.Fatalf("a ping made %d commits, want 0", n)
		}
		q.Close()
		if err := q.Ping(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("ping after Close: %v, want ErrClosed", err)
		}
	})
}
