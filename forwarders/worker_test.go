package forwarders

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

// countingSource counts the claims made on a real queue.
type countingSource struct {
	*outbox.Queue[[]byte]
	claims atomic.Int64
}

func (s *countingSource) ClaimBytes(ctx context.Context, limit, maxBytes int) (*outbox.Lease[[]byte], error) {
	l, err := s.Queue.ClaimBytes(ctx, limit, maxBytes)
	if l != nil {
		s.claims.Add(1)
	}
	return l, err
}

// gatedSink holds every send until the test opens the gate.
type gatedSink struct {
	gate chan struct{}
	mu   sync.Mutex
	sent [][]byte
}

func (g *gatedSink) Send(ctx context.Context, records [][]byte) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent = append(g.sent, records...)
	return nil
}

func (g *gatedSink) Close() error { return nil }

func TestPrefetch(t *testing.T) {
	t.Run("the next batch is claimed while one is sent, and all arrive once, in order", func(t *testing.T) {
		q := openQueue(t)
		src := &countingSource{Queue: q}
		sink := &gatedSink{gate: make(chan struct{})}
		w := NewWorker(Config{Name: "gated", Batching: Batching{MaxRecords: 10, Linger: -1}, Logger: quietLog}, src, sink)
		fill(t, q, 0, 30)
		runWorker(t, w)
		// The first send waits at the gate; the second batch is claimed
		// meanwhile, and no third, since it would have nowhere to go.
		waitFor(t, "the second batch claimed during the first send", 10*time.Second, func() bool { return src.claims.Load() == 2 })
		time.Sleep(50 * time.Millisecond)
		if n := src.claims.Load(); n != 2 {
			t.Fatalf("%d batches claimed while the first is in flight, want 2", n)
		}
		close(sink.gate)
		waitFor(t, "all 30 records", 10*time.Second, func() bool { return w.Stats().RecordsSent.Load() == 30 })
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if dups := checkDelivered(t, sink.sent, 30); dups != 0 {
			t.Fatalf("%d duplicates without a crash", dups)
		}
	})

	t.Run("a stop releases the claimed batch that was not sent", func(t *testing.T) {
		q := openQueue(t)
		src := &countingSource{Queue: q}
		sink := &gatedSink{gate: make(chan struct{})}
		w := NewWorker(Config{Name: "gated", Batching: Batching{MaxRecords: 10, Linger: -1}, DrainTimeout: 10 * time.Millisecond, Logger: quietLog}, src, sink)
		fill(t, q, 0, 20)
		stop := runWorker(t, w)
		waitFor(t, "both batches claimed", 10*time.Second, func() bool { return src.claims.Load() == 2 })
		stop()
		// Nothing was sent; both batches must be claimable again, first one
		// first.
		l, err := q.ClaimBytes(context.Background(), 20, 0)
		if err != nil || l == nil || l.Len() != 20 {
			t.Fatalf("after stop: claim = %v, %v; want all 20 records back", l, err)
		}
		if got := numberOf(t, l.Items()[0]); got != 0 {
			t.Fatalf("first record after stop is %d, want 0", got)
		}
	})
}
