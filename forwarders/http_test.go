package forwarders

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite"
	"github.com/outboxd/outboxd/outbox"
)

func httpWorker(t *testing.T, q *outbox.Queue[[]byte], cfg HTTPConfig, wc Config) *Worker {
	t.Helper()
	sink, err := NewHTTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	if wc.Name == "" {
		wc.Name = "collector"
	}
	wc.Logger = quietLog
	if wc.Retry == (Retry{}) {
		wc.Retry = fastRetry
	}
	return NewWorker(wc, q, sink)
}

func TestHTTPSink(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  HTTPConfig
	}{
		{"ndjson", HTTPConfig{}},
		{"json array", HTTPConfig{Format: "json_array"}},
		{"gzip ndjson", HTTPConfig{Gzip: true}},
	} {
		t.Run("every record arrives once, in order, byte for byte, as "+tc.name, func(t *testing.T) {
			q := openQueue(t)
			c := newCollector(t)
			tc.cfg.URL = c.URL
			fill(t, q, 0, 5000)
			stop := runWorker(t, httpWorker(t, q, tc.cfg, Config{}))
			waitFor(t, "5000 records", 30*time.Second, func() bool { return len(c.records()) >= 5000 })
			stop()
			got := c.records()
			if dups := checkDelivered(t, got, 5000); dups != 0 {
				t.Fatalf("%d duplicates without any failure", dups)
			}
			for i, r := range got {
				if string(r) != string(record(i)) {
					t.Fatalf("record %d = %s, want %s", i, r, record(i))
				}
			}
			if n, _ := q.Len(context.Background()); n != 0 {
				t.Fatalf("queue still holds %d records", n)
			}
		})
	}

	t.Run("headers and bearer auth are sent", func(t *testing.T) {
		q := openQueue(t)
		c := newCollector(t)
		fill(t, q, 0, 1)
		stop := runWorker(t, httpWorker(t, q, HTTPConfig{URL: c.URL, BearerToken: "s3cret", Headers: map[string]string{"X-Site": "shop-7"}}, Config{}))
		waitFor(t, "a record", 10*time.Second, func() bool { return len(c.records()) == 1 })
		stop()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.headers.Get("Authorization") != "Bearer s3cret" || c.headers.Get("X-Site") != "shop-7" {
			t.Fatalf("headers = %v", c.headers)
		}
	})

	t.Run("a bad configuration is refused with what is wrong", func(t *testing.T) {
		for _, cfg := range []HTTPConfig{{URL: "ftp://x"}, {URL: "http://x", Format: "xml"}, {URL: "http://x", TLS: TLS{CAFile: "/nonexistent.pem"}}} {
			if _, err := NewHTTP(cfg); err == nil {
				t.Errorf("NewHTTP(%+v) succeeded", cfg)
			}
		}
	})
}

func TestHTTPOutage(t *testing.T) {
	t.Run("100,000 records through a collector that fails for a while all arrive in order", func(t *testing.T) {
		const total = 100_000
		q := openQueue(t)
		c := newCollector(t)
		var mu sync.Mutex
		outage, lostAnswer := false, false
		c.setAnswer(func(req int, body []byte) int {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !outage:
				return 200
			case !lostAnswer:
				// The first request of the outage is taken, but its answer
				// is lost: the worker must send that batch again.
				lostAnswer = true
				c.mu.Lock()
				c.got = append(c.got, splitBody(body, "")...)
				c.mu.Unlock()
				return -1
			case req%2 == 0:
				return -1 // drop the connection
			default:
				return 503
			}
		})
		stop := runWorker(t, httpWorker(t, q, HTTPConfig{URL: c.URL}, Config{Batching: Batching{Linger: -1}}))
		// Produce while the collector goes down and comes back.
		produced := make(chan struct{})
		go func() {
			defer close(produced)
			for i := 0; i < total; i += 1000 {
				fill(t, q, i, 1000)
				switch i {
				case 30_000:
					mu.Lock()
					outage = true
					mu.Unlock()
				case 60_000:
					mu.Lock()
					outage = false
					mu.Unlock()
				}
			}
		}()
		<-produced
		waitFor(t, "all records", 60*time.Second, func() bool {
			n, _ := q.Len(context.Background())
			return n == 0 && len(c.records()) >= total
		})
		stop()
		dups := checkDelivered(t, c.records(), total)
		if dups == 0 || dups > 1000 {
			t.Fatalf("%d duplicates; want one batch at most (the one whose answer was lost), and more than none", dups)
		}
		c.mu.Lock()
		t.Logf("%d records, %d requests, %d duplicates", total, c.reqs, dups)
		c.mu.Unlock()
	})
}

