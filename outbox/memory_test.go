package outbox

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// rssAnon is the process's anonymous resident memory: the Go heap plus
// SQLite's own allocations, without the memory-mapped database file.
func rssAnon(t *testing.T) int64 {
	t.Helper()
	runtime.GC()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status:", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Skip("RssAnon not in /proc/self/status")
	return 0
}

func TestMemoryFlat(t *testing.T) {
	t.Run("memory does not grow with the number of queued records", func(t *testing.T) {
		if testing.Short() || raceEnabled {
			t.Skip("queues a million records: runs without -short and -race")
		}
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "events", Options[[]byte]{Durability: DurabilityOff})
		batch := make([][]byte, 1000)
		for i := range batch {
			batch[i] = make([]byte, 256)
		}
		fill := func(n int) {
			for range n / len(batch) {
				if err := q.SendBatch(ctx, batch); err != nil {
					t.Fatal(err)
				}
			}
		}
		fill(100_000)
		at100k := rssAnon(t)
		fill(900_000)
		at1M := rssAnon(t)
		if n := mustLen(t, q); n != 1_000_000 {
			t.Fatalf("Len = %d", n)
		}
		// A million records are 256 MB of payload; a queue that held them
		// would grow by that much. Allow a few MiB of allocator noise.
		const slack = 16 << 20
		t.Logf("anonymous RSS: %d MiB at 100k records, %d MiB at 1M", at100k>>20, at1M>>20)
		if at1M-at100k > slack {
			t.Fatalf("anonymous RSS grew by %d MiB from 100k to 1M queued records", (at1M-at100k)>>20)
		}
	})
}
