package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestOrder(t *testing.T) {
	t.Run("records come out in the order they went in, across batches and a restart", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q, err := Open(ctx, path, "events", Options[int]{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if err := q.Send(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.SendBatch(ctx, seq(10, 90)); err != nil {
			t.Fatal(err)
		}
		first, err := q.RecvBatch(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(first, seq(0, 5)) {
			t.Fatalf("first batch = %v", first)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		q = mustOpen(t, path, "events", Options[int]{})
		if err := q.SendBatch(ctx, seq(100, 10)); err != nil {
			t.Fatal(err)
		}
		if got := drain(t, q); !slices.Equal(got, seq(5, 105)) {
			t.Fatalf("after restart got %v", got)
		}
	})

	t.Run("each of many concurrent senders keeps its own order", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[[2]int]{})
		const senders, each = 16, 200
		var wg sync.WaitGroup
		for s := range senders {
			wg.Go(func() {
				for i := range each {
					var err error
					if i%10 == 0 {
						err = q.SendBatch(ctx, [][2]int{{s, i}})
					} else {
						err = q.Send(ctx, [2]int{s, i})
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		next := make([]int, senders)
		got := drain(t, q)
		if len(got) != senders*each {
			t.Fatalf("got %d records, want %d", len(got), senders*each)
		}
		for _, r := range got {
			if r[1] != next[r[0]] {
				t.Fatalf("sender %d: got record %d, want %d", r[0], r[1], next[r[0]])
			}
			next[r[0]]++
		}
	})
}

func TestGroupCommit(t *testing.T) {
	t.Run("concurrent single sends share commits", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[[]byte]{})
		const senders, each = 64, 50
		before := q.store.commit.stats.commits.Load()
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				for range each {
					if err := q.Send(ctx, []byte("x")); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		commits := q.store.commit.stats.commits.Load() - before
		if n := mustLen(t, q); n != senders*each {
			t.Fatalf("Len = %d, want %d", n, senders*each)
		}
		// Each Send returns only after its commit, so 64 goroutines can have
		// at most 64 records in one commit; well under one commit per record
		// proves that they share.
		if commits*4 > senders*each {
			t.Fatalf("%d commits for %d sends: senders did not share commits", commits, senders*each)
		}
		t.Logf("%d sends in %d commits (%.1f records per commit)", senders*each, commits, float64(senders*each)/float64(commits))
	})

	t.Run("a lone send is answered at once, without waiting for company", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		before := q.store.commit.stats.commits.Load()
		for i := range 5 {
			if err := q.Send(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		if c := q.store.commit.stats.commits.Load() - before; c != 5 {
			t.Fatalf("5 sequential sends took %d commits, want 5", c)
		}
	})

	t.Run("two tables in one file share the committer", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		a := mustOpen(t, path, "a", Options[int]{})
		b := mustOpen(t, path, "b", Options[int]{})
		if a.store != b.store {
			t.Fatal("queues on one file got different stores")
		}
		if err := a.SendBatch(ctx, []int{1, 2}); err != nil {
			t.Fatal(err)
		}
		if err := b.SendBatch(ctx, []int{3}); err != nil {
			t.Fatal(err)
		}
		if got := drain(t, a); !slices.Equal(got, []int{1, 2}) {
			t.Fatalf("a = %v", got)
		}
		if got := drain(t, b); !slices.Equal(got, []int{3}) {
			t.Fatalf("b = %v", got)
		}
	})
}

func TestRecv(t *testing.T) {
	t.Run("an empty queue gives nothing and no error", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[string]{})
		v, ok, err := q.Recv(ctx)
		if err != nil || ok || v != "" {
			t.Fatalf("Recv = %q, %v, %v", v, ok, err)
		}
		items, err := q.RecvBatch(ctx, 10)
		if err != nil || len(items) != 0 {
			t.Fatalf("RecvBatch = %v, %v", items, err)
		}
		if empty, err := q.IsEmpty(ctx); err != nil || !empty {
			t.Fatalf("IsEmpty = %v, %v", empty, err)
		}
	})

	t.Run("received records are gone, also after a restart", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q, _ := Open(ctx, path, "events", Options[string]{})
		q.SendBatch(ctx, []string{"a", "b", "c"})
		v, ok, err := q.Recv(ctx)
		if err != nil || !ok || v != "a" {
			t.Fatalf("Recv = %q, %v, %v", v, ok, err)
		}
		if n := mustLen(t, q); n != 2 {
			t.Fatalf("Len = %d", n)
		}
		q.Close()
		q = mustOpen(t, path, "events", Options[string]{})
		if n := mustLen(t, q); n != 2 {
			t.Fatalf("Len after reopen = %d", n)
		}
		if got := drain(t, q); !slices.Equal(got, []string{"b", "c"}) {
			t.Fatalf("got %v", got)
		}
	})

	t.Run("a receive limit that is not positive is an error", func(t *testing.T) {
		q := mustOpen(t, tempDB(t), "events", Options[string]{})
		if _, err := q.RecvBatch(testCtx(t), 0); err == nil {
			t.Fatal("RecvBatch(0) succeeded")
		}
	})

	t.Run("empty and binary byte records round-trip unchanged", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "raw", Options[[]byte]{})
		in := [][]byte{{}, nil, {0, 1, 2, 0xff}, []byte("not json {")}
		if err := q.SendBatch(ctx, in); err != nil {
			t.Fatal(err)
		}
		got := drain(t, q)
		if len(got) != len(in) {
			t.Fatalf("got %d records", len(got))
		}
		for i := range in {
			if string(got[i]) != string(in[i]) {
				t.Fatalf("record %d = %q, want %q", i, got[i], in[i])
			}
		}
	})
}

func TestClaim(t *testing.T) {
	t.Run("leased records are not handed out again until released", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 10))
		l1, err := q.Claim(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		l2, err := q.Claim(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(l1.Items(), seq(0, 4)) || !slices.Equal(l2.Items(), seq(4, 4)) {
			t.Fatalf("leases = %v, %v", l1.Items(), l2.Items())
		}
		if n := mustLen(t, q); n != 10 {
			t.Fatalf("Len with leases out = %d, want 10", n)
		}
		if err := l1.Release(ctx); err != nil {
			t.Fatal(err)
		}
		// Released records come back first and in order, then what was
		// never leased; the second lease is skipped.
		l3, err := q.Claim(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if want := append(seq(0, 4), seq(8, 2)...); !slices.Equal(l3.Items(), want) {
			t.Fatalf("after release got %v, want %v", l3.Items(), want)
		}
		if err := l2.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l3.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if n := mustLen(t, q); n != 0 {
			t.Fatalf("Len = %d after acking everything", n)
		}
	})

	t.Run("ack deletes exactly the leased records", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 6))
		a, _ := q.Claim(ctx, 2) // 0 1
		b, _ := q.Claim(ctx, 2) // 2 3
		a.Release(ctx)
		c, _ := q.Claim(ctx, 3) // 0 1 4: not contiguous
		if !slices.Equal(c.Items(), []int{0, 1, 4}) {
			t.Fatalf("claim = %v", c.Items())
		}
		if err := c.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		b.Release(ctx)
		if got := drain(t, q); !slices.Equal(got, []int{2, 3, 5}) {
			t.Fatalf("left = %v, want [2 3 5]", got)
		}
	})

	t.Run("claim waits for a record and wakes when one is sent", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		got := make(chan []int, 1)
		go func() {
			l, err := q.Claim(ctx, 10)
			if err != nil {
				t.Error(err)
				got <- nil
				return
			}
			got <- l.Items()
		}()
		time.Sleep(20 * time.Millisecond) // let it block; correctness does not depend on it
		if err := q.Send(ctx, 42); err != nil {
			t.Fatal(err)
		}
		if items := <-got; !slices.Equal(items, []int{42}) {
			t.Fatalf("claim got %v", items)
		}
	})

	t.Run("claim on an empty queue ends with its context", func(t *testing.T) {
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Millisecond)
		defer cancel()
		if _, err := q.Claim(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
	})

	t.Run("claim blocked on an empty queue returns ErrClosed when the queue closes", func(t *testing.T) {
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		errc := make(chan error, 1)
		go func() { _, err := q.Claim(testCtx(t), 10); errc <- err }()
		time.Sleep(20 * time.Millisecond)
		q.Close()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	})

	t.Run("ack twice, after release, after clear or after close is a clear error", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 4))
		l, _ := q.Claim(ctx, 1)
		if err := l.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Ack(ctx); !errors.Is(err, ErrLeaseNotActive) {
			t.Fatalf("second Ack: %v", err)
		}
		r, _ := q.Claim(ctx, 1)
		r.Release(ctx)
		if err := r.Ack(ctx); !errors.Is(err, ErrLeaseNotActive) {
			t.Fatalf("Ack after Release: %v", err)
		}
		c, _ := q.Claim(ctx, 1)
		if err := q.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		q.Send(ctx, 99) // must survive the stale Ack below
		if err := c.Ack(ctx); !errors.Is(err, ErrLeaseNotActive) {
			t.Fatalf("Ack after Clear: %v", err)
		}
		if err := c.Release(ctx); !errors.Is(err, ErrLeaseNotActive) {
			t.Fatalf("Release after Clear: %v", err)
		}
		if n := mustLen(t, q); n != 1 {
			t.Fatalf("Len = %d, want 1: a stale ack deleted something", n)
		}
		d, _ := q.Claim(ctx, 1)
		q.Close()
		if err := d.Ack(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Ack after Close: %v", err)
		}
		q2 := mustOpen(t, q.path, "events", Options[int]{})
		if got := drain(t, q2); !slices.Equal(got, []int{99}) {
			t.Fatalf("after reopen got %v, want [99]", got)
		}
	})

	t.Run("records leased but not acked are delivered again after reopen", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q, _ := Open(ctx, path, "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 5))
		l, _ := q.Claim(ctx, 3)
		l.Ack(ctx)
		if _, err := q.Claim(ctx, 2); err != nil { // leased, never acked
			t.Fatal(err)
		}
		q.Close()
		q = mustOpen(t, path, "events", Options[int]{})
		l, err := q.Claim(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(l.Items(), []int{3, 4}) {
			t.Fatalf("redelivered %v, want [3 4]", l.Items())
		}
	})

	t.Run("a concurrent claimer and many senders see every record exactly once", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		const senders, each = 8, 250
		var wg sync.WaitGroup
		for s := range senders {
			wg.Go(func() {
				for i := range each {
					if err := q.Send(ctx, s*each+i); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		seen := make(map[int]int)
		claims := 0
		for len(seen) < senders*each {
			l, err := q.Claim(ctx, 64)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range l.Items() {
				seen[v]++
			}
			// Every third claim, not "when len(seen) is a multiple of 3": that
			// gave the same batch back for ever once the senders were done.
			if claims++; claims%3 == 0 {
				// Give some back now and then; they must come again, once.
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
				for _, v := range l.Items() {
					seen[v]--
					if seen[v] == 0 {
						delete(seen, v)
					}
				}
				continue
			}
			if err := l.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		for v, n := range seen {
			if n != 1 {
				t.Fatalf("record %d seen %d times", v, n)
			}
		}
		if n := mustLen(t, q); n != 0 {
			t.Fatalf("Len = %d at the end", n)
		}
	})
}

func TestClear(t *testing.T) {
	t.Run("clear empties the queue and sends after it are kept", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 100))
		if err := q.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if n := mustLen(t, q); n != 0 {
			t.Fatalf("Len = %d after Clear", n)
		}
		q.Send(ctx, 7)
		if got := drain(t, q); !slices.Equal(got, []int{7}) {
			t.Fatalf("got %v", got)
		}
	})
}

func TestClosed(t *testing.T) {
	t.Run("every call after Close returns ErrClosed, and Close twice is fine", func(t *testing.T) {
		ctx := testCtx(t)
		q, err := Open(ctx, tempDB(t), "events", Options[int]{})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, _, recvErr := q.Recv(ctx)
		_, batchErr := q.RecvBatch(ctx, 1)
		_, claimErr := q.Claim(ctx, 1)
		_, lenErr := q.Len(ctx)
		_, emptyErr := q.IsEmpty(ctx)
		for name, err := range map[string]error{
			"Send": q.Send(ctx, 1), "SendBatch": q.SendBatch(ctx, []int{1}), "Recv": recvErr,
			"RecvBatch": batchErr, "Claim": claimErr, "Len": lenErr, "IsEmpty": emptyErr, "Clear": q.Clear(ctx),
		} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", name, err)
			}
		}
	})

	t.Run("a send waiting on a full queue returns ErrClosed when the queue closes", func(t *testing.T) {
		ctx := testCtx(t)
		q, _ := Open(ctx, tempDB(t), "events", Options[int]{MaxSize: 1})
		q.Send(ctx, 1)
		errc := make(chan error, 1)
		go func() { errc <- q.Send(ctx, 2) }()
		time.Sleep(20 * time.Millisecond)
		q.Close()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	})
}