func TestHTTPRejections(t *testing.T) {
	t.Run("a batch refused with 400 is split until the refused record stands alone; only it goes to the DLQ", func(t *testing.T) {
		q := openQueue(t)
		c := newCollector(t)
		c.setAnswer(func(req int, body []byte) int {
			if strings.Contains(string(body), `"n":1000}`) {
				return 400
			}
			return 200
		})
		fill(t, q, 0, 3000)
		w := httpWorker(t, q, HTTPConfig{URL: c.URL}, Config{Batching: Batching{MaxRecords: 1000, Linger: -1}})
		stop := runWorker(t, w)
		waitFor(t, "2999 records", 30*time.Second, func() bool { return len(c.records()) >= 2999 })
		stop()
		got := c.records()
		if len(got) != 2999 || numberOf(t, got[999]) != 999 || numberOf(t, got[1000]) != 1001 {
			t.Fatalf("collector got %d records", len(got))
		}
		n, reason := dlqOf(t, q)
		if n != 1 || !strings.Contains(reason, "400") || !strings.Contains(reason, "collector says no") {
			t.Fatalf("DLQ holds %d records, reason %q", n, reason)
		}
		if w.Stats().Rejected.Load() != 1 {
			t.Fatalf("Rejected = %d", w.Stats().Rejected.Load())
		}
	})
}

// dlqOf counts q's dead letters and returns the first reason.
func dlqOf(t *testing.T, q *outbox.Queue[[]byte]) (int, string) {
	t.Helper()
	db, err := sql.Open("sqlite", outbox.DLQPath(q.Path()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	var reason sql.NullString
	db.QueryRow(`SELECT COUNT(*), MIN(error_message) FROM sink_dlq`).Scan(&n, &reason)
	return n, reason.String
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"3": 3 * time.Second, "0": 0, now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got, ok := retryAfter(in, now); !ok || got != want {
			t.Errorf("retryAfter(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "soon", "-5"} {
		if _, ok := retryAfter(in, now); ok {
			t.Errorf("retryAfter(%q) parsed", in)
		}
	}

	t.Run("a 429 with Retry-After makes the worker wait what the server asked, capped", func(t *testing.T) {
		q := openQueue(t)
		var calls int
		srv := newCollector(t)
		srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			if calls <= 2 {
				w.Header().Set("Retry-After", []string{"7", "3600"}[calls-1])
				w.WriteHeader(429)
				return
			}
			w.WriteHeader(200)
		})
		fill(t, q, 0, 1)
		w := httpWorker(t, q, HTTPConfig{URL: srv.URL}, Config{Batching: Batching{Linger: -1}, Retry: Retry{MaxRetryAfter: time.Minute}})
		var waits []time.Duration
		var mu sync.Mutex
		w.sleep = func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
			return ctx.Err()
		}
		stop := runWorker(t, w)
		waitFor(t, "delivery", 10*time.Second, func() bool { return w.Stats().RecordsSent.Load() == 1 })
		stop()
		mu.Lock()
		defer mu.Unlock()
		if len(waits) != 2 || waits[0] != 7*time.Second || waits[1] != time.Minute {
			t.Fatalf("waits = %v, want [7s 1m0s]", waits)
		}
	})
}

// flaky fails its first n sends with a transient error.
type flaky struct {
	mu    sync.Mutex
	fails int
	sent  [][]byte
}

func (f *flaky) Send(ctx context.Context, records [][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return errors.New("connection refused")
	}
	f.sent = append(f.sent, records...)
	return nil
}

