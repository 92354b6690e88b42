package forwarders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/outboxd/outboxd/outbox"
)

// Source is what a worker needs of its queue.
type Source interface {
	ClaimBytes(ctx context.Context, limit, maxBytes int) (*outbox.Lease[[]byte], error)
	Len(ctx context.Context) (int, error)
	Oldest(ctx context.Context) (time.Time, bool, error)
}

// Batching bounds a batch. A part batch is sent once Linger has passed since
// the worker saw it, so that a quiet host still ships within Linger.
type Batching struct {
	MaxRecords int           // default 1000
	MaxBytes   int           // default 1 MiB
	Linger     time.Duration // default 200ms; negative: never wait
}

func (b Batching) withDefaults() Batching {
	if b.MaxRecords <= 0 {
		b.MaxRecords = 1000
	}
	if b.MaxBytes <= 0 {
		b.MaxBytes = 1 << 20
	}
	if b.Linger == 0 {
		b.Linger = 200 * time.Millisecond
	}
	return b
}

// Retry shapes the exponential backoff between attempts at one batch. There
// is no limit on attempts: a transient failure is retried until it passes.
type Retry struct {
	Initial       time.Duration // first wait; default 100ms
	Max           time.Duration // cap on one wait; default 30s
	Multiplier    float64       // growth per attempt; default 2
	Jitter        float64       // randomisation factor in [0,1); default 0.5: a wait of 1s is drawn from [0.5s, 1.5s]
	MaxRetryAfter time.Duration // cap on a delay the destination asks for; default 5m
}

func (r Retry) withDefaults() Retry {
	if r.Initial <= 0 {
		r.Initial = 100 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 30 * time.Second
	}
	if r.Multiplier < 1 {
		r.Multiplier = 2
	}
	if r.Jitter < 0 || r.Jitter >= 1 {
		r.Jitter = 0.5
	}
	if r.MaxRetryAfter <= 0 {
		r.MaxRetryAfter = 5 * time.Minute
	}
	return r
}

// newBackOff returns a fresh backoff: each batch starts from Initial again.
func (r Retry) newBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = r.Initial
	b.MaxInterval = r.Max
	b.Multiplier = r.Multiplier
	b.RandomizationFactor = r.Jitter
	b.MaxElapsedTime = 0 // never give up
	b.Reset()
	return b
}

// Config configures a worker.
type Config struct {
	Name     string // the sink's name, for logs and metrics
	Batching Batching
	Retry    Retry
	// DrainTimeout is how long an in-flight send may go on after Run's
	// context ends; then it is abandoned and its records stay in the queue.
	// Default 5s.
	DrainTimeout time.Duration
	// MaxDeadLetterBytes limits the pages in use of the queue's dead-letter
	// file (0: no limit). At the limit, a batch with refused records waits
	// (failing, not resent) until the file has room again.
	MaxDeadLetterBytes int64
	Logger             *slog.Logger
}

// Worker forwards one queue to one sink.
type Worker struct {
	name  string
	src   Source
	sink  Sink
	batch Batching
	retry Retry
	drain time.Duration
	log   *slog.Logger
	// maxDLQ is Config.MaxDeadLetterBytes.
	maxDLQ int64
	stats  *Stats

	// sleep waits d or until ctx ends; tests replace it to run on a fake clock.
	sleep func(ctx context.Context, d time.Duration) error

	// acking is the acknowledgement in flight. A delivered batch is acked
	// while the next one is claimed and sent: the ack waits for its commit
	// behind the inserts, and that wait need not stall the sink. At most one
	// ack is in flight; Run waits for it before it returns.
	acking sync.WaitGroup
}

// NewWorker returns a worker that forwards src to sink.
func NewWorker(cfg Config, src Source, sink Sink) *Worker {
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{
		name: cfg.Name, src: src, sink: sink,
		batch: cfg.Batching.withDefaults(), retry: cfg.Retry.withDefaults(),
		drain: cfg.DrainTimeout, log: cfg.Logger.With("sink", cfg.Name), maxDLQ: cfg.MaxDeadLetterBytes,
		stats: &Stats{}, sleep: sleepCtx,
	}
}

// Stats returns the worker's live counters.
func (w *Worker) Stats() *Stats { return w.stats }

// Run forwards until ctx ends, then returns nil. When ctx ends, no new batch
// is claimed; a batch in flight gets DrainTimeout to be delivered, else it is
// released and delivered after the next start. An interrupted send is not
// counted as a failed attempt.
func (w *Worker) Run(ctx context.Context) error {
	defer w.acking.Wait()
	// The next batch is claimed while the current one is sent, so reading
	// it from disk overlaps the sink's round trip. Sends stay one at a time
	// and in order; a claimed batch not yet sent is only leased, and is
	// released (or, after a crash, forgotten) like any other. Every claim
	// started here is received below before Run returns.
	claims := make(chan claimed, 1)
	var claimer sync.WaitGroup
	defer claimer.Wait()
	claimNext := func() {
		claimer.Go(func() {
			lease, err := w.claim(ctx)
			claims <- claimed{lease, err}
		})
	}
	claimNext()
	for {
		c := <-claims
		lease, err := c.lease, c.err
		switch {
		case ctx.Err() != nil:
			if lease != nil {
				w.release(lease)
			}
			return nil
		case errors.Is(err, outbox.ErrDecode):
			// The queue moved an unreadable record to its DLQ; go on.
			w.log.Warn("record moved to the dead-letter queue", "err", err)
			w.stats.Rejected.Add(1)
			claimNext()
			continue
		case err != nil:
			// The outbox itself failed (disk, corruption): there is nothing to
			// forward until it recovers, and nothing is lost by waiting.
			w.log.Error("claim from outbox", "err", err)
			if w.sleep(ctx, w.retry.Max) != nil {
				return nil
			}
			claimNext()
			continue
		}
		claimNext()
		w.deliver(ctx, lease)
	}
}

