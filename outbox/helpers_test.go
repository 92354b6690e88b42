package outbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCtx bounds a test's waits so that a bug shows up as a failure, not a hang.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func tempDB(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "q.db")
}

func mustOpen[T any](t *testing.T, path, table string, opts Options[T]) *Queue[T] {
	t.Helper()
	q, err := Open(testCtx(t), path, table, opts)
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", path, table, err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func mustLen[T any](t *testing.T, q *Queue[T]) int {
	t.Helper()
	n, err := q.Len(testCtx(t))
	if err != nil {
		t.Fatalf("Len: %v", err)
	}
	return n
}

// drain receives everything, in order.
func drain[T any](t *testing.T, q *Queue[T]) []T {
	t.Helper()
	var out []T
	for {
		items, err := q.RecvBatch(testCtx(t), 1000)
		if err != nil {
			t.Fatalf("RecvBatch: %v", err)
		}
		if len(items) == 0 {
			return out
		}
		out = append(out, items...)
	}
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

var osStat = os.Stat
