package forwarders

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// HTTPConfig configures the HTTP sink.
type HTTPConfig struct {
	URL           string
	Format        string            // "ndjson" (default) or "json_array"
	Gzip          bool              // compress request bodies
	Headers       map[string]string // sent with every request
	BearerToken   string
	BasicUser     string
	BasicPassword string
	TLS           TLS
	Timeout       time.Duration // per request; default 30s
}

// HTTP posts batches to a collector. 2xx means delivered; 408, 429, 5xx and
// network errors are transient (Retry-After is honoured). Only an answer
// that blames the content is taken as a refusal, and only for the records
// it blames: a 400, 413 or 422 for a request of several records splits it
// in halves, sent one after the other, until the refused records stand
// alone; those go to the dead-letter queue. Every other status (401, 403,
// 404, 407, 415, ...) says the sink is misconfigured or unauthorized: the
// batch is retried, as a *MisconfiguredError, until someone fixes it.
type HTTP struct {
	cfg    HTTPConfig
	client *http.Client
	array  bool
	// safeURL is the URL with its user info and query values redacted: the
	// only form that reaches logs, /readyz, metrics and DLQ reasons.
	safeURL string
	// ceiling bounds a request's payload (records' bytes, before encoding
	// and gzip) once a 413 refused several records; 0 until then. Later
	// batches are sent in parts under it, so a proxy's body limit costs a
	// few splits, not a few per batch. It lasts as long as the sink: a
	// reload or restart forgets it.
	ceiling int
	// splits counts the extra requests made to isolate records the
	// collector refused (a batch split in halves until each refused record
	// stands alone).
	splits atomic.Int64
}

// SplitRequests is how many extra requests isolating refused records took.
func (h *HTTP) SplitRequests() int64 { return h.splits.Load() }

// splitBudget bounds the extra requests one batch may take to isolate what
// the collector refuses: about log2(batch) per refused record, for up to 16
// of them. Past it, a refused part is dead-lettered whole (a collector that
// refuses most of a batch would otherwise cost a request per record).
func splitBudget(n int) int { return 2 * 16 * bits.Len(uint(n)) }

// maxErrorBody bounds how much of a refusal's body is kept as the reason.
const maxErrorBody = 512

// NewHTTP checks the configuration and returns the sink.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	safe := RedactURL(cfg.URL)
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http sink: url %q: want http(s)://host/path", safe)
	}
	if cfg.BasicUser != "" && cfg.BearerToken != "" {
		return nil, fmt.Errorf("http sink %s: basic auth and a bearer token are both set; keep one", safe)
	}
	var array bool
	switch cfg.Format {
	case "", "ndjson":
	case "json_array":
		array = true
	default:
		return nil, fmt.Errorf("http sink: format %q: want ndjson or json_array", cfg.Format)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	tlsConf, err := cfg.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("http sink %s: %w", safe, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = 4
	return &HTTP{cfg: cfg, array: array, safeURL: safe, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}}, nil
}

// Send posts the batch: as one request, or in parts that stay under a body
// limit the collector showed before. A part that is delivered while a later
// one fails transiently is sent again with the whole batch (at least once).
func (h *HTTP) Send(ctx context.Context, records [][]byte) error {
	rejected := map[int]string{}
	budget := splitBudget(len(records))
	for _, part := range h.parts(records) {
		if err := h.sendPart(ctx, records, part, rejected, &budget); err != nil {
			if len(rejected) > 0 {
				return &RejectedError{Reasons: rejected, Retry: err}
			}
			return err
		}
	}
	if len(rejected) > 0 {
		return &RejectedError{Reasons: rejected}
	}
	return nil
}

// span is a part of a batch: records[lo:hi].
type span struct{ lo, hi int }

// parts cuts the batch into spans whose payload stays under the ceiling; a
// record that is over it alone gets a span of its own.
func (h *HTTP) parts(records [][]byte) []span {
	if h.ceiling == 0 {
		return []span{{0, len(records)}}
	}
	var out []span
	lo, size := 0, 0
	for i, r := range records {
		if i > lo && size+len(r) >= h.ceiling {
			out = append(out, span{lo, i})
			lo, size = i, 0
		}
		size += len(r)
	}
	return append(out, span{lo, len(records)})
}