func TestMaxSize(t *testing.T) {
	t.Run("the limit is exact under concurrency", func(t *testing.T) {
		ctx := testCtx(t)
		const max = 100
		q := mustOpen(t, tempDB(t), "events", Options[int]{MaxSize: max})
		var wg sync.WaitGroup
		var mu sync.Mutex
		accepted := 0
		for g := range 32 {
			wg.Go(func() {
				for i := range 10 {
					sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
					err := q.Send(sctx, g*10+i)
					cancel()
					switch {
					case err == nil:
						mu.Lock()
						accepted++
						mu.Unlock()
					case !errors.Is(err, ErrQueueFull):
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if accepted != max {
			t.Fatalf("accepted %d sends, want exactly %d", accepted, max)
		}
		if n := mustLen(t, q); n != max {
			t.Fatalf("Len = %d, want %d", n, max)
		}
	})

	t.Run("a send on a full queue waits and goes through when a record is removed", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{MaxSize: 2})
		q.SendBatch(ctx, []int{1, 2})
		errc := make(chan error, 1)
		go func() { errc <- q.Send(ctx, 3) }()
		select {
		case err := <-errc:
			t.Fatalf("Send on a full queue returned at once: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		l, _ := q.Claim(ctx, 1)
		l.Ack(ctx)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if got := drain(t, q); !slices.Equal(got, []int{2, 3}) {
			t.Fatalf("got %v", got)
		}
	})

	t.Run("a send that waits past its deadline matches ErrQueueFull and the context error", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{MaxSize: 1})
		q.Send(ctx, 1)
		sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		err := q.Send(sctx, 2)
		if !errors.Is(err, ErrQueueFull) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if n := mustLen(t, q); n != 1 {
			t.Fatalf("Len = %d", n)
		}
	})

	t.Run("a batch larger than the limit fails at once and writes nothing", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{MaxSize: 5})
		start := time.Now()
		err := q.SendBatch(ctx, seq(0, 6))
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("err = %v", err)
		}
		if time.Since(start) > time.Second {
			t.Fatal("an oversized batch waited instead of failing at once")
		}
		if n := mustLen(t, q); n != 0 {
			t.Fatalf("Len = %d", n)
		}
	})

	t.Run("a batch that does not fit yet is written whole or not at all", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{MaxSize: 5})
		q.SendBatch(ctx, seq(0, 3))
		sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if err := q.SendBatch(sctx, seq(3, 3)); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("err = %v", err)
		}
		if got := drain(t, q); !slices.Equal(got, seq(0, 3)) {
			t.Fatalf("got %v: part of a refused batch was written", got)
		}
	})
}

