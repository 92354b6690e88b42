package forwarders

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPStatuses(t *testing.T) {
	for _, status := range []int{401, 403, 404, 407, 415} {
		t.Run("a "+http.StatusText(status)+" keeps the batch queued and retried, and nothing is dead-lettered", func(t *testing.T) {
			q := openQueue(t)
			c := newCollector(t)
			var refusals atomic.Int64
			c.setAnswer(func(req int, body []byte) int {
				if req <= 5 { // a rotated token, until someone fixes it
					refusals.Add(1)
					return status
				}
				return 200
			})
			fill(t, q, 0, 2000)
			w := httpWorker(t, q, HTTPConfig{URL: c.URL}, Config{Batching: Batching{MaxRecords: 1000, Linger: -1}})
			stop := runWorker(t, w)
			waitFor(t, "2000 records", 30*time.Second, func() bool { return len(c.records()) >= 2000 })
			stop()
			if dups := checkDelivered(t, c.records(), 2000); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
			if n, _ := dlqOf(t, q); n != 0 || w.Stats().Rejected.Load() != 0 {
				t.Fatalf("%d records dead-lettered for a %d", n, status)
			}
			if got := w.Stats().Misconfigured.Load(); got != 5 {
				t.Fatalf("Misconfigured = %d, want the 5 refusals", got)
			}
		})
	}

	t.Run("a 413 from a body limit splits the batch: every record arrives in order, and only a record over the limit alone is dead-lettered", func(t *testing.T) {
		const limit = 20 << 10 // a proxy's body limit: about 220 records
		q := openQueue(t)
		c := newCollector(t)
		var tooLarge atomic.Int64
		c.setAnswer(func(req int, body []byte) int {
			if len(body) > limit {
				tooLarge.Add(1)
				return 413
			}
			return 200
		})
		fill(t, q, 0, 5000)
		q.Send(t.Context(), []byte(`{"message":"`+strings.Repeat("x", limit)+`","n":5000}`))
		fill(t, q, 5001, 4999)
		w := httpWorker(t, q, HTTPConfig{URL: c.URL}, Config{Batching: Batching{MaxRecords: 1000, Linger: -1}})
		stop := runWorker(t, w)
		waitFor(t, "9999 records", 30*time.Second, func() bool { return len(c.records()) >= 9999 })
		waitFor(t, "an empty queue", 10*time.Second, func() bool { n, _ := q.Len(t.Context()); return n == 0 })
		stop()
		got := c.records()
		if len(got) != 9999 {
			t.Fatalf("collector got %d records, want 9999", len(got))
		}
		for i, r := range got {
			want := i
			if i >= 5000 {
				want = i + 1
			}
			if n := numberOf(t, r); n != want {
				t.Fatalf("record %d is %d, want %d", i, n, want)
			}
		}
		n, reason := dlqOf(t, q)
		if n != 1 || !strings.Contains(reason, "413") {
			t.Fatalf("DLQ holds %d, reason %q", n, reason)
		}
		// The limit is learned: without it, each of the 10 batches would be
		// refused about three times before its parts fit.
		if tooLarge.Load() > 8 {
			t.Fatalf("%d requests refused with 413 for 10 batches", tooLarge.Load())
		}
		t.Logf("413 answers: %d", tooLarge.Load())
	})
}

func TestHTTPCredentials(t *testing.T) {
	t.Run("basic auth is sent", func(t *testing.T) {
		q := openQueue(t)
		c := newCollector(t)
		fill(t, q, 0, 1)
		stop := runWorker(t, httpWorker(t, q, HTTPConfig{URL: c.URL, BasicUser: "shipper", BasicPassword: "s3cret"}, Config{}))
		waitFor(t, "a record", 10*time.Second, func() bool { return len(c.records()) == 1 })
		stop()
		c.mu.Lock()
		defer c.mu.Unlock()
		req := http.Request{Header: c.headers}
		if u, p, ok := req.BasicAuth(); !ok || u != "shipper" || p != "s3cret" {
			t.Fatalf("Authorization = %q", c.headers.Get("Authorization"))
		}
	})

	t.Run("basic auth and a bearer token together are refused", func(t *testing.T) {
		if _, err := NewHTTP(HTTPConfig{URL: "http://x", BearerToken: "a", BasicUser: "b"}); err == nil {
			t.Fatal("NewHTTP succeeded")
		}
	})

	const secretURL = "://shipper:pa55word@%s/ingest?api_key=t0ken&site=7"
	leaks := func(s string) bool {
		return strings.Contains(s, "pa55word") || strings.Contains(s, "t0ken") || strings.Contains(s, "shipper")
	}

	t.Run("the URL's user info and query values reach no error, last error or DLQ reason", func(t *testing.T) {
		q := openQueue(t)
		c := newCollector(t)
		c.setAnswer(func(req int, body []byte) int {
			switch req {
			case 1:
				return 401
			case 2:
				return 400
			}
			return 200
		})
		fill(t, q, 0, 1)
		fill(t, q, 1, 1)
		u, _ := url.Parse(c.URL)
		w := httpWorker(t, q, HTTPConfig{URL: "http" + strings.Replace(secretURL, "%s", u.Host, 1)}, Config{Batching: Batching{MaxRecords: 1, Linger: -1}})
		stop := runWorker(t, w)
		waitFor(t, "a record", 10*time.Second, func() bool { return len(c.records()) == 1 })
		stop()
		last := w.Stats().snapshot().LastError
		_, reason := dlqOf(t, q)
		if reason == "" || last == "" || leaks(last) || leaks(reason) {
			t.Fatalf("last error %q, DLQ reason %q", last, reason)
		}
		if !strings.Contains(last, "api_key=REDACTED") || !strings.Contains(reason, "site=REDACTED") {
			t.Fatalf("the redacted URL should keep the parameter names: %q, %q", last, reason)
		}
	})

	t.Run("net/http's errors quote the URL redacted", func(t *testing.T) {
		c := newCollector(t)
		u, _ := url.Parse(c.URL)
		c.Close() // nothing listens: the client's *url.Error quotes the URL
		h, err := NewHTTP(HTTPConfig{URL: "http" + strings.Replace(secretURL, "%s", u.Host, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		err = h.Send(t.Context(), [][]byte{record(0)})
		var ue *url.Error
		if err == nil || !errors.As(err, &ue) || leaks(err.Error()) {
			t.Fatalf("Send = %v", err)
		}
		if _, err := NewHTTP(HTTPConfig{URL: "ftp" + strings.Replace(secretURL, "%s", u.Host, 1)}); err == nil || leaks(err.Error()) {
			t.Fatalf("NewHTTP = %v", err)
		}
	})
}
