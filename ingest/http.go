package ingest

import (
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/outboxd/outboxd/ingest/tlsconf"
	"github.com/outboxd/outboxd/outbox"
)

// Appender is what ingest needs of the outbox: store a request's records
// durably, all or nothing, before it returns nil. A full outbox answers with
// an error matching outbox.ErrQueueFull, a full disk with outbox.ErrDiskFull,
// records of a source that no route takes with ErrNoRoute.
type Appender interface {
	Append(ctx context.Context, source string, records [][]byte) error
}

// ErrNoRoute is what an Appender's error wraps when no route takes the
// records' source: retrying cannot help, so ingest refuses them at once.
var ErrNoRoute = errors.New("no route takes records")

// QueueAppender appends to one outbox queue.
type QueueAppender struct{ Queue *outbox.Queue[[]byte] }

// Append sends the records as one batch.
func (a QueueAppender) Append(ctx context.Context, _ string, records [][]byte) error {
	return a.Queue.SendBatch(ctx, records)
}

// HTTPConfig configures the HTTP endpoint. Zero values take the defaults.
type HTTPConfig struct {
	Path           string        // default /v1/logs
	Token          string        // bearer token required when set
	MaxBodyBytes   int64         // per request, after decompression; default 10 MiB
	MaxRecordBytes int           // per record; default 1 MiB
	MaxConcurrent  int           // requests handled at once; default 64
	FullWait       time.Duration // how long a request waits for room in a full outbox; default 1s
	// Budget is the memory ingest may hold, shared by every input; nil
	// gives the endpoint one of DefaultBudgetBytes of its own.
	Budget *Budget
	// BudgetWait is how long a request waits for budget before 503; default 250ms.
	BudgetWait time.Duration
	Host       string    // "host" of records that carry none; default the machine's hostname
	AddFields  AddFields // on every record (its own fields of those names win)
	Logger     *slog.Logger
}

// WithDefaults fills in the zero values; other HTTP inputs (OTLP/HTTP)
// share the same settings and defaults.
func (c HTTPConfig) WithDefaults() HTTPConfig {
	if c.Path == "" {
		c.Path = "/v1/logs"
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 10 << 20
	}
	if c.MaxRecordBytes <= 0 {
		c.MaxRecordBytes = 1 << 20
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 64
	}
	if c.FullWait <= 0 {
		c.FullWait = time.Second
	}
	if c.Budget == nil {
		c.Budget = NewBudget(0)
	}
	if c.BudgetWait <= 0 {
		c.BudgetWait = 250 * time.Millisecond
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// HTTP is the HTTP ingest endpoint. It answers 202 only after the records
// are committed to the outbox.
type HTTP struct {
	cfg HTTPConfig
	app Appender
	sem chan struct{}

	Accepted atomic.Int64 // records accepted
	Bytes    atomic.Int64 // bytes of the accepted records, as stored
	Refused  atomic.Int64 // requests refused, for any reason
	// Truncated counts text records whose message was cut so that the
	// stored record (escapes and all) fits the record limit.
	Truncated atomic.Int64
}

// NewHTTP returns the endpoint; mount Handler on a server with timeouts
// (NewHTTPServer does).
func NewHTTP(cfg HTTPConfig, app Appender) *HTTP {
	cfg = cfg.WithDefaults()
	return &HTTP{cfg: cfg, app: app, sem: make(chan struct{}, cfg.MaxConcurrent)}
}

// DefaultHTTPListen is loopback only: exposing ingest to the network is a
// choice the operator makes in the config.
const DefaultHTTPListen = "127.0.0.1:8080"

// NewHTTPServer wraps the endpoint in a server whose timeouts keep a slow or
// hostile client from holding connections open. An empty addr listens on
// DefaultHTTPListen.
func NewHTTPServer(addr string, h *HTTP) *http.Server {
	if addr == "" {
		addr = DefaultHTTPListen
	}
	return NewServer(addr, h)
}

// NewServer serves h at addr with the timeouts every HTTP input uses.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr: addr, Handler: h,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10,
	}
}

type answer struct {
	Accepted int    `json:"accepted"`
	Error    string `json:"error,omitempty"`
	Line     int    `json:"line,omitempty"`
	Index    *int   `json:"index,omitempty"`
}

func (h *HTTP) reply(w http.ResponseWriter, status int, a answer) {
	if status != http.StatusAccepted {
		h.Refused.Add(1)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(a)
}

func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != h.cfg.Path {
		h.reply(w, http.StatusNotFound, answer{Error: "no such endpoint; POST records to " + h.cfg.Path})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reply(w, http.StatusMethodNotAllowed, answer{Error: "use POST"})
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outboxd"`)
		h.reply(w, http.StatusUnauthorized, answer{Error: "missing or wrong bearer token"})
		return
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		w.Header().Set("Retry-After", "1")
		h.reply(w, http.StatusServiceUnavailable, answer{Error: "too many requests at once"})
		return
	}
	// What the request holds of the budget is given back once its records
	// are committed or refused.
	l := &lease{b: h.cfg.Budget}
	defer l.releaseAll()
	records, status, a := h.read(w, r, l)
	if status != 0 {
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		h.reply(w, status, a)
		return
	}
	h.store(w, r, records)
}

func (h *HTTP) authorized(r *http.Request) bool { return Authorized(r, h.cfg.Token) }

