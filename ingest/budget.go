package ingest

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultBudgetBytes is the memory ingest may hold at once when no budget
// is configured: what today's loads need (16 HTTP clients with 1000-record
// requests hold about 7 MiB; a wait for a commit's release is short), and
// small enough that the live Go heap stays well under the daemon's 32 MiB
// soft limit when every input is flooded, so that the collector is not
// pinned at the limit and RSS stays within 64 MiB.
const DefaultBudgetBytes = 8 << 20

// ErrOverBudget says that one request, batch or datagram needs more memory
// than the whole budget: waiting would never help.
var ErrOverBudget = errors.New("needs more memory than the ingest budget")

// Budget is a weighted semaphore counted in bytes: the memory every input
// together may hold in records read but not yet committed. An input acquires
// before it keeps what it read (a record, a decoded body) and releases once
// the outbox committed it or it was refused. Waiters are served in order, so
// a large request is not starved by small ones.
type Budget struct {
	mu      sync.Mutex
	size    int64
	used    int64
	waiters list.List // of *budgetWaiter, oldest first
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed once the bytes are granted
}

// NewBudget returns a budget of size bytes; size <= 0 takes
// DefaultBudgetBytes.
func NewBudget(size int64) *Budget {
	if size <= 0 {
		size = DefaultBudgetBytes
	}
	return &Budget{size: size}
}

// Size is the whole budget in bytes.
func (b *Budget) Size() int64 { return b.size }

// InUse is how many bytes are held now.
func (b *Budget) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// TryAcquire takes n bytes if they are free now and nobody waits before.
func (b *Budget) TryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n <= b.size && b.waiters.Len() == 0 {
		b.used += n
		return true
	}
	return false
}

// Acquire takes n bytes, waiting until they are free or ctx ends.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if n > b.size {
		return fmt.Errorf("%d bytes: %w of %d bytes", n, ErrOverBudget, b.size)
	}
	b.mu.Lock()
	if b.used+n <= b.size && b.waiters.Len() == 0 {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.used -= n
		default:
			b.waiters.Remove(elem)
		}
		b.grant() // a large waiter leaving can unblock smaller ones behind it
		b.mu.Unlock()
		return ctx.Err()
	}
}

// AcquireWithin is Acquire that waits at most wait.
func (b *Budget) AcquireWithin(ctx context.Context, n int64, wait time.Duration) error {
	if b.TryAcquire(n) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return b.Acquire(ctx, n)
}

// Release gives n bytes back.
func (b *Budget) Release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.used < 0 {
		panic("ingest: budget released more than was acquired")
	}
	b.grant()
}

// grant hands free bytes to waiters in order; b.mu is held.
func (b *Budget) grant() {
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		if b.used+w.n > b.size {
			return
		}
		b.used += w.n
		b.waiters.Remove(e)
		close(w.ready)
	}
}

// budgetChunk is how much a reader reserves at a time, so that the budget's
// lock is taken once per many records, not once per record.
const budgetChunk = 64 << 10

// lease is what one reader (a request, a connection) holds of a budget:
// reserved ahead in chunks, used by the records it keeps.
type lease struct {
	b        *Budget
	reserved int64 // acquired and not yet used
	used     int64 // acquired and used by records still held
}

// charge accounts n more bytes, acquiring a chunk when the reserve is out.
// acquire is how the reader waits: HTTP briefly, TCP as long as it takes.
func (l *lease) charge(n int64, acquire func(int64) error) error {
	if l.used+n > l.b.size {
		return fmt.Errorf("%d bytes: %w of %d bytes", l.used+n, ErrOverBudget, l.b.size)
	}
	if n > l.reserved {
		want := max(n-l.reserved, budgetChunk)
		if l.used+l.reserved+want > l.b.size { // near the whole budget: no reserve ahead
			want = n - l.reserved
		}
		if err := acquire(want); err != nil {
			return err
		}
		l.reserved += want
	}
	l.reserved -= n
	l.used += n
	return nil
}

// releaseAll gives back everything the lease holds.
func (l *lease) releaseAll() {
	l.b.Release(l.reserved + l.used)
	l.reserved, l.used = 0, 0
}
