package forwarders

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/outboxd/outboxd/outbox"
)

// ErrDeadLettersFull is returned (wrapped) while the dead-letter file is at
// its limit: records the sink refused cannot be moved there.
var ErrDeadLettersFull = errors.New("dead-letter queue full")

// deadLetterRoom says whether n more bytes fit in the dead-letter file of
// the worker's queue. It counts the file's pages in use, as max_disk_bytes
// does for the outbox, so that space freed by `outboxd dlq purge` or
// `replay` counts at once, before SQLite gives it back to the disk.
func (w *Worker) deadLetterRoom(ctx context.Context, n int64) error {
	if w.maxDLQ <= 0 {
		return nil
	}
	p, ok := w.src.(interface{ Path() string })
	if !ok {
		return nil
	}
	path := outbox.DLQPath(p.Path())
	used, err := pagesInUse(ctx, path)
	if err != nil {
		return fmt.Errorf("sink %s: measure the dead-letter queue: %w", w.name, err)
	}
	if used+n > w.maxDLQ {
		return fmt.Errorf("sink %s: %w: %s holds %d bytes, %d more would pass max_dlq_bytes %d; records stay queued until `outboxd dlq purge` or `replay` makes room",
			w.name, ErrDeadLettersFull, path, used, n, w.maxDLQ)
	}
	return nil
}

// pagesInUse returns the bytes of the SQLite file's pages that hold data;
// 0 if the file does not exist yet.
func pagesInUse(ctx context.Context, path string) (int64, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var pages, free, size int64
	for q, v := range map[string]*int64{"PRAGMA page_count": &pages, "PRAGMA freelist_count": &free, "PRAGMA page_size": &size} {
		if err := db.QueryRowContext(ctx, q).Scan(v); err != nil {
			return 0, fmt.Errorf("%s: %s: %w", path, q, err)
		}
	}
	return (pages - free) * size, nil
}

// waitForDeadLetterRoom waits, with the batch's backoff, until the refused
// records fit in the dead-letter file. Meanwhile the sink counts as failing
// (logs, /readyz, metrics) and nothing is sent again: the records it took
// stay delivered and the refused ones stay queued. It returns ctx's error if
// the worker stops first.
func (w *Worker) waitForDeadLetterRoom(ctx context.Context, items [][]byte, rejected map[int]string) error {
	var n int64
	for i, reason := range rejected {
		n += int64(len(items[i]) + len(reason))
	}
	bo := w.retry.newBackOff()
	for {
		err := w.deadLetterRoom(ctx, n)
		if err == nil {
			return nil
		}
		delay := bo.NextBackOff()
		w.stats.failed(err, delay, w.log)
		if err := w.sleep(ctx, delay); err != nil {
			return err
		}
	}
}
