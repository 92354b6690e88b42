package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/outboxd/outboxd/ingest"
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

// queueUnless returns app and a new queue; when app is nil, it returns an
// appender to that queue instead.
func queueUnless(t *testing.T, app ingest.Appender) (*outbox.Queue[[]byte], ingest.Appender) {
	t.Helper()
	q := openQueue(t, 0)
	if app == nil {
		app = ingest.QueueAppender{Queue: q}
	}
	return q, app
}

// receiver serves a receiver over app on a real listener; it returns the
// receiver and its /v1/logs URL.
func receiver(t *testing.T, cfg Config, app ingest.Appender) (*HTTP, string) {
	t.Helper()
	cfg.Host = "edge-1"
	h := NewHTTP(cfg, app)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL + "/v1/logs"
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

type reply struct {
	status int
	header http.Header
	body   []byte
}

func post(t *testing.T, url, contentType string, body []byte, headers ...string) reply {
	t.Helper()
	r, err := tryPost(url, contentType, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryPost is post for goroutines other than the test's: it returns the
// error (a failed request is status 0).
func tryPost(url, contentType string, body []byte, headers ...string) (reply, error) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}, nil
}

// rpcStatus decodes a google.rpc.Status body of either content type.
func rpcStatus(t *testing.T, r reply) (code int, msg string) {
	t.Helper()
	if r.header.Get("Content-Type") == ctJSON {
		var s struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(r.body, &s); err != nil {
			t.Fatalf("status body %q: %v", r.body, err)
		}
		return s.Code, s.Message
	}
	b := r.body
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("status body %x: bad tag", r.body)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			code, b = int(v), b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			msg, b = v, b[n:]
		default:
			t.Fatalf("status body %x: field %d", r.body, num)
		}
	}
	return code, msg
}

// logsOf is logs of one record per body, with a resource's host.name.
func logsOf(bodies ...string) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("host.name", "app-1")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for _, b := range bodies {
		lrs.AppendEmpty().Body().SetStr(b)
	}
	return ld
}

