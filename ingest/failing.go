package ingest

import (
	"log/slog"
	"sync"
)

// Failing is the state of a loop that runs for days and fails now and
// then: the error is logged once until its text changes, and the recovery
// once. Its methods are safe from several goroutines.
type Failing struct {
	mu  sync.Mutex
	err error
}

// Fail records err, and logs it with msg unless it is the error logged last.
func (f *Failing) Fail(log *slog.Logger, msg string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	same := f.err != nil && f.err.Error() == err.Error()
	f.err = err
	if !same {
		log.Error(msg, "err", err)
	}
}

// Recovered clears the error, and logs msg when there was one.
func (f *Failing) Recovered(log *slog.Logger, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		f.err = nil
		log.Info(msg)
	}
}

// Err is the error recorded last, nil after a recovery.
func (f *Failing) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
