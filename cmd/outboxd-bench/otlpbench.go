package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
)

// otlpFlags are the otlp command's flags.
type otlpFlags struct {
	protocol   string
	sink       string
	records    int
	batch      int
	size       int
	clients    int
	runs       int
	gzip       bool
	cpuprofile string
}

// otlpCommand measures OTLP ingest into the real daemon at durability full:
// clients export ExportLogsServiceRequests of batch LogRecords flat out, each
// waiting for its answer; records/s, request latency, the daemon's CPU per
// million records and its peak RSS, over runs fresh daemons (medians).
func otlpCommand(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("otlp", flag.ContinueOnError)
	var f otlpFlags
	fs.StringVar(&f.protocol, "protocol", "http", "OTLP protocol: http (http/protobuf, POST /v1/logs), grpc (LogsService/Export, a connection a client), "+
		"or both: http and grpc run by run (http, grpc, http, ...), with the ratio of their medians")
	fs.StringVar(&f.sink, "sink", "kafka", "kafka: the daemon forwards to an in-process Kafka broker (kfake) while it takes the load, "+
		"and every record must arrive; down: an HTTP sink that answers 503, so only ingest is measured")
	fs.IntVar(&f.records, "records", 1_048_576, "records a run (rounded up to whole requests)")
	fs.IntVar(&f.batch, "batch", 512, "LogRecords a request")
	fs.IntVar(&f.size, "size", 256, "bytes of one encoded LogRecord")
	fs.IntVar(&f.clients, "clients", 16, "concurrent clients, each with one request in flight")
	fs.IntVar(&f.runs, "runs", 3, "runs, each on a fresh daemon; the figures are their medians")
	fs.BoolVar(&f.gzip, "gzip", false, "compress each request with gzip (Content-Encoding: gzip; the gRPC gzip compressor)")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "the first run's daemon writes a CPU profile here (go tool pprof); "+
		"with -protocol both, each protocol's first run to this path and .http or .grpc")
	if err := fs.Parse(args); err != nil {
		return err
	}
	keys := []string{f.protocol}
	if f.protocol == "both" {
		keys = []string{"http", "grpc"}
	} else if _, ok := otlpProtocols[f.protocol]; !ok {
		return fmt.Errorf("-protocol %q: want http, grpc or both", f.protocol)
	}
	if f.sink != "kafka" && f.sink != "down" {
		return fmt.Errorf("-sink %q: want kafka or down", f.sink)
	}
	if f.batch < 1 || f.clients < 1 || f.runs < 1 || f.records < 1 {
		return errors.New("-batch, -clients, -runs and -records must be at least 1")
	}
	tmpl, err := newOTLPTemplate(f.batch, f.size)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "outboxd-otlp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := buildOutboxd(ctx, dir, hostArch())
	if err != nil {
		return err
	}
	runs := make([][]otlpRun, len(keys)) // by protocol
	for i := range f.runs {
		for k, key := range keys {
			profile := ""
			if i == 0 && f.cpuprofile != "" {
				profile = f.cpuprofile
				if len(keys) > 1 {
					profile += "." + key
				}
			}
			fmt.Fprintf(os.Stderr, "== otlp %s run %d of %d\n", key, i+1, f.runs)
			r, err := otlpOnce(ctx, bin, filepath.Join(dir, fmt.Sprint(key, "-run", i)), otlpProtocols[key], tmpl, f, profile)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", key, i+1, err)
			}
			runs[k] = append(runs[k], r)
		}
	}
	printOTLP(w, args, f, tmpl, keys, runs)
	return nil
}

// otlpProtocol is how the bench speaks one OTLP protocol: the daemon's
// ingest.otlp entry for it and its clients. The request bodies are encoded
// ExportLogsServiceRequests either way (gRPC sends the same bytes).
type otlpProtocol struct {
	name   string // as the output names it
	config string // the key under ingest.otlp
	// exporters returns one exporter for each client (they may share one)
	// and what closes them.
	exporters func(addr string, clients int, gzip bool) ([]otlpExporter, func(), error)
}

var otlpProtocols = map[string]otlpProtocol{
	"http": {"OTLP/HTTP protobuf", "http", newHTTPExporters},
	"grpc": {"OTLP/gRPC", "grpc", newGRPCExporters},
}

// otlpExporter sends one encoded ExportLogsServiceRequest and returns once
// the receiver has answered: nil for success.
type otlpExporter interface {
	export(ctx context.Context, req []byte) error
}

// httpExporter is every client: one http.Client keeping a connection for
// each.
type httpExporter struct {
	client *http.Client
	url    string
	gzip   bool
}

