package outbox

import (
	"slices"
	"sync"
	"time"
)

// CommitStats describes the commits made to one database file since it was
// opened in this process. Every Queue on the file reports the same numbers.
// The Writers histogram is the proof that group commit works: under load,
// many writes share one transaction and one fsync.
type CommitStats struct {
	Commits int64     // transactions committed
	Records int64     // records inserted by them
	Latency Histogram // seconds per commit: its statements and its fsync
	Writers Histogram // writes (a Send, a SendBatch, an Ack, ...) that shared one commit
}

// Histogram is a cumulative histogram in the Prometheus style: Counts[i] is
// how many observations were at most Bounds[i]; Count includes those above
// the last bound.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// Bucket bounds: commit latency from 50µs (a commit without an fsync) to
// 2.5s (a stalled disk); writers per commit in powers of two up to the
// committer's own limit.
var (
	latencyBounds = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	writerBounds  = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}
)

// histogram counts observations per bucket. Only the committer observes;
// readers take a snapshot, so a mutex costs nothing that matters.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []uint64 // per bucket, not cumulative; the last counts what is above every bound
	sum    float64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.mu.Unlock()
}

func (h *histogram) snapshot() Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Histogram{Bounds: h.bounds, Counts: make([]uint64, len(h.bounds)), Sum: h.sum}
	var cum uint64
	for i, n := range h.counts {
		cum += n
		if i < len(h.bounds) {
			s.Counts[i] = cum
		}
	}
	s.Count = cum
	return s
}

// commitTimings holds the committer's histograms.
type commitTimings struct {
	latency *histogram
	writers *histogram
}

func newCommitTimings() commitTimings {
	return commitTimings{latency: newHistogram(latencyBounds), writers: newHistogram(writerBounds)}
}

func (t commitTimings) observe(writers int, took time.Duration) {
	t.latency.observe(took.Seconds())
	t.writers.observe(float64(writers))
}

// CommitStats reports the commits made to the queue's database file.
func (q *Queue[T]) CommitStats() CommitStats {
	c := q.store.commit
	return CommitStats{
		Commits: c.stats.commits.Load(),
		Records: c.stats.rows.Load(),
		Latency: c.timings.latency.snapshot(),
		Writers: c.timings.writers.snapshot(),
	}
}
