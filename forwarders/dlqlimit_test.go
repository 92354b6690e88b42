package forwarders

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

func TestDeadLetterLimit(t *testing.T) {
	t.Run("at max_dlq_bytes refused records wait in the queue, nothing is resent, and a purge lets them through", func(t *testing.T) {
		const limit = 96 << 10
		q := openQueue(t)
		c := newCollector(t)
		c.setAnswer(func(req int, body []byte) int {
			if strings.Contains(string(body), "refuse me") {
				return 400
			}
			return 200
		})
		pad := strings.Repeat("x", 8<<10)
		for i := range 30 {
			q.Send(t.Context(), fmt.Appendf(nil, `{"message":"refuse me %s","n":%d}`, pad, i))
		}
		w := httpWorker(t, q, HTTPConfig{URL: c.URL}, Config{MaxDeadLetterBytes: limit,
			Batching: Batching{MaxRecords: 1, Linger: -1}, Retry: Retry{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
		stop := runWorker(t, w)
		waitFor(t, "a full DLQ", 30*time.Second, func() bool {
			return strings.Contains(w.Stats().snapshot().LastError, "dead-letter queue full")
		})
		c.mu.Lock()
		before := c.reqs
		c.mu.Unlock()
		time.Sleep(300 * time.Millisecond)
		c.mu.Lock()
		after := c.reqs
		c.mu.Unlock()
		if after != before {
			t.Fatalf("%d requests while the DLQ was full: the waiting batch was sent again", after-before)
		}
		dead, _ := dlqOf(t, q)
		queued, _ := q.Len(t.Context())
		if dead+queued != 30 || dead == 0 || dead >= 30 {
			t.Fatalf("%d dead letters and %d queued, want 30 in all and some of each", dead, queued)
		}
		if used, err := pagesInUse(t.Context(), outbox.DLQPath(q.Path())); err != nil || used > limit {
			t.Fatalf("the DLQ uses %d bytes (%v), over its limit %d", used, err, limit)
		}

		purge(t, q)
		waitFor(t, "more dead letters after the purge", 30*time.Second, func() bool {
			n, _ := q.Len(t.Context())
			return n < queued
		})
		stop()
		t.Logf("%d dead-lettered before the limit, %d waited", dead, queued)
	})
}

// purge deletes every dead letter of q, as `outboxd dlq purge` does.
func purge(t *testing.T, q *outbox.Queue[[]byte]) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+outbox.DLQPath(q.Path())+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM sink_dlq`); err != nil {
		t.Fatal(err)
	}
}
