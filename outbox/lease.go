package outbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Lease is a batch of records claimed from a queue. The records stay in the
// table until Ack; Release hands them back. One goroutine uses a lease.
type Lease[T any] struct {
	q     *Queue[T]
	core  *leaseCore
	items []T
	rows  []storedRow // as stored, for the dead-letter queue

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
		return fmt.Errorf("outbox: %s %s in %s table %s: %w: already %s", op, l.describe(), l.q.path, l.q.table, ErrLeaseNotActive, l.done)
	}
	if !l.q.ts.leaseCurrent(l.core) {
		return fmt.Errorf("outbox: %s %s in %s table %s: %w: the queue was cleared", op, l.describe(), l.q.path, l.q.table, ErrLeaseNotActive)
	}
	return nil
}

// describe names the lease for errors: how many records, which ids.
func (l *Lease[T]) describe() string {
	ids := l.core.ids
	if len(ids) == 0 {
		return "empty lease"
	}
	return fmt.Sprintf("lease of %d records (ids %d-%d)", len(ids), ids[0], ids[len(ids)-1])
}

// Ack deletes exactly the leased records, in one durable commit.
func (l *Lease[T]) Ack(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("ack"); err != nil {
		return err
	}
	if len(l.core.ids) == 0 { // every record was dead-lettered
		l.q.ts.dropLease(l.core)
		l.done = "acknowledged"
		return nil
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

// Len returns how many records the lease still holds.
func (l *Lease[T]) Len() int { return len(l.items) }

// DeadLetter moves the records at the given indexes of Items to the
// dead-letter queue, each with its reason, and drops them from the lease; the
// others stay leased, in order, for Ack or Release. It is how a consumer
// parks records that their destination refused for good.
func (l *Lease[T]) DeadLetter(ctx context.Context, reasons map[int]string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("dead-letter"); err != nil {
		return err
	}
	letters := make([]deadLetter, 0, len(reasons))
	gone := make(map[int64]bool, len(reasons))
	// In lease order, so that the dead-letter queue (and a replay) keeps the
	// records' order.
	for _, i := range slices.Sorted(maps.Keys(reasons)) {
		reason := reasons[i]
		if i < 0 || i >= len(l.rows) {
			return fmt.Errorf("outbox: dead-letter record %d of a lease of %d in %s table %s: no such record", i, len(l.rows), l.q.path, l.q.table)
		}
		letters = append(letters, deadLetter{storedRow: l.rows[i], reason: reason})
		gone[l.rows[i].id] = true
	}
	if len(letters) == 0 {
		return nil
	}
	if err := l.q.moveToDLQ(ctx, letters); err != nil {
		return err
	}
	l.q.ts.forget(l.core, gone)
	keep := 0
	for i := range l.rows {
		if !gone[l.rows[i].id] {
			l.rows[keep], l.items[keep] = l.rows[i], l.items[i]
			keep++
		}
	}
	clear(l.items[keep:])
	l.rows, l.items = l.rows[:keep], l.items[:keep]
	return nil
}