// Authorized tells whether r carries the bearer token; an empty token
// lets every request in.
func Authorized(r *http.Request, token string) bool {
	if token == "" {
		return true
	}
	got := r.Header.Get("Authorization")
	want := "Bearer " + token
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// errBudgetBusy: the ingest budget stayed taken for BudgetWait.
var errBudgetBusy = errors.New("ingest memory budget busy")

// charger charges l, waiting at most BudgetWait for each piece.
func (h *HTTP) charger(r *http.Request, l *lease) func(int) error {
	acquire := func(n int64) error {
		err := h.cfg.Budget.AcquireWithin(r.Context(), n, h.cfg.BudgetWait)
		if err != nil && !errors.Is(err, ErrOverBudget) {
			return fmt.Errorf("%w: %w", errBudgetBusy, err)
		}
		return err
	}
	return func(n int) error { return l.charge(int64(n), acquire) }
}

// read decodes the body into envelopes, or says which status to answer.
func (h *HTTP) read(w http.ResponseWriter, r *http.Request, l *lease) ([][]byte, int, answer) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		ct = ""
	}
	st := newStamp(time.Now().UTC(), h.cfg.Host, "http")
	st.client = tlsconf.ClientOf(r.TLS).JSON()
	st.fields = h.cfg.AddFields
	d := &decoder{maxRecord: h.cfg.MaxRecordBytes, st: st, charge: h.charger(r, l)}
	decode := map[string]func(io.Reader) ([][]byte, error){
		"application/x-ndjson": d.ndjson, "application/ndjson": d.ndjson,
		"application/json": d.json, "text/plain": d.text,
	}[ct]
	if decode == nil {
		return nil, http.StatusUnsupportedMediaType, answer{Error: fmt.Sprintf("content type %q: send application/x-ndjson, application/json or text/plain", ct)}
	}
	body := io.Reader(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, http.StatusBadRequest, answer{Error: "gzip: " + err.Error()}
		}
		// Bound what the body inflates to, not only what was sent.
		body = &limitedReader{r: zr, left: h.cfg.MaxBodyBytes}
	default:
		return nil, http.StatusUnsupportedMediaType, answer{Error: "content encoding " + r.Header.Get("Content-Encoding") + ": send gzip or none"}
	}
	// The decoder's first buffer, before a byte is read.
	if err := d.charge(min(64<<10, h.cfg.MaxRecordBytes+1)); err != nil {
		return nil, http.StatusServiceUnavailable, answer{Error: "ingest is busy (its memory budget is taken); retry later"}
	}
	records, err := decode(body)
	h.Truncated.Add(int64(d.truncated))
	var tooBig *http.MaxBytesError
	var bodyErr *BodyError
	switch {
	case err == nil:
		return records, 0, answer{}
	case errors.Is(err, ErrOverBudget):
		return nil, http.StatusRequestEntityTooLarge, answer{Error: fmt.Sprintf(
			"the request needs more memory than ingest's whole budget (%d bytes); send smaller requests", h.cfg.Budget.Size())}
	case errors.Is(err, errBudgetBusy):
		return nil, http.StatusServiceUnavailable, answer{Error: "ingest is busy (its memory budget is taken); retry later"}
	case errors.As(err, &tooBig) || errors.Is(err, errInflatedTooBig):
		return nil, http.StatusRequestEntityTooLarge, answer{Error: fmt.Sprintf("body over %d bytes", h.cfg.MaxBodyBytes)}
	case errors.As(err, &bodyErr):
		a := answer{Error: bodyErr.Reason, Line: bodyErr.Line}
		if bodyErr.Index >= 0 {
			a.Index = &bodyErr.Index
		}
		if bodyErr.TooBig {
			return nil, http.StatusRequestEntityTooLarge, a
		}
		return nil, http.StatusBadRequest, a
	}
	return nil, http.StatusBadRequest, answer{Error: "read body: " + err.Error()}
}

// store appends the records and answers 202 only once they are committed.
func (h *HTTP) store(w http.ResponseWriter, r *http.Request, records [][]byte) {
	if len(records) == 0 {
		h.reply(w, http.StatusAccepted, answer{})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.FullWait)
	defer cancel()
	err := h.app.Append(ctx, "http", records)
	switch {
	case err == nil:
		h.Accepted.Add(int64(len(records)))
		h.Bytes.Add(totalBytes(records))
		h.reply(w, http.StatusAccepted, answer{Accepted: len(records)})
	case errors.Is(err, outbox.ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		h.reply(w, http.StatusServiceUnavailable, answer{Error: "the outbox is full; retry later"})
	case errors.Is(err, ErrNoRoute):
		h.reply(w, http.StatusUnprocessableEntity, answer{Error: "no route takes records from source http, so nothing was stored; " +
			"the configuration's routes must include one for http (retrying will not help)"})
	case errors.Is(err, outbox.ErrDiskFull):
		h.reply(w, http.StatusInsufficientStorage, answer{Error: "the disk is full; nothing of this request was stored"})
	default:
		h.cfg.Logger.Error("store records", "count", len(records), "err", err)
		h.reply(w, http.StatusInternalServerError, answer{Error: "could not store the records; nothing was stored"})
	}
}

var errInflatedTooBig = errors.New("decompressed body too large")

// limitedReader fails, rather than stops, past its limit.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		var probe [1]byte
		if n, err := l.r.Read(probe[:]); n == 0 && err != nil {
			return 0, err // the body ended exactly at the limit
		}
		return 0, errInflatedTooBig
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// totalBytes is the size of records, as stored.
func totalBytes(records [][]byte) int64 {
	var n int64
	for _, r := range records {
		n += int64(len(r))
	}
	return n
}