func TestTableNames(t *testing.T) {
	for _, name := range []string{"", "1abc", "sqlite_x", "SQLITE_master", "a-b", "a b", `a"b`, "ä", string(make([]byte, 65))} {
		t.Run(fmt.Sprintf("%q is refused before any file is touched", name), func(t *testing.T) {
			path := tempDB(t)
			_, err := Open(testCtx(t), path, name, Options[int]{})
			if !errors.Is(err, ErrInvalidTableName) {
				t.Fatalf("err = %v", err)
			}
			if _, statErr := osStat(path); statErr == nil {
				t.Fatal("the database file was created")
			}
		})
	}
	long := "a"
	for len(long) < 64 {
		long += "b"
	}
	for _, name := range []string{"a", "_x", "Events_2", long} {
		t.Run(fmt.Sprintf("%q is accepted", name), func(t *testing.T) {
			mustOpen(t, tempDB(t), name, Options[int]{})
		})
	}
}

func TestClaimBytes(t *testing.T) {
	t.Run("a claim stops before the byte limit but always takes one record", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[[]byte]{})
		q.SendBatch(ctx, [][]byte{make([]byte, 600), make([]byte, 300), make([]byte, 300), make([]byte, 100)})
		l, err := q.ClaimBytes(ctx, 10, 500)
		if err != nil || l.Len() != 1 {
			t.Fatalf("first claim: %d records, %v; want the one 600-byte record", l.Len(), err)
		}
		l2, err := q.ClaimBytes(ctx, 10, 700)
		if err != nil || l2.Len() != 3 {
			t.Fatalf("second claim: %d records, %v; want 300+300+100", l2.Len(), err)
		}
		l.Release(ctx)
		l3, _ := q.ClaimBytes(ctx, 10, 0)
		if l3.Len() != 1 || len(l3.Items()[0]) != 600 {
			t.Fatalf("released record did not come back first")
		}
	})
}

