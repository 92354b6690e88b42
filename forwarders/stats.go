package forwarders

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are a worker's counters, for the daemon's metrics and logs.
type Stats struct {
	RecordsSent atomic.Int64 // records the sink confirmed
	Batches     atomic.Int64 // batches the sink confirmed
	Retries     atomic.Int64 // failed attempts that were retried
	Rejected    atomic.Int64 // records moved to the dead-letter queue
	// Misconfigured counts failed attempts that the destination refused
	// for the sink's own settings (a *MisconfiguredError).
	Misconfigured atomic.Int64

	mu           sync.Mutex
	failures     int // consecutive failed attempts
	lastLogged   time.Time
	lastError    string
	lastErrorAt  time.Time
	failingSince time.Time
	backoff      time.Duration
	needsAction  bool // the last failure waits for an operator, not for time
}

// repeatLog is the least time between two failure logs of one sink.
const repeatLog = 30 * time.Second

// Snapshot is a point-in-time copy of a worker's state.
type Snapshot struct {
	Sink                string
	RecordsSent         int64
	Batches             int64
	Retries             int64
	Rejected            int64
	Misconfigured       int64
	ConsecutiveFailures int
	LastError           string
	LastErrorAt         time.Time
	FailingSince        time.Time // zero while healthy
	Backoff             time.Duration
	QueueDepth          int
	OldestAge           time.Duration
	// NeedsAction: the sink fails for a reason that waiting will not fix
	// (its settings or credentials, or a full dead-letter file).
	NeedsAction bool
}

func (s *Stats) snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Snapshot{
		RecordsSent: s.RecordsSent.Load(), Batches: s.Batches.Load(),
		Retries: s.Retries.Load(), Rejected: s.Rejected.Load(), Misconfigured: s.Misconfigured.Load(),
		ConsecutiveFailures: s.failures, LastError: s.lastError, LastErrorAt: s.lastErrorAt,
		FailingSince: s.failingSince, Backoff: s.backoff, NeedsAction: s.needsAction,
	}
}

// failed records a failed attempt. It logs the first failure, then a new
// error at most every repeatLog, so that a sink down for a day (whose errors
// alternate between refused, reset and timed out) does not flood the journal.
func (s *Stats) failed(err error, next time.Duration, log *slog.Logger) {
	s.Retries.Add(1)
	level := slog.LevelWarn
	_, misconfigured := errors.AsType[*MisconfiguredError](err)
	if misconfigured {
		s.Misconfigured.Add(1)
	}
	needsAction := misconfigured || errors.Is(err, ErrDeadLettersFull)
	if needsAction {
		level = slog.LevelError // someone has to act: this outage does not pass
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.needsAction = needsAction
	now := time.Now()
	msg := err.Error()
	if s.failures == 0 {
		s.failingSince = now
	}
	s.failures++
	if s.failures == 1 || (msg != s.lastError && now.Sub(s.lastLogged) >= repeatLog) {
		log.Log(context.Background(), level, "send failed; retrying", "err", msg, "attempt", s.failures, "retry_in", next,
			"failing_for", now.Sub(s.failingSince).Round(time.Millisecond))
		s.lastLogged = now
	}
	s.lastError, s.lastErrorAt, s.backoff = msg, now, next
}

// delivered records a delivered batch, and a recovery once.
func (s *Stats) delivered(records int, log *slog.Logger) {
	s.RecordsSent.Add(int64(records))
	s.Batches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		log.Info("sink recovered", "failed_attempts", s.failures, "down_for", time.Since(s.failingSince).Round(time.Millisecond))
	}
	s.failures, s.backoff, s.failingSince, s.needsAction = 0, 0, time.Time{}, false
}
