package otlp

import (
	"strings"
	"testing"
	"time"

	"github.com/outboxd/outboxd/ingest"
)

func TestBodyCharge(t *testing.T) {
	t.Run("a plain body of known length is charged its length once, not the doubling buffers", func(t *testing.T) {
		// A 140 KiB body: one buffer (140 KiB), the decoded logs (twice
		// the body) and the record (140 KiB) fit in 600 KiB; buffers
		// doubling from 64 KiB would take 448 KiB before the decode.
		q := openQueue(t, 0)
		budget := ingest.NewBudget(600 << 10)
		_, url := receiver(t, Config{Budget: budget, BudgetWait: 20 * time.Millisecond}, ingest.QueueAppender{Queue: q})
		r := post(t, url, ctProto, logsProto(t, strings.Repeat("z", 140<<10)))
		if r.status != 200 || len(stored(t, q)) != 1 || budget.InUse() != 0 {
			t.Fatalf("%d %q, budget in use %d", r.status, r.body, budget.InUse())
		}
		// Gzipped, its length is not known: the buffers double as before.
		r = post(t, url, ctProto, gzipped(logsProto(t, strings.Repeat("z", 140<<10))), "Content-Encoding", "gzip")
		if _, msg := rpcStatus(t, r); r.status != 413 || !strings.Contains(msg, "whole budget") || budget.InUse() != 0 {
			t.Fatalf("gzipped: %d %q, budget in use %d", r.status, msg, budget.InUse())
		}
	})
}
