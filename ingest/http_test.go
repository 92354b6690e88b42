package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

func openQueue(t *testing.T, max int) *outbox.Queue[[]byte] {
	t.Helper()
	q, err := outbox.Open(context.Background(), filepath.Join(t.TempDir(), "in.db"), "main", outbox.Options[[]byte]{MaxSize: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func endpoint(t *testing.T, cfg HTTPConfig, q *outbox.Queue[[]byte]) (*HTTP, string) {
	t.Helper()
	cfg.Host = "edge-1"
	h := NewHTTP(cfg, QueueAppender{Queue: q})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL + "/v1/logs"
}

type reply struct {
	status int
	header http.Header
	body   answer
}

func post(t *testing.T, url, contentType string, body []byte, headers ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %q is not JSON: %v", b, err)
	}
	return reply{resp.StatusCode, resp.Header, a}
}

func stored(t *testing.T, q *outbox.Queue[[]byte]) []map[string]any {
	t.Helper()
	items, err := q.RecvBatch(context.Background(), 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, len(items))
	for i, it := range items {
		if err := json.Unmarshal(it, &out[i]); err != nil {
			t.Fatalf("stored record %q: %v", it, err)
		}
	}
	return out
}

func TestHTTPAccepts(t *testing.T) {
	t.Run("NDJSON: 202 after the records are in the outbox, with their own fields kept and ours added", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := endpoint(t, HTTPConfig{}, q)
		body := "{\"message\":\"a\",\"ts\":\"2026-01-02T03:04:05.123456789Z\",\"level\":\"warn\"}\n\n{\"message\":\"b\"}\r\n"
		r := post(t, url, "application/x-ndjson", []byte(body))
		if r.status != 202 || r.body.Accepted != 2 {
			t.Fatalf("answer %d %+v", r.status, r.body)
		}
		recs := stored(t, q)
		if len(recs) != 2 || recs[0]["level"] != "warn" || recs[0]["ts"] != "2026-01-02T03:04:05.123456789Z" ||
			recs[1]["source"] != "http" || recs[1]["host"] != "edge-1" || recs[1]["ts"] == nil || recs[1]["received_at"] == nil {
			t.Fatalf("stored %v", recs)
		}
	})

	t.Run("JSON object, JSON array, text lines and gzip", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := endpoint(t, HTTPConfig{}, q)
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write([]byte("{\"message\":\"zipped\"}\n"))
		zw.Close()
		for _, c := range []struct {
			ct, body string
			enc      []string
			n        int
		}{
			{"application/json", `{"message":"one"}`, nil, 1},
			{"application/json; charset=utf-8", `[{"message":"two"},{"message":"three"}]`, nil, 2},
			{"text/plain", "first line\n\nsecond line\n", nil, 2},
			{"application/x-ndjson", gz.String(), []string{"Content-Encoding", "gzip"}, 1},
		} {
			if r := post(t, url, c.ct, []byte(c.body), c.enc...); r.status != 202 || r.body.Accepted != c.n {
				t.Fatalf("%s: %d %+v", c.ct, r.status, r.body)
			}
		}
		var msgs []string
		for _, r := range stored(t, q) {
			msgs = append(msgs, r["message"].(string))
		}
		if strings.Join(msgs, ",") != "one,two,three,first line,second line,zipped" {
			t.Fatalf("stored %v", msgs)
		}
	})
}

func TestHTTPRefuses(t *testing.T) {
	q := openQueue(t, 0)
	_, url := endpoint(t, HTTPConfig{MaxBodyBytes: 4096, MaxRecordBytes: 256, Token: "t0ken"}, q)
	auth := []string{"Authorization", "Bearer t0ken"}
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte(`{"m":"x"}`+"\n"), 10_000))
	zw.Close()
	for _, c := range []struct {
		name, ct, body string
		headers        []string
		status, line   int
	}{
		{"a malformed line names its line number, and nothing of the request is stored", "application/x-ndjson", "{\"a\":1}\n{\"b\":2}\n{oops\n", auth, 400, 3},
		{"a line that is JSON but not an object", "application/x-ndjson", "[1,2]\n", auth, 400, 1},
		{"an unknown content type", "application/xml", "<a/>", auth, 415, 0},
		{"a body over the limit", "text/plain", strings.Repeat("x\n", 3000), auth, 413, 0},
		{"a gzip body that inflates past the limit", "application/x-ndjson", bomb.String(), append([]string{"Content-Encoding", "gzip"}, auth...), 413, 0},
		{"a record over the limit", "application/x-ndjson", `{"m":"` + strings.Repeat("x", 300) + `"}`, auth, 413, 1},
		{"no token", "application/json", `{}`, nil, 401, 0},
		{"a wrong token", "application/json", `{}`, []string{"Authorization", "Bearer guess"}, 401, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := post(t, url, c.ct, []byte(c.body), c.headers...)
			if r.status != c.status || r.body.Error == "" || r.body.Line != c.line {
				t.Fatalf("answer %d %+v, want %d at line %d", r.status, r.body, c.status, c.line)
			}
			if n, _ := q.Len(context.Background()); n != 0 {
				t.Fatalf("%d records stored from a refused request", n)
			}
		})
	}

	t.Run("a full outbox answers 503 with Retry-After after waiting, and stores nothing", func(t *testing.T) {
		q := openQueue(t, 2)
		_, url := endpoint(t, HTTPConfig{FullWait: 50 * time.Millisecond}, q)
		if r := post(t, url, "text/plain", []byte("a\nb\n")); r.status != 202 {
			t.Fatalf("filling: %d", r.status)
		}
		start := time.Now()
		r := post(t, url, "text/plain", []byte("c\n"))
		if r.status != 503 || r.header.Get("Retry-After") == "" || time.Since(start) < 50*time.Millisecond {
			t.Fatalf("answer %d %v after %v", r.status, r.header, time.Since(start))
		}
		if n, _ := q.Len(context.Background()); n != 2 {
			t.Fatalf("Len = %d", n)
		}
	})

	t.Run("only POST to the configured path", func(t *testing.T) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Fatalf("GET: %d", resp.StatusCode)
		}
	})
}