func (f *flaky) Close() error { return nil }

func TestBackoff(t *testing.T) {
	t.Run("waits grow, are jittered, stop at the cap, and start over after a success", func(t *testing.T) {
		q := openQueue(t)
		sink := &flaky{fails: 12}
		retry := Retry{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.5}
		w := NewWorker(Config{Name: "flaky", Retry: retry, Batching: Batching{Linger: -1}, Logger: quietLog}, q, sink)
		var waits []time.Duration
		var mu sync.Mutex
		w.sleep = func(ctx context.Context, d time.Duration) error { // a fake clock: no real waiting
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
			return ctx.Err()
		}
		fill(t, q, 0, 1)
		stop := runWorker(t, w)
		waitFor(t, "first delivery", 10*time.Second, func() bool { return w.Stats().RecordsSent.Load() == 1 })
		sink.mu.Lock()
		sink.fails = 1
		sink.mu.Unlock()
		fill(t, q, 1, 1)
		waitFor(t, "second delivery", 10*time.Second, func() bool { return w.Stats().RecordsSent.Load() == 2 })
		stop()

		mu.Lock()
		defer mu.Unlock()
		if len(waits) != 13 {
			t.Fatalf("%d waits, want 13: %v", len(waits), waits)
		}
		nominal := retry.Initial
		distinct := map[time.Duration]bool{}
		for i, d := range waits[:12] {
			lo, hi := time.Duration(float64(nominal)*0.5), time.Duration(float64(nominal)*1.5)
			if d < lo || d > hi {
				t.Errorf("wait %d = %v, want within [%v, %v]", i, d, lo, hi)
			}
			distinct[d] = true
			nominal = min(time.Duration(float64(nominal)*retry.Multiplier), retry.Max)
		}
		if len(distinct) < 10 {
			t.Errorf("waits are not jittered: %v", waits)
		}
		if last := waits[11]; last > 3*time.Second {
			t.Errorf("wait after the cap = %v, want at most 1.5 × 2s", last)
		}
		if first := waits[12]; first > 150*time.Millisecond {
			t.Errorf("after a success the first wait is %v: backoff did not start over", first)
		}
		if w.Stats().Retries.Load() != 13 {
			t.Errorf("Retries = %d", w.Stats().Retries.Load())
		}
	})
}

func TestShutdown(t *testing.T) {
	t.Run("a send still in flight at stop is abandoned after the drain timeout and kept", func(t *testing.T) {
		q := openQueue(t)
		c := newCollector(t)
		release := make(chan struct{})
		c.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select { // hang until the client gives up
			case <-r.Context().Done():
			case <-release:
			}
		})
		defer close(release)
		fill(t, q, 0, 10)
		w := httpWorker(t, q, HTTPConfig{URL: c.URL}, Config{Batching: Batching{Linger: -1}, DrainTimeout: 100 * time.Millisecond})
		stop := runWorker(t, w)
		time.Sleep(50 * time.Millisecond) // let the request start
		start := time.Now()
		stop()
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("stop took %v with a 100ms drain timeout", d)
		}
		if n, _ := q.Len(context.Background()); n != 10 {
			t.Fatalf("queue holds %d records after an abandoned send, want 10", n)
		}
		if w.Stats().Retries.Load() != 0 {
			t.Fatal("an interrupted send was counted as a failed attempt")
		}
	})

	t.Run("a send that finishes within the drain timeout is acknowledged", func(t *testing.T) {
		q := openQueue(t)
		c := newCollector(t)
		c.setAnswer(func(int, []byte) int { time.Sleep(200 * time.Millisecond); return 200 })
		fill(t, q, 0, 10)
		w := httpWorker(t, q, HTTPConfig{URL: c.URL}, Config{Batching: Batching{Linger: -1}, DrainTimeout: 5 * time.Second})
		stop := runWorker(t, w)
		time.Sleep(50 * time.Millisecond)
		stop()
		if n, _ := q.Len(context.Background()); n != 0 || len(c.records()) != 10 {
			t.Fatalf("queue %d, collector %d", n, len(c.records()))
		}
	})
}

