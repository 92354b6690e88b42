package outbox

import (
	"context"
	"sync"
)

// NewChannel opens a queue and splits it into a sending and a receiving half,
// like a Go channel that lives on disk. The queue closes when both halves are
// closed.
func NewChannel[T any](ctx context.Context, path, table string, opts Options[T]) (*Sender[T], *Receiver[T], error) {
	q, err := Open(ctx, path, table, opts)
	if err != nil {
		return nil, nil, err
	}
	h := &halves[T]{q: q, open: 2}
	return &Sender[T]{h: h}, &Receiver[T]{h: h}, nil
}

// halves closes the queue when its last half closes.
type halves[T any] struct {
	q    *Queue[T]
	mu   sync.Mutex
	open int
}

func (h *halves[T]) closeOne(closed *bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *closed {
		return nil
	}
	*closed = true
	h.open--
	if h.open == 0 {
		return h.q.Close()
	}
	return nil
}

// Sender is the sending half. It is safe for concurrent use by many goroutines.
type Sender[T any] struct {
	h      *halves[T]
	closed bool // guarded by h.mu
}

func (s *Sender[T]) isClosed() bool {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.closed
}

// Send appends item; see Queue.Send.
func (s *Sender[T]) Send(ctx context.Context, item T) error {
	if s.isClosed() {
		return s.h.q.errClosed("send to")
	}
	return s.h.q.Send(ctx, item)
}

// SendBatch appends items; see Queue.SendBatch.
func (s *Sender[T]) SendBatch(ctx context.Context, items []T) error {
	if s.isClosed() {
		return s.h.q.errClosed("send to")
	}
	return s.h.q.SendBatch(ctx, items)
}

// Len returns how many records the queue holds.
func (s *Sender[T]) Len(ctx context.Context) (int, error) {
	if s.isClosed() {
		return 0, s.h.q.errClosed("len of")
	}
	return s.h.q.Len(ctx)
}

// IsEmpty reports whether the queue holds no records.
func (s *Sender[T]) IsEmpty(ctx context.Context) (bool, error) {
	n, err := s.Len(ctx)
	return n == 0, err
}

// Close closes the sending half. Calling it again returns nil.
func (s *Sender[T]) Close() error { return s.h.closeOne(&s.closed) }

// Receiver is the receiving half. One goroutine uses it.
type Receiver[T any] struct {
	h      *halves[T]
	closed bool // guarded by h.mu
}

func (r *Receiver[T]) isClosed() bool {
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	return r.closed
}

// Recv removes and returns the oldest record; see Queue.Recv.
func (r *Receiver[T]) Recv(ctx context.Context) (item T, ok bool, err error) {
	if r.isClosed() {
		return item, false, r.h.q.errClosed("receive from")
	}
	return r.h.q.Recv(ctx)
}

// RecvBatch removes and returns up to limit records; see Queue.RecvBatch.
func (r *Receiver[T]) RecvBatch(ctx context.Context, limit int) ([]T, error) {
	if r.isClosed() {
		return nil, r.h.q.errClosed("receive from")
	}
	return r.h.q.RecvBatch(ctx, limit)
}

// Claim leases up to limit records; see Queue.Claim.
func (r *Receiver[T]) Claim(ctx context.Context, limit int) (*Lease[T], error) {
	if r.isClosed() {
		return nil, r.h.q.errClosed("claim from")
	}
	return r.h.q.Claim(ctx, limit)
}

// Len returns how many records the queue holds.
func (r *Receiver[T]) Len(ctx context.Context) (int, error) {
	if r.isClosed() {
		return 0, r.h.q.errClosed("len of")
	}
	return r.h.q.Len(ctx)
}

// IsEmpty reports whether the queue holds no records.
func (r *Receiver[T]) IsEmpty(ctx context.Context) (bool, error) {
	n, err := r.Len(ctx)
	return n == 0, err
}

// Close closes the receiving half. Calling it again returns nil.
func (r *Receiver[T]) Close() error { return r.h.closeOne(&r.closed) }
