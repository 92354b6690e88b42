package forwarders

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sink delivers batches of records, each one JSON envelope as ingest stored
// it, to one destination.
//
// Send returns nil when every record was delivered. Otherwise its error says
// what to do, and the worker classifies it in one place (classify):
//   - a *RejectedError: the sink refused some records (or all) for good;
//     they go to the dead-letter queue. Its Retry field says whether the
//     other records were delivered (nil) or failed transiently.
//   - any other error is transient: the whole batch is sent again after a
//     backoff, or after the delay a *ThrottledError asks for. A
//     *MisconfiguredError is transient too, and logged as an error.
//
// Only what a record itself did wrong (too large, malformed) is a
// refusal. A destination that refuses the sink (credentials, address,
// permissions) refuses every record alike; dead-lettering them would empty
// the backlog into the DLQ over a rotated token, so that is retried.
//
// Send must return when ctx ends. A sink is used by one worker at a time.
type Sink interface {
	Send(ctx context.Context, records [][]byte) error
	Close() error
}

// RejectedError reports records that the destination will never accept.
type RejectedError struct {
	// Reasons maps the index of each refused record in the batch to why.
	Reasons map[int]string
	// Retry is nil when every other record was delivered, or the transient
	// error that kept them from being delivered.
	Retry error
}

func (e *RejectedError) Error() string {
	msg := fmt.Sprintf("%d records rejected", len(e.Reasons))
	for _, r := range e.Reasons { // one example is enough to read
		msg += " (for example: " + r + ")"
		break
	}
	if e.Retry != nil {
		msg += "; the rest failed: " + e.Retry.Error()
	}
	return msg
}

func (e *RejectedError) Unwrap() error { return e.Retry }

// RejectAll builds the RejectedError that refuses a whole batch of n records.
func RejectAll(n int, reason string) *RejectedError {
	r := &RejectedError{Reasons: make(map[int]string, n)}
	for i := range n {
		r.Reasons[i] = reason
	}
	return r
}

// ThrottledError is a transient failure for which the destination named how
// long to wait (HTTP Retry-After).
type ThrottledError struct {
	After time.Duration
	Err   error
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.After)
}

func (e *ThrottledError) Unwrap() error { return e.Err }

// MisconfiguredError is a transient failure that waiting alone will not
// fix: the destination refused the sink's credentials, address or
// permissions (HTTP 401, 403, 404; Kafka SASL or authorization failures).
// The batch is retried until the configuration or the destination is
// fixed; the worker logs it as an error and counts it.
type MisconfiguredError struct{ Err error }

func (e *MisconfiguredError) Error() string {
	return "sink misconfigured or unauthorized: " + e.Err.Error()
}

func (e *MisconfiguredError) Unwrap() error { return e.Err }

// outcome is what a worker does with a batch after one Send.
type outcome struct {
	rejected   map[int]string // indexes to dead-letter
	retry      error          // nil: the rest is delivered
	retryAfter time.Duration  // >0: the destination asked for this delay
}

// classify turns Send's error into an outcome.
func classify(err error) outcome {
	if err == nil {
		return outcome{}
	}
	var rej *RejectedError
	if errors.As(err, &rej) {
		o := classify(rej.Retry)
		o.rejected = rej.Reasons
		return o
	}
	o := outcome{retry: err}
	var th *ThrottledError
	if errors.As(err, &th) {
		o.retryAfter = th.After
	}
	return o
}