func TestLeaseDeadLetter(t *testing.T) {
	t.Run("dead-lettered records leave the lease and the queue, the others are acked", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 5))
		l, _ := q.Claim(ctx, 5)
		if err := l.DeadLetter(ctx, map[int]string{1: "too large", 3: "refused"}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(l.Items(), []int{0, 2, 4}) {
			t.Fatalf("lease now holds %v", l.Items())
		}
		if n := mustLen(t, q); n != 3 {
			t.Fatalf("Len = %d, want 3", n)
		}
		if err := l.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		var reasons []string
		rows, err := rawDB(t, DLQPath(path)).Query(`SELECT data, error_message FROM events_dlq ORDER BY original_id`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var data, reason string
			rows.Scan(&data, &reason)
			reasons = append(reasons, data+":"+reason)
		}
		if !slices.Equal(reasons, []string{"1:too large", "3:refused"}) {
			t.Fatalf("DLQ = %v", reasons)
		}
	})

	t.Run("a lease whose every record was dead-lettered acks as empty", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 2))
		l, _ := q.Claim(ctx, 2)
		l.DeadLetter(ctx, map[int]string{0: "x", 1: "y"})
		if err := l.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Ack(ctx); !errors.Is(err, ErrLeaseNotActive) {
			t.Fatalf("second Ack: %v", err)
		}
		if n := mustLen(t, q); n != 0 {
			t.Fatalf("Len = %d", n)
		}
	})
}

