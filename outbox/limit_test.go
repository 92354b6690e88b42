package outbox

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
)

func TestMaxBytes(t *testing.T) {
	t.Run("inserts past the disk limit fail with ErrQueueFull and acks make room again", func(t *testing.T) {
		ctx := testCtx(t)
		const limit = 1 << 20
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{MaxBytes: limit})
		rec := bytes.Repeat([]byte("x"), 1000)
		sent := 0
		var err error
		for sent < 10_000 {
			if err = q.SendBatch(ctx, [][]byte{rec, rec, rec, rec, rec, rec, rec, rec, rec, rec}); err != nil {
				break
			}
			sent += 10
		}
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("after %d records of 1000 bytes under a 1 MiB limit: err %v, want ErrQueueFull", sent, err)
		}
		// The limit counts pages, so it bites a little before 1 MiB of payload
		// and never far past it.
		if sent < 800 || sent > 1050 {
			t.Fatalf("%d records of 1000 bytes fit under a 1 MiB limit, want 800..1050", sent)
		}
		if got := mustLen(t, q); got != sent {
			t.Fatalf("Len %d after a refused send, want the %d accepted", got, sent)
		}
		l, err := q.Claim(ctx, 500)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := q.SendBatch(ctx, [][]byte{rec, rec, rec, rec, rec, rec, rec, rec, rec, rec}); err != nil {
			t.Fatalf("send after acking 500 records: %v", err)
		}
	})

	t.Run("every queue of a file shares its limit and must name the same one", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		a := mustOpen(t, path, "a", Options[[]byte]{MaxBytes: 512 << 10})
		if _, err := Open(ctx, path, "b", Options[[]byte]{MaxBytes: 1 << 20}); err == nil {
			t.Fatal("opened a second queue of the file with another MaxBytes")
		}
		b := mustOpen(t, path, "b", Options[[]byte]{MaxBytes: 512 << 10})
		rec := bytes.Repeat([]byte("y"), 4000)
		for i := 0; ; i++ {
			q := a
			if i%2 == 1 {
				q = b
			}
			if err := q.Send(ctx, rec); errors.Is(err, ErrQueueFull) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			if i > 200 {
				t.Fatal("more than 800 kB stored in two queues under a shared 512 KiB limit")
			}
		}
	})

	t.Run("a negative limit is an error", func(t *testing.T) {
		if _, err := Open(testCtx(t), tempDB(t), "q", Options[[]byte]{MaxBytes: -1}); err == nil {
			t.Fatal("MaxBytes -1 accepted")
		}
	})
}

func TestCommitStats(t *testing.T) {
	t.Run("histograms count every commit and show writers sharing commits", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		before := q.CommitStats()
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for range 20 {
					if err := q.Send(ctx, []byte("r")); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		s := q.CommitStats()
		commits := s.Commits - before.Commits
		if s.Records-before.Records != 640 {
			t.Fatalf("Records grew by %d, want 640", s.Records-before.Records)
		}
		if got := s.Latency.Count - before.Latency.Count; got != uint64(commits) {
			t.Fatalf("latency histogram counted %d commits, stats say %d", got, commits)
		}
		if s.Writers.Count != s.Latency.Count {
			t.Fatalf("writers histogram counted %d, latency %d", s.Writers.Count, s.Latency.Count)
		}
		if s.Writers.Sum-before.Writers.Sum != 640 {
			t.Fatalf("writers summed to %v, want the 640 sends", s.Writers.Sum-before.Writers.Sum)
		}
		if commits >= 640 {
			t.Fatalf("640 concurrent sends took %d commits: no sharing", commits)
		}
		if s.Latency.Sum <= 0 {
			t.Fatal("latency sum is not positive")
		}
		for i := 1; i < len(s.Writers.Counts); i++ {
			if s.Writers.Counts[i] < s.Writers.Counts[i-1] {
				t.Fatalf("writer buckets not cumulative: %v", s.Writers.Counts)
			}
		}
	})
}

func TestDiskUsage(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, tempDB(t), "q", Options[[]byte]{MaxBytes: 4 << 20})
	used0, limit := q.DiskUsage()
	if limit != 4<<20 {
		t.Fatalf("limit %d", limit)
	}
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = make([]byte, 512)
	}
	if err := q.SendBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if used, _ := q.DiskUsage(); used < used0+512*1000 {
		t.Fatalf("used %d after 512,000 bytes of records (before: %d)", used, used0)
	}
	if used, limit := mustOpen(t, tempDB(t), "q", Options[[]byte]{}).DiskUsage(); used != 0 || limit != 0 {
		t.Fatalf("without a limit: %d, %d", used, limit)
	}
}
