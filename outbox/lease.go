package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Lease is a batch of records claimed from a queue. The records stay in the
// table until Ack; Release hands them back. One goroutine uses a lease.
type Lease[T any] struct {
	q     *Queue[T]
	core  *leaseCore
	items []T

	mu   sync.Mutex
	done string // why the lease is no longer active: "acknowledged", "released"; "" while active
}

// Items returns the leased records, oldest first.
func (l *Lease[T]) Items() []T { return l.items }

// IDs returns the record ids of the leased records, in the order of Items.
func (l *Lease[T]) IDs() []int64 { return append([]int64(nil), l.core.ids...) }

// check returns why the lease cannot be used, or nil. Called with l.mu held.
func (l *Lease[T]) check(op string) error {
	if l.q.closed.Load() {
		return l.q.errClosed(op)
	}
	if l.done != "" {
		return fmt.Errorf("outbox: %s lease of %d records (ids %d-%d) in %s table %s: %w: already %s",
			op, len(l.core.ids), l.core.ids[0], l.core.ids[len(l.core.ids)-1], l.q.path, l.q.table, ErrLeaseNotActive, l.done)
	}
	if !l.q.ts.leaseCurrent(l.core) {
		return fmt.Errorf("outbox: %s lease of %d records (ids %d-%d) in %s table %s: %w: the queue was cleared",
			op, len(l.core.ids), l.core.ids[0], l.core.ids[len(l.core.ids)-1], l.q.path, l.q.table, ErrLeaseNotActive)
	}
	return nil
}

// Ack deletes exactly the leased records, in one durable commit.
func (l *Lease[T]) Ack(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("ack"); err != nil {
		return err
	}
	op := newWriteOp(l.q.ts)
	op.del = l.core.ranges()
	if err := l.q.store.commit.submit(ctx, op); err != nil {
		if errors.Is(err, ErrClosed) {
			return l.q.errClosed("ack")
		}
		return err // still leased: the caller may Ack again or Release
	}
	l.q.ts.dropLease(l.core)
	l.done = "acknowledged"
	return nil
}

// Release gives the records back to the queue, at its head and in order: the
// next claim returns them first.
func (l *Lease[T]) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("release"); err != nil {
		return err
	}
	l.q.ts.releaseLease(l.core)
	l.done = "released"
	return nil
}
