package otlp

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/ingest/tlsconf"
)

// DefaultHTTPListen is OTLP/HTTP's port, on loopback only.
const DefaultHTTPListen = "127.0.0.1:4318"

// Config configures the receiver: the settings and defaults of HTTP
// ingest (body and record limits, concurrency, full wait, the shared
// budget, the bearer token). Path defaults to /v1/logs, OTLP's path.
type Config = ingest.HTTPConfig

// HTTP is the OTLP/HTTP logs receiver.
type HTTP struct {
	cfg Config
	app ingest.Appender
	sem chan struct{}

	Counters
}

// NewHTTP returns the receiver; serve it with NewHTTPServer.
func NewHTTP(cfg Config, app ingest.Appender) *HTTP {
	cfg = cfg.WithDefaults()
	return &HTTP{cfg: cfg, app: app, sem: make(chan struct{}, cfg.MaxConcurrent)}
}

// NewHTTPServer serves h at addr (DefaultHTTPListen when empty) with
// timeouts that keep slow clients from holding connections.
func NewHTTPServer(addr string, h *HTTP) *http.Server {
	if addr == "" {
		addr = DefaultHTTPListen
	}
	return ingest.NewServer(addr, h)
}

const (
	ctProto = "application/x-protobuf"
	ctJSON  = "application/json"
)

// gRPC status codes used in google.rpc.Status bodies.
const (
	codeInvalidArgument    = 3
	codeFailedPrecondition = 9
	codeInternal           = 13
	codeUnavailable        = 14
	codeUnimplemented      = 12
	codeUnauthenticated    = 16
)

func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		ct = ""
	}
	if ct != ctProto {
		ct = ctJSON // errors about the content type itself are answered in JSON
	}
	if r.URL.Path != h.cfg.Path {
		h.fail(w, ct, http.StatusNotFound, codeUnimplemented, "no such endpoint; POST logs to "+h.cfg.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, ct, http.StatusMethodNotAllowed, codeUnimplemented, "use POST")
		return
	}
	if !ingest.Authorized(r, h.cfg.Token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outboxd"`)
		h.fail(w, ct, http.StatusUnauthorized, codeUnauthenticated, "missing or wrong bearer token")
		return
	}
	if got, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); got != ctProto && got != ctJSON {
		h.fail(w, ct, http.StatusUnsupportedMediaType, codeInvalidArgument,
			fmt.Sprintf("content type %q: send application/x-protobuf or application/json", r.Header.Get("Content-Type")))
		return
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		w.Header().Set("Retry-After", "1")
		h.fail(w, ct, http.StatusServiceUnavailable, codeUnavailable, "too many requests at once; retry later")
		return
	}
	// What the request holds of the budget is given back once its records
	// are committed or refused.
	held := &hold{ctx: r.Context(), budget: h.cfg.Budget, wait: h.cfg.BudgetWait}
	defer held.release()
	charge := held.charge
	body, err := h.readBody(w, r, charge)
	if err != nil {
		h.failRead(w, ct, err)
		return
	}
	// The decoded logs take about twice the body's size.
	if err := charge(2 * int64(len(body))); err != nil {
		h.failRead(w, ct, err)
		return
	}
	ld, err := decode(ct, body)
	if err != nil {
		h.fail(w, ct, http.StatusBadRequest, codeInvalidArgument, err.Error())
		return
	}
	b := &builder{received: time.Now().UTC(), host: h.cfg.Host, maxRecord: h.cfg.MaxRecordBytes,
		client: tlsconf.ClientOf(r.TLS).JSON(), fields: h.cfg.AddFields}
	b.build(ld)
	if err := charge(b.bytes); err != nil {
		h.refuse(w, ct, refuseCharge(err, h.cfg.Budget.Size()))
		return
	}
	h.store(w, r, ct, b)
}

// decode reads an ExportLogsServiceRequest (its wire form is LogsData's).
func decode(ct string, body []byte) (plog.Logs, error) {
	var (
		ld  plog.Logs
		err error
	)
	unmarshal, fix := (&plog.JSONUnmarshaler{}).UnmarshalLogs, withoutBadIDsJSON
	if ct == ctProto {
		unmarshal, fix = (&plog.ProtoUnmarshaler{}).UnmarshalLogs, withoutBadIDsProto
	}
	ld, err = unmarshal(body)
	if err != nil {
		// An id of the wrong length is left out, not a reason to refuse
		// the request (ids.go); anything else wrong stays an error, and is
		// not looked at again (pdata's id errors name an "ID").
		if !strings.Contains(err.Error(), "ID") {
			return plog.Logs{}, fmt.Errorf("undecodable ExportLogsServiceRequest: %w", err)
		}
		if fixed, changed := fix(body); changed {
			if ld, ferr := unmarshal(fixed); ferr == nil {
				return ld, nil
			}
		}
		return plog.Logs{}, fmt.Errorf("undecodable ExportLogsServiceRequest: %w", err)
	}
	return ld, nil
}

var (
	errTooLarge = errors.New("body too large")
	errGzip     = errors.New("gzip")
	errEncoding = errors.New("content encoding")
)