func newHTTPExporters(addr string, clients int, gzip bool) ([]otlpExporter, func(), error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	e := &httpExporter{client: &http.Client{Transport: tr}, url: "http://" + addr + "/v1/logs", gzip: gzip}
	exps := make([]otlpExporter, clients)
	for i := range exps {
		exps[i] = e
	}
	return exps, tr.CloseIdleConnections, nil
}

func (e *httpExporter) export(ctx context.Context, req []byte) error {
	if e.gzip {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(req)
		zw.Close()
		req = z.Bytes()
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(req))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/x-protobuf")
	if e.gzip {
		r.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := e.client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %q", resp.StatusCode, body)
	}
	return nil
}

// otlpTemplate is one encoded ExportLogsServiceRequest of batch LogRecords
// whose string bodies start "bench-NNNNNNNNNNNN-TTTTTTTTTTTTTTTTTTT ": each
// request is a copy with the record numbers and the send time written in
// (fixed widths, so no length changes), as the compare bench's consumer
// reads them at Kafka.
type otlpTemplate struct {
	req        []byte
	at         []int // where each record's number starts in req
	recordSize int   // one LogRecord, encoded
}

const (
	otlpNumWidth  = 12
	otlpTimeWidth = 19
)

func newOTLPTemplate(batch, size int) (otlpTemplate, error) {
	encode := func(n, pad int) ([]byte, error) {
		ld := plog.NewLogs()
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("host.name", "load-1")
		rl.Resource().Attributes().PutStr("service.name", "otlp-load")
		sl := rl.ScopeLogs().AppendEmpty()
		sl.Scope().SetName("load")
		sl.Scope().SetVersion("1.0.0")
		body := "bench-" + strings.Repeat("0", otlpNumWidth) + "-" + strings.Repeat("0", otlpTimeWidth) + " " + strings.Repeat("x", pad)
		ts := pcommon.NewTimestampFromTime(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
		for range n {
			lr := sl.LogRecords().AppendEmpty()
			lr.SetTimestamp(ts)
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
			lr.Body().SetStr(body)
			lr.Attributes().PutStr("http.method", "GET")
			lr.Attributes().PutInt("http.status_code", 200)
			lr.SetTraceID(pcommon.TraceID{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c})
			lr.SetSpanID(pcommon.SpanID{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74})
			lr.SetFlags(plog.DefaultLogRecordFlags.WithIsSampled(true))
		}
		return (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	}
	// One LogRecord's size is what a second one adds; the pad makes it size.
	one, err := encode(1, 0)
	if err != nil {
		return otlpTemplate{}, err
	}
	two, _ := encode(2, 0)
	bare := len(two) - len(one)
	if size < bare {
		return otlpTemplate{}, fmt.Errorf("-size %d: a LogRecord of this shape takes at least %d bytes", size, bare)
	}
	// The body's length prefix may take a byte more once padded.
	pad := size - bare
	var t otlpTemplate
	for ; pad >= 0; pad-- {
		one, _ = encode(1, pad)
		two, _ = encode(2, pad)
		if len(two)-len(one) <= size {
			break
		}
	}
	if t.req, err = encode(batch, pad); err != nil {
		return otlpTemplate{}, err
	}
	t.recordSize = len(two) - len(one)
	for i := 0; ; {
		j := bytes.Index(t.req[i:], benchTag)
		if j < 0 {
			break
		}
		t.at = append(t.at, i+j+len(benchTag))
		i += j + len(benchTag)
	}
	if len(t.at) != batch {
		return otlpTemplate{}, fmt.Errorf("the request template has %d numbered bodies, want %d", len(t.at), batch)
	}
	return t, nil
}

// request is a copy of the template with records first.. numbered and the
// send time now.
func (t otlpTemplate) request(first int64, now time.Time) []byte {
	b := slices.Clone(t.req)
	ns := now.UnixNano()
	for k, at := range t.at {
		putDigits(b[at:at+otlpNumWidth], first+int64(k))
		putDigits(b[at+otlpNumWidth+1:at+otlpNumWidth+1+otlpTimeWidth], ns)
	}
	return b
}

// putDigits writes v in decimal into b, zero-padded to len(b).
func putDigits(b []byte, v int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// otlpRun is one run's figures.
type otlpRun struct {
	accepted          int64
	took              time.Duration
	p50, p99          time.Duration
	cpuPerMillion     float64 // daemon CPU seconds per 1M records
	benchCPU          float64 // this process's CPU seconds over the run: clients, and kfake with its consumer
	peakRSS           int64   // kB
	delivered         int     // records at Kafka (sink kafka)
	deliverTook       time.Duration
	refused, requests int64
	firstErr          string
}

func (r otlpRun) rate() float64 { return float64(r.accepted) / r.took.Seconds() }

// otlpOnce runs the daemon in dir with the chosen sink, sends the load and
// measures.
func otlpOnce(ctx context.Context, bin, dir string, proto otlpProtocol, tmpl otlpTemplate, f otlpFlags, profile string) (otlpRun, error) {
	var r otlpRun
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	var (
		sink string
		cons *consumer
	)
	if f.sink == "kafka" {
		broker, err := newBroker("bench")
		if err != nil {
			return r, err
		}
		defer broker.Close()
		if cons, err = newConsumer(broker); err != nil {
			return r, err
		}
		defer cons.close()
		sink = fmt.Sprintf("  out:\n    type: kafka\n    brokers: [%s]\n    topic: bench\n    linger: 5ms\n", broker.ListenAddrs()[0])
	} else {
		down := &collector{}
		down.down.Store(true)
		srv := httptest.NewServer(down)
		defer srv.Close()
		sink = fmt.Sprintf("  out:\n    type: http\n    url: %s\n    retry: {initial: 1s, max: 5s}\n", srv.URL)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	cfg := fmt.Sprintf(`data_dir: %s/data
durability: full
ingest:
  otlp:
    %s: {listen: %s}
sinks:
%sroutes:
  - sources: [otlp]
    sinks: [out]
`, dir, proto.config, addr, sink)
	var extra []string
	if profile != "" {
		extra = []string{"-cpuprofile", profile}
	}
	dmn, err := startDaemon(bin, dir, cfg, extra...)
	if err != nil {
		return r, err
	}
	defer dmn.stop()
	exps, closeExps, err := proto.exporters(addr, f.clients, f.gzip)
	if err != nil {
		return r, err
	}
	defer closeExps()
	if err := exps[0].export(ctx, tmpl.request(0, time.Now())); err != nil { // one request to warm up
		return r, fmt.Errorf("first request: %w\n%s", err, dmn.logText())
	}
	requests := (f.records + f.batch - 1) / f.batch
	ticks0, _ := cpuTicks(dmn.pid())
	self0 := selfCPU()
	start := time.Now()
	latencies, refused, firstErr := otlpLoad(ctx, exps, tmpl, requests)
	r.took = time.Since(start)
	r.requests, r.refused = int64(requests), refused
	r.accepted = int64(len(latencies)) * int64(len(tmpl.at))
	if firstErr != nil {
		r.firstErr = firstErr.Error()
	}
	slices.Sort(latencies)
	if len(latencies) > 0 {
		r.p50, r.p99 = quantile(latencies, 0.50), quantile(latencies, 0.99)
	}
	if cons != nil {
		want := int(r.accepted) + len(tmpl.at) // and the warm-up request
		err := waitFor(ctx, "every record at Kafka", 10*time.Minute, func() bool { return cons.count() >= want })
		r.delivered = cons.count() - len(tmpl.at)
		r.deliverTook = cons.lastAt().Sub(start)
		if err != nil {
			return r, fmt.Errorf("%w: %d of %d delivered", err, r.delivered, r.accepted)
		}
	}
	ticks1, _ := cpuTicks(dmn.pid())
	r.benchCPU = selfCPU() - self0
	if r.accepted > 0 {
		r.cpuPerMillion = float64(ticks1-ticks0) / 100 / float64(r.accepted) * 1e6
	}
	r.peakRSS, _ = procStatus(dmn.pid(), "VmHWM")
	return r, nil
}

// selfCPU is this process's user and system CPU seconds so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// otlpLoad sends requests numbered requests (record numbers from one batch
// on, after the warm-up's) from a goroutine for each exporter, each waiting
// for its answer; it returns the latency of every accepted request, the
// count of refused ones and the first error.
func otlpLoad(ctx context.Context, exps []otlpExporter, tmpl otlpTemplate, requests int) ([]time.Duration, int64, error) {
	var (
		next     atomic.Int64
		refused  atomic.Int64
		mu       sync.Mutex
		all      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	batch := int64(len(tmpl.at))
	for _, exp := range exps {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(requests) {
					break
				}
				sent := time.Now()
				err := exp.export(ctx, tmpl.request(i*batch, sent))
				if err != nil {
					refused.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, time.Since(sent))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, refused.Load(), firstErr
}

// otlpMedians are the medians of one protocol's runs.
type otlpMedians struct {
	rate, p50, p99, cpuPerMillion, peakRSS float64
}

func medians(runs []otlpRun) otlpMedians {
	med := func(v func(otlpRun) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = v(r)
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	return otlpMedians{
		rate:          med(otlpRun.rate),
		p50:           med(func(r otlpRun) float64 { return float64(r.p50) }),
		p99:           med(func(r otlpRun) float64 { return float64(r.p99) }),
		cpuPerMillion: med(func(r otlpRun) float64 { return r.cpuPerMillion }),
		peakRSS:       med(func(r otlpRun) float64 { return float64(r.peakRSS) }),
	}
}

// printOTLP prints a table of runs for each protocol (keys), the target's
// rows and, for two protocols, the ratios of the second's medians to the
// first's.
func printOTLP(w io.Writer, args []string, f otlpFlags, tmpl otlpTemplate, keys []string, runs [][]otlpRun) {
	fmt.Fprintf(w, "`go run ./cmd/outboxd-bench otlp %s`\n\n", strings.Join(args, " "))
	sink := "forwarding to Kafka (kfake, in the bench's process) while it takes the load; every record checked there"
	cpu := "ingest and forwarding"
	if f.sink == "down" {
		sink = "its sink down (an HTTP sink answering 503): ingest only"
		cpu = "ingest"
	}
	compression := ""
	if f.gzip {
		compression = ", gzip"
	}
	order := ""
	if len(keys) > 1 {
		order = " (the protocols alternating run by run)"
	}
	meds := make([]otlpMedians, len(keys))
	for k, key := range keys {
		proto := otlpProtocols[key]
		fmt.Fprintf(w, "%s into outboxd at durability full, %s; requests of %d LogRecords of %d bytes (encoded%s), %d clients flat out, %d requests a run, %d runs on fresh daemons%s:\n\n",
			proto.name, sink, len(tmpl.at), tmpl.recordSize, compression, f.clients, (f.records+f.batch-1)/f.batch, len(runs[k]), order)
		fmt.Fprintf(w, "| run | records/s | request p50 | p99 | daemon CPU s per 1M records (%s) | peak RSS | bench process CPU s | refused requests |\n", cpu)
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
		for i, r := range runs[k] {
			errs := ""
			if r.firstErr != "" {
				errs = " (first: " + r.firstErr + ")"
			}
			fmt.Fprintf(w, "| %d | %.0f | %s | %s | %.2f | %s | %.1f | %d%s |\n", i+1, r.rate(), round(r.p50), round(r.p99), r.cpuPerMillion, mib(r.peakRSS), r.benchCPU, r.refused, errs)
		}
		m := medians(runs[k])
		meds[k] = m
		fmt.Fprintf(w, "| median | %.0f | %s | %s | %.2f | %s | | |\n\n", m.rate,
			round(time.Duration(m.p50)), round(time.Duration(m.p99)), m.cpuPerMillion, mib(int64(m.peakRSS)))
		if f.sink == "kafka" {
			for i, r := range runs[k] {
				fmt.Fprintf(w, "run %d: %d of %d accepted records at Kafka, the last %.1f s after the first request (%.0f records/s delivered)\n",
					i+1, r.delivered, r.accepted, r.deliverTook.Seconds(), float64(r.delivered)/r.deliverTook.Seconds())
			}
			fmt.Fprintln(w)
		}
	}
	if len(keys) == 2 {
		a, b := meds[0], meds[1]
		fmt.Fprintf(w, "%s / %s, medians: records/s %.2f, request p50 %.2f, p99 %.2f, daemon CPU per record %.2f, peak RSS %.2f\n\n",
			otlpProtocols[keys[1]].name, otlpProtocols[keys[0]].name, b.rate/a.rate, b.p50/a.p50, b.p99/a.p99, b.cpuPerMillion/a.cpuPerMillion, b.peakRSS/a.peakRSS)
		// Each pair ran back to back, so its ratio moves less with the
		// machine's load than the medians do.
		pairs := make([]string, len(runs[0]))
		ratios := make([]float64, len(runs[0]))
		for i := range runs[0] {
			ratios[i] = runs[1][i].rate() / runs[0][i].rate()
			pairs[i] = fmt.Sprintf("%.2f", ratios[i])
		}
		slices.Sort(ratios)
		fmt.Fprintf(w, "records/s, run by run (each pair back to back): %s; median %.2f\n\n", strings.Join(pairs, " / "), ratios[len(ratios)/2])
	}
	fmt.Fprintln(w, "| what | measured | target | |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for k, key := range keys {
		rate := meds[k].rate
		report(w, fmt.Sprintf("%s, %d clients, %d LogRecords a request (median records/s)", otlpProtocols[key].name, f.clients, len(tmpl.at)),
			fmt.Sprintf("%.0f", rate), ">= 150,000", rate >= 150_000)
	}
}