// logsProto is one ExportLogsServiceRequest of a record per body.
func logsProto(t *testing.T, bodies ...string) []byte {
	t.Helper()
	out, err := (&plog.ProtoMarshaler{}).MarshalLogs(logsOf(bodies...))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestJSONMapping(t *testing.T) {
	t.Run("OTLP JSON: hex ids, integer enums, int64 as strings, unknown fields ignored, every field mapped", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := receiver(t, Config{}, ingest.QueueAppender{Queue: q})
		body := `{"resourceLogs":[{"resource":{"attributes":[
			{"key":"host.name","value":{"stringValue":"app-7"}},
			{"key":"service.name","value":{"stringValue":"checkout"}}]},
		  "someFutureField":{"x":1},
		  "scopeLogs":[{"scope":{"name":"lib","version":"1.2.3"},"logRecords":[
			{"timeUnixNano":"1767323045123456789","observedTimeUnixNano":"1767323046000000000",
			 "severityNumber":17,"severityText":"ERROR","eventName":"order.failed",
			 "body":{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"9007199254740993"}}]}},
			 "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"f","value":{"doubleValue":1.5}},
			   {"key":"b","value":{"bytesValue":"AAEC"}},{"key":"a","value":{"arrayValue":{"values":[{"boolValue":true}]}}}],
			 "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","flags":1,
			 "unknownRecordField":"ignored"},
			{"observedTimeUnixNano":"1767323046000000000","body":{"bytesValue":"aGk="},"traceId":"","spanId":""},
			{"body":{"doubleValue":2.5}}]}]}]}`
		r := post(t, url, "application/json", []byte(body))
		if r.status != 200 || r.header.Get("Content-Type") != ctJSON || string(r.body) != "{}" {
			t.Fatalf("answer %d %s %q", r.status, r.header.Get("Content-Type"), r.body)
		}
		recs := stored(t, q)
		if len(recs) != 3 {
			t.Fatalf("stored %d records, want 3", len(recs))
		}
		if id, _ := recs[0]["record_id"].(string); len(id) != 26 {
			t.Fatalf("record_id %q", id)
		}
		delete(recs[0], "record_id")
		got, _ := json.Marshal(recs[0])
		want := `{"host":"app-7","message":"{\"k\":9007199254740993}","otel":{"attributes":{"a":[true],"b":"AAEC","f":1.5,"n":42},` +
			`"event_name":"order.failed","flags":1,"resource":{"host.name":"app-7","service.name":"checkout"},` +
			`"scope":{"name":"lib","version":"1.2.3"},"span_id":"eee19b7ec3c1b174","trace_id":"5b8efff798038103d269b633813fc60c"},` +
			`"received_at":"` + recs[0]["received_at"].(string) + `","severity_number":17,"severity_text":"ERROR","source":"otlp","ts":"2026-01-02T03:04:05.123456789Z"}`
		if string(got) != want {
			t.Fatalf("record\n got %s\nwant %s", got, want)
		}
		o := recs[1]["otel"].(map[string]any)
		if recs[1]["ts"] != "2026-01-02T03:04:06Z" || recs[1]["message"] != "aGk=" || o["trace_id"] != nil || o["span_id"] != nil || o["event_name"] != nil {
			t.Fatalf("second record: %v", recs[1])
		}
		if recs[2]["ts"] != recs[2]["received_at"] || recs[2]["message"] != "2.5" {
			t.Fatalf("third record: ts %v received_at %v message %v", recs[2]["ts"], recs[2]["received_at"], recs[2]["message"])
		}
	})
	t.Run("a resource without host.name takes this host", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := receiver(t, Config{}, ingest.QueueAppender{Queue: q})
		r := post(t, url, "application/json", []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}`))
		if recs := stored(t, q); r.status != 200 || len(recs) != 1 || recs[0]["host"] != "edge-1" || recs[0]["message"] != "x" {
			t.Fatalf("answer %d, records %v", r.status, recs)
		}
	})
}

// scripted is an Appender that fails with err.
type scripted struct{ err error }

func (s scripted) Append(context.Context, string, [][]byte) error { return s.err }

func TestStatuses(t *testing.T) {
	t.Run("an empty request succeeds in either content type", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := receiver(t, Config{}, ingest.QueueAppender{Queue: q})
		if r := post(t, url, ctProto, nil); r.status != 200 || r.header.Get("Content-Type") != ctProto || len(r.body) != 0 {
			t.Fatalf("protobuf: %d %s %x", r.status, r.header.Get("Content-Type"), r.body)
		}
		if r := post(t, url, ctJSON, []byte(`{}`)); r.status != 200 || string(r.body) != "{}" {
			t.Fatalf("json: %d %q", r.status, r.body)
		}
		if len(stored(t, q)) != 0 {
			t.Fatal("an empty request stored records")
		}
	})
	t.Run("gzip is inflated and the answer is a protobuf ExportLogsServiceResponse", func(t *testing.T) {
		q := openQueue(t, 0)
		h, url := receiver(t, Config{}, ingest.QueueAppender{Queue: q})
		r := post(t, url, ctProto+"; charset=binary", gzipped(logsProto(t, "a", "b")), "Content-Encoding", "gzip")
		if r.status != 200 || len(stored(t, q)) != 2 || h.Accepted.Load() != 2 {
			t.Fatalf("%d %x accepted %d", r.status, r.body, h.Accepted.Load())
		}
	})
	t.Run("records over the record limit are reported in partial_success and the rest stored", func(t *testing.T) {
		q := openQueue(t, 0)
		h, url := receiver(t, Config{MaxRecordBytes: 1000}, ingest.QueueAppender{Queue: q})
		big := strings.Repeat("x", 2000)
		r := post(t, url, ctProto, logsProto(t, "small", big, big))
		resp := plogotlpResponse(t, r.body)
		if r.status != 200 || resp.rejected != 2 || !strings.Contains(resp.msg, "2 log records over the record size limit of 1000 bytes") {
			t.Fatalf("%d %+v", r.status, resp)
		}
		if recs := stored(t, q); len(recs) != 1 || recs[0]["message"] != "small" || h.Rejected.Load() != 2 {
			t.Fatalf("stored %v, rejected %d", recs, h.Rejected.Load())
		}
		rj := post(t, url, ctJSON, []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"`+big+`"}}]}]}]}`))
		if rj.status != 200 || !strings.HasPrefix(string(rj.body), `{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"1 log records over`) {
			t.Fatalf("json: %d %s", rj.status, rj.body)
		}
	})
	cases := []struct {
		name        string
		cfg         Config
		app         ingest.Appender
		ct, enc     string
		body        []byte
		status      int
		code        int
		retryAfter  bool
		msgContains string
	}{
		{name: "truncated protobuf is 400 InvalidArgument", ct: ctProto, body: logsProto(t, strings.Repeat("y", 300))[:200], status: 400, code: codeInvalidArgument},
		{name: "JSON of wrong types is 400", ct: ctJSON, body: []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":{"a":1}}]}]}]}`), status: 400, code: codeInvalidArgument},
		{name: "resourceLogs not an array is 400", ct: ctJSON, body: []byte(`{"resourceLogs":"nope"}`), status: 400, code: codeInvalidArgument},
		{name: "JSON that is not JSON is 400", ct: ctJSON, body: []byte(`{"resourceLogs":[`), status: 400, code: codeInvalidArgument},
		{name: "a broken gzip stream is 400", ct: ctProto, enc: "gzip", body: gzipped(logsProto(t, "a"))[:15], status: 400, code: codeInvalidArgument},
		{name: "an unknown content type is 415", ct: "text/plain", body: []byte("x"), status: 415, code: codeInvalidArgument},
		{name: "an unknown content encoding is 400", ct: ctProto, enc: "br", body: []byte("x"), status: 400, code: codeInvalidArgument},
		{name: "a gzip bomb is 413 after decompression", cfg: Config{MaxBodyBytes: 1 << 20}, ct: ctProto, enc: "gzip", body: gzipped(make([]byte, 64<<20)), status: 413, code: codeInvalidArgument, msgContains: "after decompression"},
		{name: "a body over the limit is 413", ct: ctJSON, body: bytes.Repeat([]byte(" "), 11<<20), status: 413, code: codeInvalidArgument},
		{name: "a full outbox is 503 with Retry-After", app: scripted{fmt.Errorf("send: %w", outbox.ErrQueueFull)}, ct: ctProto, body: logsProto(t, "a"), status: 503, code: codeUnavailable, retryAfter: true},
		{name: "a full disk is 503 with Retry-After", app: scripted{fmt.Errorf("commit: %w", outbox.ErrDiskFull)}, ct: ctJSON, body: []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}`), status: 503, code: codeUnavailable, retryAfter: true},
		{name: "an outbox that does not answer in time is 503", app: scripted{context.DeadlineExceeded}, ct: ctProto, body: logsProto(t, "a"), status: 503, code: codeUnavailable, retryAfter: true},
		{name: "no route for otlp is 422 (not retried)", app: scripted{ingest.ErrNoRoute}, ct: ctProto, body: logsProto(t, "a"), status: 422, code: codeFailedPrecondition, msgContains: "routes must include one for otlp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, app := queueUnless(t, c.app)
			h, url := receiver(t, c.cfg, app)
			var headers []string
			if c.enc != "" {
				headers = []string{"Content-Encoding", c.enc}
			}
			r := post(t, url, c.ct, c.body, headers...)
			code, msg := rpcStatus(t, r)
			if r.status != c.status || code != c.code || !strings.Contains(msg, c.msgContains) {
				t.Fatalf("answer %d code %d %q, want %d code %d", r.status, code, msg, c.status, c.code)
			}
			if (r.header.Get("Retry-After") != "") != c.retryAfter {
				t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
			}
			if want := c.ct; want != ctProto && r.header.Get("Content-Type") != ctJSON || want == ctProto && r.header.Get("Content-Type") != ctProto {
				t.Fatalf("answered in %q to %q", r.header.Get("Content-Type"), c.ct)
			}
			if len(stored(t, q)) != 0 || h.Refused.Load() != 1 {
				t.Fatalf("a refused request stored records or was not counted (refused %d)", h.Refused.Load())
			}
		})
	}
	t.Run("a real full outbox refuses the whole request: stored whole or not at all", func(t *testing.T) {
		q := openQueue(t, 3)
		_, url := receiver(t, Config{FullWait: 50 * time.Millisecond}, ingest.QueueAppender{Queue: q})
		if r := post(t, url, ctProto, logsProto(t, "1", "2")); r.status != 200 {
			t.Fatalf("first request: %d", r.status)
		}
		r := post(t, url, ctProto, logsProto(t, "3", "4"))
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Fatalf("second request into a queue of 3: %d %q", r.status, r.body)
		}
		if recs := stored(t, q); len(recs) != 2 {
			t.Fatalf("stored %d records, want the first request's 2", len(recs))
		}
	})
	t.Run("wrong path and method", func(t *testing.T) {
		_, url := receiver(t, Config{}, scripted{})
		if r := post(t, strings.TrimSuffix(url, "/v1/logs")+"/v1/traces", ctProto, nil); r.status != 404 {
			t.Fatalf("/v1/traces: %d", r.status)
		}
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

type partial struct {
	rejected int64
	msg      string
}

// plogotlpResponse decodes an ExportLogsServiceResponse's partial_success.
func plogotlpResponse(t *testing.T, b []byte) partial {
	t.Helper()
	var p partial
	for len(b) > 0 {
		num, _, n := protowire.ConsumeTag(b)
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 || num != 1 {
			t.Fatalf("response: field %d", num)
		}
		b = b[n:]
		for len(v) > 0 {
			num, _, n := protowire.ConsumeTag(v)
			v = v[n:]
			if num == 1 {
				x, n := protowire.ConsumeVarint(v)
				p.rejected, v = int64(x), v[n:]
			} else {
				s, n := protowire.ConsumeString(v)
				p.msg, v = s, v[n:]
			}
		}
	}
	return p
}

func TestToken(t *testing.T) {
	t.Run("with a token set, a request without it is 401 and one with it is stored", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := receiver(t, Config{Token: "s3cret"}, ingest.QueueAppender{Queue: q})
		r := post(t, url, ctProto, logsProto(t, "a"))
		if code, _ := rpcStatus(t, r); r.status != 401 || code != codeUnauthenticated {
			t.Fatalf("no token: %d code %d", r.status, code)
		}
		if r := post(t, url, ctProto, logsProto(t, "a"), "Authorization", "Bearer s3cret"); r.status != 200 || len(stored(t, q)) != 1 {
			t.Fatalf("with the token: %d", r.status)
		}
	})
}

// gate is an Appender that holds every Append until it is opened, then
// appends to the queue.
type gate struct {
	entered chan struct{}
	open    chan struct{}
	next    ingest.Appender
}

func (g gate) Append(ctx context.Context, source string, records [][]byte) error {
	g.entered <- struct{}{}
	<-g.open
	return g.next.Append(ctx, source, records)
}

func TestAnswerAfterCommit(t *testing.T) {
	t.Run("the 200 comes only once the outbox committed the records", func(t *testing.T) {
		q := openQueue(t, 0)
		g := gate{entered: make(chan struct{}), open: make(chan struct{}), next: ingest.QueueAppender{Queue: q}}
		_, url := receiver(t, Config{FullWait: 10 * time.Second}, g)
		answered := make(chan reply, 1)
		body := logsProto(t, "a", "b")
		go func() { r, _ := tryPost(url, ctProto, body); answered <- r }()
		<-g.entered
		select {
		case r := <-answered:
			t.Fatalf("answered %d before the commit", r.status)
		case <-time.After(100 * time.Millisecond):
		}
		close(g.open)
		if r := <-answered; r.status != 200 || len(stored(t, q)) != 2 {
			t.Fatalf("after the commit: %d", r.status)
		}
	})
	t.Run("past max_concurrent requests at once, the next is 503 with Retry-After", func(t *testing.T) {
		q := openQueue(t, 0)
		g := gate{entered: make(chan struct{}), open: make(chan struct{}), next: ingest.QueueAppender{Queue: q}}
		_, url := receiver(t, Config{MaxConcurrent: 1, FullWait: 10 * time.Second}, g)
		first := make(chan reply, 1)
		body := logsProto(t, "a")
		go func() { r, _ := tryPost(url, ctProto, body); first <- r }()
		<-g.entered
		r := post(t, url, ctProto, logsProto(t, "b"))
		if code, _ := rpcStatus(t, r); r.status != 503 || code != codeUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("second request: %d code %d", r.status, code)
		}
		close(g.open)
		if r := <-first; r.status != 200 {
			t.Fatalf("first request: %d", r.status)
		}
	})
	t.Run("while the shared memory budget is taken, a request is 503 with Retry-After; one larger than the budget is 413", func(t *testing.T) {
		q := openQueue(t, 0)
		budget := ingest.NewBudget(1 << 20)
		_, url := receiver(t, Config{Budget: budget, BudgetWait: 20 * time.Millisecond}, ingest.QueueAppender{Queue: q})
		if !budget.TryAcquire(1 << 20) {
			t.Fatal("budget not free")
		}
		r := post(t, url, ctProto, logsProto(t, "a"))
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Fatalf("budget taken: %d %q", r.status, r.body)
		}
		budget.Release(1 << 20)
		r = post(t, url, ctProto, logsProto(t, strings.Repeat("z", 600<<10)))
		if _, msg := rpcStatus(t, r); r.status != 413 || !strings.Contains(msg, "whole budget") {
			t.Fatalf("larger than the budget: %d %q", r.status, msg)
		}
		if r := post(t, url, ctProto, logsProto(t, "a")); r.status != 200 || len(stored(t, q)) != 1 || budget.InUse() != 0 {
			t.Fatalf("after: %d, budget in use %d", r.status, budget.InUse())
		}
	})
}
