package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// record is one NDJSON line of exactly size bytes (newline excluded).
func record(size int) string {
	const head, tail = `{"message":"`, `"}`
	return head + strings.Repeat("x", size-len(head)-len(tail)) + tail
}

// body is an NDJSON request of n records of size bytes.
func body(n, size int) []byte {
	return []byte(strings.Repeat(record(size)+"\n", n))
}

// collector is a sink: it answers 503 while down, else counts the records
// (NDJSON lines) it receives.
type collector struct {
	down    atomic.Bool
	records atomic.Int64
	bytes   atomic.Int64 // of the records, newlines excluded
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.down.Load() {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	b, _ := io.ReadAll(r.Body)
	n := int64(bytes.Count(b, []byte{'\n'}))
	c.records.Add(n)
	c.bytes.Add(int64(len(b)) - n)
}

// loadResult is what a load run saw.
type loadResult struct {
	sent, refused int64
	took          time.Duration
}

func (l loadResult) rate() float64 { return float64(l.sent) / l.took.Seconds() }

// postLoad posts requests of up to perReq records to url: at rate records a
// second for dur, or, with rate 0, flat out until total records were issued.
// workers requests are in flight at most. body builds the request that
// carries records first..first+n-1 (records are numbered from 0 in the order
// requests are issued).
func postLoad(ctx context.Context, url string, rate float64, dur time.Duration, total int64, perReq, workers int, body func(first int64, n int) []byte) loadResult {
	type ticket struct {
		first int64
		n     int
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var sent, refused atomic.Int64
	tickets := make(chan ticket, workers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for t := range tickets {
				resp, err := client.Post(url, "application/x-ndjson", bytes.NewReader(body(t.first, t.n)))
				if err != nil {
					refused.Add(int64(t.n))
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					sent.Add(int64(t.n))
				} else {
					refused.Add(int64(t.n))
				}
			}
		})
	}
	var issued int64
	if rate > 0 {
		interval := time.Duration(float64(time.Second) * float64(perReq) / rate)
		tick := time.NewTicker(interval)
		end := time.After(dur)
	paced:
		for {
			select {
			case <-tick.C:
				select {
				case tickets <- ticket{issued, perReq}:
					issued += int64(perReq)
				default: // every worker busy: the daemon is slower than the rate; this request is skipped
				}
			case <-end:
				break paced
			case <-ctx.Done():
				break paced
			}
		}
		tick.Stop()
	} else {
		for ; issued < total && ctx.Err() == nil; issued += int64(perReq) {
			tickets <- ticket{issued, int(min(int64(perReq), total-issued))}
		}
	}
	close(tickets)
	wg.Wait()
	return loadResult{sent: sent.Load(), refused: refused.Load(), took: time.Since(start)}
}

// sameBody is a body for postLoad that sends the same records every time.
func sameBody(perReq, size int) func(int64, int) []byte {
	b := body(perReq, size)
	return func(int64, int) []byte { return b }
}

func waitFor(ctx context.Context, what string, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