func TestConsole(t *testing.T) {
	var buf strings.Builder
	c := NewConsole(&buf)
	if err := c.Send(context.Background(), [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`)}); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "{\"a\":1}\n{\"b\":2}\n" {
		t.Fatalf("console wrote %q", buf.String())
	}
}

// TestOneBadRecordNotAThousand: a collector that refuses any request holding
// a marked record; 10 marked among 100,000: exactly those 10 are
// dead-lettered, the rest delivered once and in order, and the extra
// requests are bounded (about 2·log2(batch) a refused record) and counted.
func TestOneBadRecordNotAThousand(t *testing.T) {
	const n, marked = 100_000, 10
	bad := func(k int) bool { return k%(n/marked) == 1234 }
	q := openQueue(t)
	c := newCollector(t)
	c.setAnswer(func(req int, body []byte) int {
		for k := 1234; k < n; k += n / marked {
			if bytes.Contains(body, fmt.Appendf(nil, `"n":%d}`, k)) {
				return 400
			}
		}
		return 200
	})
	fill(t, q, 0, n)
	sink, w := splitWorker(t, q, c)
	stop := runWorker(t, w)
	waitFor(t, "every good record", 120*time.Second, func() bool { return len(c.records()) >= n-marked })
	stop()
	got := c.records()
	if len(got) != n-marked {
		t.Fatalf("collector got %d records, want %d", len(got), n-marked)
	}
	k := 0
	for _, r := range got {
		for bad(k) {
			k++
		}
		if numberOf(t, r) != k {
			t.Fatalf("record %d where %d was due: not once and in order", numberOf(t, r), k)
		}
		k++
	}
	if dl, _ := dlqOf(t, q); dl != marked || w.Stats().Rejected.Load() != marked {
		t.Fatalf("DLQ holds %d, Rejected %d; want %d", dl, w.Stats().Rejected.Load(), marked)
	}
	if s, most := sink.SplitRequests(), int64(marked*2*bits.Len(1000)); s == 0 || s > most {
		t.Fatalf("%d split requests; want some, at most %d", s, most)
	}
	t.Logf("%d marked of %d: %d extra requests to isolate them", marked, n, sink.SplitRequests())
}

// A collector that refuses every record: the split stops at its budget and
// dead-letters the rest of the batch whole, saying why.
func TestSplitBudget(t *testing.T) {
	q := openQueue(t)
	c := newCollector(t)
	c.setAnswer(func(int, []byte) int { return 400 })
	fill(t, q, 0, 1000)
	sink, w := splitWorker(t, q, c)
	stop := runWorker(t, w)
	waitFor(t, "the batch dead-lettered", 30*time.Second, func() bool { return w.Stats().Rejected.Load() == 1000 })
	stop()
	if s := sink.SplitRequests(); s > int64(splitBudget(1000)) {
		t.Fatalf("%d split requests, over the budget of %d", s, splitBudget(1000))
	}
	db, err := sql.Open("sqlite", outbox.DLQPath(q.Path()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var whole, alone int
	db.QueryRow(`SELECT COUNT(*) FROM sink_dlq WHERE error_message LIKE '%not split further%'`).Scan(&whole)
	db.QueryRow(`SELECT COUNT(*) FROM sink_dlq WHERE error_message NOT LIKE '%not split further%'`).Scan(&alone)
	if whole == 0 || alone == 0 || whole+alone != 1000 {
		t.Fatalf("%d dead-lettered whole (the budget spent), %d alone; want some of each, 1000 in all", whole, alone)
	}
	t.Logf("%d split requests: %d records isolated, %d dead-lettered whole", sink.SplitRequests(), alone, whole)
}

// splitWorker is an HTTP sink to c and its worker on q, in batches of 1000.
func splitWorker(t *testing.T, q *outbox.Queue[[]byte], c *collector) (*HTTP, *Worker) {
	t.Helper()
	sink, err := NewHTTP(HTTPConfig{URL: c.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	return sink, NewWorker(Config{Name: "collector", Logger: quietLog, Retry: fastRetry, Batching: Batching{MaxRecords: 1000, Linger: -1}}, q, sink)
}