// FuzzDecodeBodies: any body, as any of the three types, either decodes to
// records that are each a JSON object, or is refused with a BodyError.
func FuzzDecodeBodies(f *testing.F) {
	for _, s := range []string{"{\"a\":1}\n{\"b\":2}", "[{\"a\":1}]", "text\nlines", "{oops", "[1]", "", "\xff\xfe", `{"ts":null}`} {
		f.Add([]byte(s))
	}
	st := newStamp(time.Unix(0, 0).UTC(), "h", "http")
	f.Fuzz(func(t *testing.T, body []byte) {
		d := &decoder{maxRecord: 1 << 16, st: st, charge: func(int) error { return nil }}
		for _, decode := range []func(io.Reader) ([][]byte, error){d.ndjson, d.json, d.text} {
			recs, err := decode(bytes.NewReader(body))
			if err != nil {
				if _, ok := err.(*BodyError); !ok {
					t.Fatalf("error of type %T: %v", err, err)
				}
				continue
			}
			for _, r := range recs {
				var obj map[string]any
				if json.Unmarshal(r, &obj) != nil || obj == nil || obj["source"] == nil {
					t.Fatalf("record %q is not a complete object", r)
				}
			}
		}
	})
}

var recordIDRE = regexp.MustCompile(`"record_id":"[0-9A-HJKMNP-TV-Z]{26}"`)

func TestCompleteObject(t *testing.T) {
	st := newStamp(time.Date(2026, 11, 26, 1, 2, 3, 4, time.UTC), "edge-1", "http")
	for in, want := range map[string]string{
		`{}`:        `{"ts":"2026-11-26T01:02:03.000000004Z","received_at":"2026-11-26T01:02:03.000000004Z","host":"edge-1","source":"http","record_id":ID}`,
		` {"a":1} `: `{"a":1,"ts":"2026-11-26T01:02:03.000000004Z","received_at":"2026-11-26T01:02:03.000000004Z","host":"edge-1","source":"http","record_id":ID}`,
		`{"ts":"x","host":"h","n":{"source":1},"source":"s","received_at":0}`: `{"ts":"x","host":"h","n":{"source":1},"source":"s","received_at":0,"record_id":ID}`,
		`{"t\"s":1,"ts":2,"received_at":3,"host":4,"source":5}`:               `{"t\"s":1,"ts":2,"received_at":3,"host":4,"source":5,"record_id":ID}`,
		`{"x":"ts","y":["host"],"received_at":1,"ts":1,"source":1}`:           `{"x":"ts","y":["host"],"received_at":1,"ts":1,"source":1,"host":"edge-1","record_id":ID}`,
		`{"record_id":"mine","n":1}`:                                          `{"record_id":"mine","n":1,"ts":"2026-11-26T01:02:03.000000004Z","received_at":"2026-11-26T01:02:03.000000004Z","host":"edge-1","source":"http"}`,
	} {
		got, err := completeObject([]byte(in), st)
		// ID: a new record id, 26 characters of Crockford's base32.
		if err == nil {
			got = recordIDRE.ReplaceAll(got, []byte(`"record_id":ID`))
		}
		if err != nil || string(got) != want {
			t.Errorf("completeObject(%s)\n got %s (%v)\nwant %s", in, got, err, want)
		}
	}
	for _, bad := range []string{`[]`, `{"a":}`, `"s"`, `{} {}`} {
		if _, err := completeObject([]byte(bad), st); err == nil {
			t.Errorf("completeObject(%s) accepted", bad)
		}
	}
}