func TestOldest(t *testing.T) {
	t.Run("oldest is the creation time of the head record, absent when empty", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		if _, ok, err := q.Oldest(ctx); ok || err != nil {
			t.Fatalf("empty queue: ok=%v err=%v", ok, err)
		}
		before := time.Now().Truncate(time.Second)
		q.Send(ctx, 1)
		at, ok, err := q.Oldest(ctx)
		if err != nil || !ok || at.Before(before) || at.After(time.Now()) {
			t.Fatalf("Oldest = %v, %v, %v", at, ok, err)
		}
	})
}

func TestRelaxedAcks(t *testing.T) {
	t.Run("an ack commits without an fsync and is synced within a second", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 10))
		l, _ := q.Claim(ctx, 10)
		if err := l.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		st := &q.store.commit.stats
		if st.relaxed.Load() != 1 {
			t.Fatalf("relaxed commits = %d, want 1", st.relaxed.Load())
		}
		deadline := time.Now().Add(3 * time.Second)
		for st.synced.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the ack was not synced within 3s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("inserts, clears and dead-letter copies are never relaxed", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{})
		q.SendBatch(ctx, seq(0, 10))
		q.Clear(ctx)
		if n := q.store.commit.stats.relaxed.Load(); n != 0 {
			t.Fatalf("relaxed commits = %d, want 0", n)
		}
	})

	t.Run("at durability normal nothing is switched", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[int]{Durability: DurabilityNormal})
		q.SendBatch(ctx, seq(0, 10))
		l, _ := q.Claim(ctx, 10)
		l.Ack(ctx)
		if n := q.store.commit.stats.relaxed.Load(); n != 0 {
			t.Fatalf("relaxed commits = %d, want 0", n)
		}
	})
}