// readBody reads the whole body, decompressed, failing with errTooLarge
// past MaxBodyBytes after decompression (a gzip bomb stops there), and
// charging the budget as it grows.
func (h *HTTP) readBody(w http.ResponseWriter, r *http.Request, charge func(int64) error) ([]byte, error) {
	limit := h.cfg.MaxBodyBytes
	in := io.Reader(http.MaxBytesReader(w, r.Body, limit))
	enc := r.Header.Get("Content-Encoding")
	switch enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errGzip, err)
		}
		in = zr
	default:
		return nil, fmt.Errorf("%w %q: send gzip or none", errEncoding, enc)
	}
	in = io.LimitReader(in, limit+1)
	// The buffer doubles as it fills; each new buffer is charged whole,
	// since the old one stays in memory until the collector frees it. A
	// plain body of known length gets one buffer of that length (and a byte
	// to see the end in): charged once and never copied, where doubling
	// would charge about three times its size.
	var buf []byte
	if n := r.ContentLength; n > 0 && n <= limit && (enc == "" || enc == "identity") {
		if err := charge(n + 1); err != nil {
			return nil, err
		}
		buf = make([]byte, 0, n+1)
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return nil, errTooLarge
			}
			next := int(min(max(2*int64(cap(buf)), 64<<10), limit+1))
			if err := charge(int64(next)); err != nil {
				return nil, err
			}
			buf = append(make([]byte, 0, next), buf...)
		}
		n, err := in.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if int64(len(buf)) > limit {
				return nil, errTooLarge
			}
			return buf, nil
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			switch {
			case errors.As(err, &tooBig):
				return nil, errTooLarge
			case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.Is(err, io.ErrUnexpectedEOF):
				return nil, fmt.Errorf("%w: %w", errGzip, err)
			}
			return nil, fmt.Errorf("read body: %w", err)
		}
	}
}

// failRead answers a body that could not be read or charged.
func (h *HTTP) failRead(w http.ResponseWriter, ct string, err error) {
	switch {
	case errors.Is(err, errTooLarge):
		h.fail(w, ct, http.StatusRequestEntityTooLarge, codeInvalidArgument,
			fmt.Sprintf("body over %d bytes (after decompression)", h.cfg.MaxBodyBytes))
	case errors.Is(err, errGzip), errors.Is(err, errEncoding):
		h.fail(w, ct, http.StatusBadRequest, codeInvalidArgument, err.Error())
	case errors.Is(err, ingest.ErrOverBudget), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		h.refuse(w, ct, refuseCharge(err, h.cfg.Budget.Size()))
	default:
		h.fail(w, ct, http.StatusBadRequest, codeInvalidArgument, err.Error())
	}
}

// refuse answers r, with Retry-After when the client may retry.
func (h *HTTP) refuse(w http.ResponseWriter, ct string, r *refusal) {
	if r.retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(r.retry/time.Second)))
	}
	h.fail(w, ct, r.status, r.code, r.msg)
}

// store appends the records, all or none, and answers only once they are
// committed.
func (h *HTTP) store(w http.ResponseWriter, r *http.Request, ct string, b *builder) {
	if len(b.records) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.FullWait)
		err := h.app.Append(ctx, Source, b.records)
		cancel()
		if refused := refuseAppend(err, len(b.records), h.cfg.Logger); refused != nil {
			h.refuse(w, ct, refused)
			return
		}
		h.Accepted.Add(int64(len(b.records)))
		h.Bytes.Add(b.bytes)
	}
	msg := ""
	if b.rejected > 0 {
		h.Rejected.Add(int64(b.rejected))
		msg = rejectedMessage(b.rejected, h.cfg.MaxRecordBytes)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	w.Write(exportResponse(ct, int64(b.rejected), msg))
}

// fail answers status with a google.rpc.Status body in content type ct.
func (h *HTTP) fail(w http.ResponseWriter, ct string, status, code int, msg string) {
	h.Refused.Add(1)
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	w.Write(statusBody(ct, code, msg))
}

// exportResponse is an ExportLogsServiceResponse; partial_success is set
// when records were rejected.
func exportResponse(ct string, rejected int64, msg string) []byte {
	if ct == ctJSON {
		if rejected == 0 {
			return []byte("{}")
		}
		b := []byte(`{"partialSuccess":{"rejectedLogRecords":"`)
		b = strconv.AppendInt(b, rejected, 10)
		b = append(b, `","errorMessage":`...)
		b = ingest.AppendJSONString(b, msg)
		return append(b, "}}"...)
	}
	if rejected == 0 {
		return []byte{}
	}
	var ps []byte
	ps = protowire.AppendTag(ps, 1, protowire.VarintType)
	ps = protowire.AppendVarint(ps, uint64(rejected))
	ps = protowire.AppendTag(ps, 2, protowire.BytesType)
	ps = protowire.AppendString(ps, msg)
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, ps)
}

// statusBody is a google.rpc.Status with code and message.
func statusBody(ct string, code int, msg string) []byte {
	if ct == ctJSON {
		b := []byte(`{"code":`)
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, `,"message":`...)
		b = ingest.AppendJSONString(b, msg)
		return append(b, '}')
	}
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(code))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, msg)
}
