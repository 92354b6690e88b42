package outbox

import (
	"context"
	"runtime"
	"slices"
	"testing"
)

// countingReader is a store's claim reader that counts the rows it read.
type countingReader struct {
	rowReader
	rows int
}

func (r *countingReader) read(ctx context.Context, table string, after, upTo int64, limit int) ([]storedRow, error) {
	rows, err := r.rowReader.read(ctx, table, after, upTo, limit)
	r.rows += len(rows)
	return rows, err
}

func (r *countingReader) readBytes(ctx context.Context, table string, after, upTo int64, limit int, bc byteCap) ([]storedRow, int64, error) {
	rows, stop, err := r.rowReader.readBytes(ctx, table, after, upTo, limit, bc)
	r.rows += len(rows)
	return rows, stop, err
}

// allocatedBy is how many bytes f allocated on the Go heap (in the whole
// process: the queue's committer is idle meanwhile).
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestClaimReadsBounded(t *testing.T) {
	for _, path := range []struct {
		name string
		off  bool
	}{{"through the C API", false}, {"through database/sql", true}} {
		t.Run("a claim of large records reads about maxBytes of them, not limit, "+path.name, func(t *testing.T) {
			fastPathsOff.Store(path.off)
			t.Cleanup(func() { fastPathsOff.Store(false) })
			ctx := testCtx(t)
			q := mustOpen(t, tempDB(t), "events", Options[[]byte]{Durability: DurabilityOff})
			const records, size = 200, 64 << 10 // 12.5 MiB queued
			batch := make([][]byte, records)
			for i := range batch {
				batch[i] = make([]byte, size)
			}
			if err := q.SendBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
			var counter *countingReader
			if real := q.store.reader; real != nil {
				counter = &countingReader{rowReader: real}
				q.store.reader = counter
				t.Cleanup(func() { q.store.reader = real })
			} else if !path.off {
				t.Fatal("the store has no claimReader to wrap")
			}
			var l *Lease[[]byte]
			var err error
			alloc := allocatedBy(func() { l, err = q.ClaimBytes(ctx, records, 3*size+size/2) })
			if err != nil {
				t.Fatal(err)
			}
			if l.Len() != 3 {
				t.Fatalf("the claim holds %d records of %d bytes under a cap of 3.5 records, want 3", l.Len(), size)
			}
			if counter != nil && counter.rows != 3 {
				t.Fatalf("the claim read %d rows to return 3", counter.rows)
			}
			// The claim's 3 records, the row the fallback reads and drops,
			// and some slack; reading all 200 records would allocate 12.5 MiB.
			if limit := uint64(1 << 20); alloc > limit {
				t.Fatalf("the claim allocated %d KiB, want at most %d KiB", alloc>>10, limit>>10)
			}
			t.Logf("the claim allocated %d KiB", alloc>>10)
			if err := l.Ack(ctx); err != nil {
				t.Fatal(err)
			}
			if l, err = q.ClaimBytes(ctx, records, 1); err != nil || l.Len() != 1 {
				t.Fatalf("a claim under a 1-byte cap: %v, %v; want one record", l, err)
			}
		})

		t.Run("a claim after a release skips leased rows without counting them against the cap, "+path.name, func(t *testing.T) {
			fastPathsOff.Store(path.off)
			t.Cleanup(func() { fastPathsOff.Store(false) })
			ctx := testCtx(t)
			q := mustOpen(t, tempDB(t), "events", Options[[]byte]{})
			sizes := []int{10, 10, 100, 100, 10, 100}
			var in [][]byte
			for i, n := range sizes {
				b := make([]byte, n)
				b[0] = byte(i + 1)
				in = append(in, b)
			}
			if err := q.SendBatch(ctx, in); err != nil {
				t.Fatal(err)
			}
			first, err := q.Claim(ctx, 2) // 1, 2
			if err != nil {
				t.Fatal(err)
			}
			if _, err := q.Claim(ctx, 2); err != nil { // 3, 4: stay leased
				t.Fatal(err)
			}
			if err := first.Release(ctx); err != nil {
				t.Fatal(err)
			}
			l, err := q.ClaimBytes(ctx, 10, 35)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, b := range l.Items() {
				got = append(got, int(b[0]))
			}
			if want := []int{1, 2, 5}; !slices.Equal(got, want) {
				t.Fatalf("the claim took records %v, want %v: 3 and 4 are leased, 6 does not fit", got, want)
			}
		})
	}
}