func TestClaimedRecordsDoNotShareMemory(t *testing.T) {
	t.Run("each claimed record keeps its own bytes after the next rows are read", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "raw", Options[[]byte]{})
		in := [][]byte{[]byte("first record"), []byte("second"), []byte("third, the longest of them all")}
		q.SendBatch(ctx, in)
		l, err := q.Claim(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range l.Items() {
			if string(r) != string(in[i]) {
				t.Fatalf("record %d = %q, want %q: the driver reused a buffer", i, r, in[i])
			}
		}
	})
}

func TestSendBatches(t *testing.T) {
	t.Run("batches for several tables of one file commit together", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		a := mustOpen(t, path, "kafka", Options[int]{})
		b := mustOpen(t, path, "archive", Options[int]{})
		before := a.store.commit.stats.commits.Load()
		err := SendBatches(ctx, []Batch[int]{{a, []int{1, 2}}, {b, []int{1, 2}}, {a, []int{3}}})
		if err != nil {
			t.Fatal(err)
		}
		if c := a.store.commit.stats.commits.Load() - before; c != 1 {
			t.Fatalf("%d commits, want 1", c)
		}
		if got := drain(t, a); !slices.Equal(got, []int{1, 2, 3}) {
			t.Fatalf("a = %v", got)
		}
		if got := drain(t, b); !slices.Equal(got, []int{1, 2}) {
			t.Fatalf("b = %v", got)
		}
	})

	t.Run("if one queue has no room, none of the batches is stored", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		a := mustOpen(t, path, "a", Options[int]{})
		b := mustOpen(t, path, "b", Options[int]{MaxSize: 1})
		b.Send(ctx, 0)
		sctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		err := SendBatches(sctx, []Batch[int]{{a, []int{1}}, {b, []int{1}}})
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("err = %v", err)
		}
		if n := mustLen(t, a); n != 0 {
			t.Fatalf("a holds %d records of a refused send", n)
		}
		// The reservation on a was given back: a can take records again.
		if err := a.SendBatch(ctx, []int{5}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("queues on different files are refused", func(t *testing.T) {
		a := mustOpen(t, tempDB(t), "a", Options[int]{})
		b := mustOpen(t, tempDB(t), "b", Options[int]{})
		if err := SendBatches(testCtx(t), []Batch[int]{{a, []int{1}}, {b, []int{1}}}); err == nil {
			t.Fatal("sent to two files in one call")
		}
	})

	t.Run("many concurrent fan-out sends keep both tables equal", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		a := mustOpen(t, path, "a", Options[int]{})
		b := mustOpen(t, path, "b", Options[int]{})
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 50 {
					v := g*1000 + i
					if err := SendBatches(ctx, []Batch[int]{{a, []int{v}}, {b, []int{v}}}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if ga, gb := drain(t, a), drain(t, b); !slices.Equal(ga, gb) || len(ga) != 800 {
			t.Fatalf("a has %d, b has %d, equal=%v", len(ga), len(gb), slices.Equal(ga, gb))
		}
	})
}