// claimed is the outcome of one claim.
type claimed struct {
	lease *outbox.Lease[[]byte]
	err   error
}

// claim waits for a batch. A part batch gets the linger time to fill up.
func (w *Worker) claim(ctx context.Context) (*outbox.Lease[[]byte], error) {
	lease, err := w.src.ClaimBytes(ctx, w.batch.MaxRecords, w.batch.MaxBytes)
	if err != nil || w.batch.Linger < 0 || lease.Len() >= w.batch.MaxRecords || leaseBytes(lease) >= w.batch.MaxBytes/2 {
		return lease, err
	}
	w.release(lease)
	if err := w.sleep(ctx, w.batch.Linger); err != nil {
		return nil, err
	}
	return w.src.ClaimBytes(ctx, w.batch.MaxRecords, w.batch.MaxBytes)
}

func leaseBytes(l *outbox.Lease[[]byte]) int {
	n := 0
	for _, r := range l.Items() {
		n += len(r)
	}
	return n
}

// deliver sends one batch until the sink has it all, or the worker stops.
func (w *Worker) deliver(ctx context.Context, lease *outbox.Lease[[]byte]) {
	bo := w.retry.newBackOff()
	sendCtx, stop := w.sendContext(ctx)
	defer stop()
	// Queue writes must finish even while stopping: what the sink has must
	// be acknowledged, what it refused must reach the DLQ.
	bg := context.WithoutCancel(ctx)
	for {
		err := w.sink.Send(sendCtx, lease.Items())
		o := classify(err)
		if len(o.rejected) > 0 {
			if w.waitForDeadLetterRoom(ctx, lease.Items(), o.rejected) != nil {
				w.release(lease) // stopped while the DLQ was full: sent again after the start
				return
			}
			if derr := lease.DeadLetter(bg, o.rejected); derr != nil {
				w.log.Error("move rejected records to the dead-letter queue", "err", derr)
				o.retry = derr // keep them; try the whole batch again
			} else {
				w.stats.Rejected.Add(int64(len(o.rejected)))
				w.log.Warn("records rejected by the sink, moved to the dead-letter queue",
					"count", len(o.rejected), "err", err)
			}
		}
		if o.retry == nil {
			w.acking.Wait() // the previous batch's ack
			w.acking.Go(func() { w.ack(bg, lease) })
			return
		}
		if sendCtx.Err() != nil {
			w.release(lease) // stopped, not failed
			return
		}
		delay := bo.NextBackOff()
		if o.retryAfter > 0 {
			delay = min(o.retryAfter, w.retry.MaxRetryAfter)
		}
		w.stats.failed(o.retry, delay, w.log)
		if w.sleep(ctx, delay) != nil {
			w.release(lease)
			return
		}
	}
}

// sendContext lets a send outlive ctx by the drain timeout.
func (w *Worker) sendContext(ctx context.Context) (context.Context, func()) {
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(w.drain, cancel) })
	return sendCtx, func() { stop(); cancel() }
}

// ack deletes the delivered batch from the queue. If that fails the records
// stay and are sent again: a duplicate, never a loss.
func (w *Worker) ack(ctx context.Context, lease *outbox.Lease[[]byte]) {
	n := lease.Len()
	var err error
	for attempt := range 3 {
		if err = lease.Ack(ctx); err == nil {
			w.stats.delivered(n, w.log)
			return
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	w.log.Error("acknowledge delivered records; they will be sent again", "count", n, "err", err)
	w.release(lease)
}

func (w *Worker) release(lease *outbox.Lease[[]byte]) {
	if err := lease.Release(context.Background()); err != nil && !errors.Is(err, outbox.ErrClosed) {
		w.log.Error("release records", "err", err)
	}
}

// Snapshot reads the worker's counters and its queue's depth and age.
func (w *Worker) Snapshot(ctx context.Context) (Snapshot, error) {
	s := w.stats.snapshot()
	s.Sink = w.name
	n, err := w.src.Len(ctx)
	if err != nil {
		return s, fmt.Errorf("forwarders: snapshot of sink %s: %w", w.name, err)
	}
	s.QueueDepth = n
	if at, ok, err := w.src.Oldest(ctx); err != nil {
		return s, fmt.Errorf("forwarders: snapshot of sink %s: %w", w.name, err)
	} else if ok {
		s.OldestAge = time.Since(at)
	}
	return s, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