// sendPart posts records[s.lo:s.hi]. When the collector refuses the content
// of several records, it sends each half in turn, so that only the records
// it refuses on their own are added to rejected (by their batch index).
func (h *HTTP) sendPart(ctx context.Context, records [][]byte, s span, rejected map[int]string, budget *int) error {
	err := h.post(ctx, records[s.lo:s.hi])
	var refused *contentError
	if !errors.As(err, &refused) {
		return err
	}
	if s.hi-s.lo == 1 {
		rejected[s.lo] = refused.Error()
		return nil
	}
	if refused.status == http.StatusRequestEntityTooLarge {
		h.lower(records[s.lo:s.hi])
	} else if *budget < 2 {
		for i := s.lo; i < s.hi; i++ {
			rejected[i] = refused.Error() + " (refused with " + strconv.Itoa(s.hi-s.lo-1) + " other records; not split further: the batch's split requests are spent)"
		}
		return nil
	}
	*budget -= 2
	h.splits.Add(2)
	mid := s.lo + (s.hi-s.lo)/2
	if err := h.sendPart(ctx, records, span{s.lo, mid}, rejected, budget); err != nil {
		return err
	}
	return h.sendPart(ctx, records, span{mid, s.hi}, rejected, budget)
}

// lower records that a payload of these records was too large: later
// requests carry at most half of it, what the split sends next anyway. A
// single record refused as too large says nothing about the others, and
// does not lower it.
func (h *HTTP) lower(records [][]byte) {
	size := 0
	for _, r := range records {
		size += len(r)
	}
	if h.ceiling == 0 || size/2 < h.ceiling {
		h.ceiling = max(size/2, 1)
	}
}

// post sends records as one request and judges the answer.
func (h *HTTP) post(ctx context.Context, records [][]byte) error {
	body, err := h.encode(records)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		// NewHTTP checked the URL; nothing here is the records' fault.
		return fmt.Errorf("http sink %s: build request: %w", h.safeURL, RedactError(err))
	}
	h.setHeaders(req)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("http sink %s: post: %w", h.safeURL, RedactError(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	io.Copy(io.Discard, resp.Body) // so the connection can be reused
	return h.judge(resp, snippet)
}

func (h *HTTP) encode(records [][]byte) ([]byte, error) {
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if h.cfg.Gzip {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	sep, open, end := []byte("\n"), []byte(nil), []byte("\n")
	if h.array {
		sep, open, end = []byte(","), []byte("["), []byte("]")
	}
	w.Write(open)
	for i, r := range records {
		if i > 0 {
			w.Write(sep)
		}
		w.Write(r)
	}
	w.Write(end)
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("http sink: gzip: %w", err)
		}
	}
	return buf.Bytes(), nil
}

func (h *HTTP) setHeaders(req *http.Request) {
	if h.array {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	if h.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range h.cfg.Headers {
		req.Header.Set(k, v)
	}
	switch {
	case h.cfg.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+h.cfg.BearerToken)
	case h.cfg.BasicUser != "":
		req.SetBasicAuth(h.cfg.BasicUser, h.cfg.BasicPassword)
	}
}

// contentStatuses are the answers that blame what was sent, not how.
var contentStatuses = map[int]bool{
	http.StatusBadRequest:            true,
	http.StatusRequestEntityTooLarge: true,
	http.StatusUnprocessableEntity:   true,
}

// contentError is a collector's refusal of the records it was sent.
type contentError struct {
	status int
	reason string
}

func (e *contentError) Error() string { return e.reason }

// judge classifies the collector's answer: nil, a *contentError (the
// records' fault), a *MisconfiguredError, or a transient error.
func (h *HTTP) judge(resp *http.Response, body []byte) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	reason := fmt.Sprintf("http sink %s: answered %s: %s", h.safeURL, resp.Status, strings.TrimSpace(string(body)))
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		err := errors.New(reason)
		if after, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &ThrottledError{After: after, Err: err}
		}
		return err
	case contentStatuses[code]:
		return &contentError{status: code, reason: reason}
	}
	return &MisconfiguredError{Err: errors.New(reason)}
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// Close releases idle connections.
func (h *HTTP) Close() error {
	h.client.CloseIdleConnections()
	return nil
}
