package files

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

var long = flag.Bool("long", false, "churn 10,000 files instead of 2,000")

func TestBackPressure(t *testing.T) {
	h := newHarnessMax(t, 100, entry("DIR/*.log"))
	h.write("a.log", numbered("line", 0, 1000))
	h.start()
	time.Sleep(500 * time.Millisecond)
	// The queue is full: the tailer waits, and the file is the buffer.
	if n, _ := h.q.Len(t.Context()); n > 100 || !h.q.Full() {
		t.Fatalf("queue holds %d (full: %v), want a write waiting for room", n, h.q.Full())
	}
	for _, p := range h.marks() {
		if p.Offset >= int64(len(numbered("line", 0, 1000))) {
			t.Fatalf("the mark reached the end (%d) while the queue was full", p.Offset)
		}
	}
	h.wait(1000) // draining makes room; everything comes, once
	if got := h.messages(); got[0] != "line 0" || got[999] != "line 999" {
		t.Fatalf("order: %s ... %s", got[0], got[999])
	}
}

func TestStateBounded(t *testing.T) {
	files := 2000
	if *long {
		files = 10_000
	}
	e := entry("DIR/*.log")
	e.RotateWait, e.Rescan = 20*time.Millisecond, 20*time.Millisecond
	h := newHarness(t, e)
	h.start()
	goroutines := 0
	const batch = 200
	for b := 0; b < files/batch; b++ {
		if b == 1 {
			goroutines = runtime.NumGoroutine() // the tailer's own are running by now
		}
		for i := range batch {
			h.write(fmt.Sprintf("f%05d.log", b*batch+i), "one line\n")
		}
		h.wait((b + 1) * batch)
		for i := range batch {
			os.Remove(h.path(fmt.Sprintf("f%05d.log", b*batch+i)))
		}
	}
	waitFor(t, "every churned file forgotten", func() bool { return len(h.marks()) == 0 && len(h.tl.Files()) == 0 })
	if len(openDeleted(t)) > 0 {
		t.Fatalf("deleted files still open: %d", len(openDeleted(t)))
	}
	if g := runtime.NumGoroutine(); g > goroutines+5 {
		t.Fatalf("goroutines: %d after the churn, %d before", g, goroutines)
	}
	t.Logf("%d files churned through; marks, tracked files and descriptors back to none", files)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// These tests are about bounds, not speed: under -race on a 2-core
	// machine busy with other tests, a round of 1,000 files took over 20 s.
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestManyFilesMemory tracks 1,000 files written in rounds: the heap after
// each round stays flat (a file costs its descriptor and a few hundred
// bytes, and no buffer is kept between reads).
func TestManyFilesMemory(t *testing.T) {
	const files, rounds = 1000, 5
	h := newHarness(t, entry("DIR/*.log"))
	h.start()
	var heap []uint64
	for r := range rounds {
		for i := range files {
			h.write(fmt.Sprintf("f%04d.log", i), numbered(fmt.Sprintf("round %d file", r), i*10, 10))
		}
		waitFor(t, "the round's records", func() bool { return h.tl.Stats().Records.Load() == int64((r+1)*files*10) })
		h.records() // the test's own copies go too
		h.got = nil
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = append(heap, ms.HeapInuse)
	}
	t.Logf("heap in use after each round of 10,000 lines to 1,000 files (MiB): %.1f; RSS now %s",
		mib(heap), rss())
	if heap[rounds-1] > heap[1]+4<<20 {
		t.Fatalf("the heap grew from %d to %d bytes over the rounds", heap[1], heap[rounds-1])
	}
}

func mib(v []uint64) []float64 {
	out := make([]float64, len(v))
	for i, b := range v {
		out[i] = float64(b) / (1 << 20)
	}
	return out
}

func rss() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}
