package forwarders

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
// network errors are transient (Retry-After is honoured); any other status
// refuses the whole batch for good.
type HTTP struct {
	cfg    HTTPConfig
	client *http.Client
	array  bool
}

// maxErrorBody bounds how much of a refusal's body is kept as the reason.
const maxErrorBody = 512

// NewHTTP checks the configuration and returns the sink.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http sink: url %q: want http(s)://host/path", cfg.URL)
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
		return nil, fmt.Errorf("http sink %s: %w", cfg.URL, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = 4
	return &HTTP{cfg: cfg, array: array, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}}, nil
}

// Send posts the batch as one request.
func (h *HTTP) Send(ctx context.Context, records [][]byte) error {
	body, err := h.encode(records)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return RejectAll(len(records), "build request: "+err.Error())
	}
	h.setHeaders(req)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("http sink: post %s: %w", h.cfg.URL, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	io.Copy(io.Discard, resp.Body) // so the connection can be reused
	return h.judge(resp, len(records), snippet)
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

// judge classifies the collector's answer.
func (h *HTTP) judge(resp *http.Response, n int, body []byte) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	reason := fmt.Sprintf("http sink: %s answered %s: %s", h.cfg.URL, resp.Status, strings.TrimSpace(string(body)))
	if code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 {
		err := fmt.Errorf("%s", reason)
		if after, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &ThrottledError{After: after, Err: err}
		}
		return err
	}
	return RejectAll(n, reason)
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
