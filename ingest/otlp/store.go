package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/outbox"
)

// What both protocols share: the memory a request holds of the ingest
// budget, and how a refused append is answered. Each protocol speaks the
// answer in its own terms (an HTTP status with a google.rpc.Status body,
// or a gRPC status).

// Counters are a receiver's, for metrics.
type Counters struct {
	Accepted atomic.Int64 // records accepted (committed)
	Bytes    atomic.Int64 // bytes of the accepted records, as stored
	Refused  atomic.Int64 // requests refused, for any reason
	Rejected atomic.Int64 // records over the record limit, reported in partial_success
}

// hold is what one request holds of the shared ingest budget; release
// gives it back once the records are committed or refused.
type hold struct {
	ctx    context.Context
	budget *ingest.Budget
	wait   time.Duration
	n      int64
}

// charge takes n more bytes, waiting at most wait for them. A request that
// would need more than the whole budget fails with ingest.ErrOverBudget.
func (h *hold) charge(n int64) error {
	if h.n+n > h.budget.Size() {
		return fmt.Errorf("%d bytes: %w", h.n+n, ingest.ErrOverBudget)
	}
	if err := h.budget.AcquireWithin(h.ctx, n, h.wait); err != nil {
		return err
	}
	h.n += n
	return nil
}

func (h *hold) release() {
	h.budget.Release(h.n)
	h.n = 0
}

// refusal is why a request stored nothing.
type refusal struct {
	status int           // the HTTP status
	code   int           // the gRPC status code (also in HTTP's google.rpc.Status body)
	retry  time.Duration // > 0: the client may retry after this long
	msg    string
}

// refuseAppend classifies an error of Append; nil for none.
func refuseAppend(err error, records int, log *slog.Logger) *refusal {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, outbox.ErrQueueFull):
		return &refusal{503, codeUnavailable, time.Second, "the outbox is full; retry later"}
	case errors.Is(err, outbox.ErrDiskFull):
		return &refusal{503, codeUnavailable, 5 * time.Second, "the disk is full; nothing of this request was stored; retry later"}
	case errors.Is(err, ingest.ErrNoRoute):
		return &refusal{422, codeFailedPrecondition, 0, "no route takes records from source otlp, so nothing was stored; " +
			"the configuration's routes must include one for otlp (retrying will not help)"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &refusal{503, codeUnavailable, time.Second, "the outbox did not take the records in time; nothing was stored; retry later"}
	}
	log.Error("store otlp records", "count", records, "err", err)
	return &refusal{500, codeInternal, 0, "could not store the records; nothing was stored"}
}

// refuseCharge classifies an error of hold.charge.
func refuseCharge(err error, budget int64) *refusal {
	if errors.Is(err, ingest.ErrOverBudget) {
		return &refusal{413, codeInvalidArgument, 0,
			fmt.Sprintf("the request needs more memory than ingest's whole budget (%d bytes); send smaller requests", budget)}
	}
	return &refusal{503, codeUnavailable, time.Second, "ingest is busy (its memory budget is taken); retry later"}
}

// rejectedMessage is partial_success's error message for n records over
// the record limit.
func rejectedMessage(n, limit int) string {
	return fmt.Sprintf("%d log records over the record size limit of %d bytes (as stored) were not stored", n, limit)
}
