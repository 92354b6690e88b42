package forwarders

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

func openQueue(t *testing.T) *outbox.Queue[[]byte] {
	t.Helper()
	q, err := outbox.Open(context.Background(), filepath.Join(t.TempDir(), "out.db"), "sink", outbox.Options[[]byte]{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// record is the test's envelope: a number the oracle can check.
func record(n int) []byte {
	b, _ := json.Marshal(map[string]any{"n": n, "message": "the quick brown fox jumps over the lazy dog"})
	return b
}

func numberOf(t *testing.T, r []byte) int {
	t.Helper()
	var v struct{ N int }
	if err := json.Unmarshal(r, &v); err != nil {
		t.Fatalf("record %q: %v", r, err)
	}
	return v.N
}

func fill(t *testing.T, q *outbox.Queue[[]byte], from, n int) {
	t.Helper()
	batch := make([][]byte, 0, 1000)
	for i := from; i < from+n; i++ {
		batch = append(batch, record(i))
		if len(batch) == cap(batch) || i == from+n-1 {
			if err := q.SendBatch(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// collector is a real HTTP server that keeps every record it accepted, in
// order, and can be told to fail.
type collector struct {
	*httptest.Server
	mu      sync.Mutex
	got     [][]byte
	reqs    int
	answer  func(req int, body []byte) int // status to answer; nil: 200
	headers http.Header
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil { // the sender died mid-body: keep nothing of it
		http.Error(w, err.Error(), 400)
		return
	}
	c.mu.Lock()
	c.reqs++
	req := c.reqs
	answer := c.answer
	c.headers = r.Header.Clone()
	c.mu.Unlock()
	status := 200
	if answer != nil {
		status = answer(req, data)
	}
	if status < 0 { // drop the connection without an answer
		if hj, ok := w.(http.Hijacker); ok {
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
	}
	if status != 200 {
		if status == 429 || status == 503 {
			w.Header().Set("Retry-After", "0")
		}
		http.Error(w, "collector says no", status)
		return
	}
	records := splitBody(data, r.Header.Get("Content-Type"))
	c.mu.Lock()
	c.got = append(c.got, records...)
	c.mu.Unlock()
	w.WriteHeader(200)
}

func splitBody(data []byte, contentType string) [][]byte {
	var out [][]byte
	if contentType == "application/json" {
		var arr []json.RawMessage
		json.Unmarshal(data, &arr)
		for _, r := range arr {
			out = append(out, []byte(r))
		}
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

func (c *collector) records() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got...)
}

func (c *collector) setAnswer(f func(req int, body []byte) int) {
	c.mu.Lock()
	c.answer = f
	c.mu.Unlock()
}

// runWorker runs w until stop is called, and waits for it to return.
func runWorker(t *testing.T, w *Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("worker did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkInOrder verifies that got holds 0..n-1, each at least once, and
// that a record appears again only as part of a resent batch; it returns the
// number of duplicates.
func checkDelivered(t *testing.T, got [][]byte, n int) (dups int) {
	t.Helper()
	seen := make([]int, n)
	highest := -1
	for _, r := range got {
		v := numberOf(t, r)
		if v < 0 || v >= n {
			t.Fatalf("unexpected record %d", v)
		}
		seen[v]++
		if seen[v] == 1 && v != highest+1 {
			t.Fatalf("order broken: record %d arrived first after %d", v, highest)
		}
		if v > highest {
			highest = v
		}
	}
	for v, c := range seen {
		if c == 0 {
			t.Fatalf("record %d never arrived", v)
		}
		dups += c - 1
	}
	return dups
}

// quietLog keeps worker logs out of test output.
var quietLog = slog.New(slog.DiscardHandler)

// fastRetry keeps tests quick: waits of a few milliseconds.
var fastRetry = Retry{Initial: time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2, Jitter: 0.5}
