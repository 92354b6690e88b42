package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/outboxd/outboxd/ingest/otlp"
	"github.com/outboxd/outboxd/outbox"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// failingTooLong is how long a sink may fail before /readyz says so with 503:
// a shipper that accepts but does not forward is not healthy.
const failingTooLong = 5 * time.Minute

// startAdmin serves /metrics, /healthz and /readyz on admin.listen.
func (d *daemon) startAdmin(wg *sync.WaitGroup) (*http.Server, error) {
	if d.cfg.Admin.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", d.cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", d.readyz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("admin endpoint", "err", err)
		}
	})
	d.log.Info("admin listening", "addr", ln.Addr().String())
	return srv, nil
}

type sinkHealth struct {
	QueueDepth   int       `json:"queue_depth"`
	Failing      bool      `json:"failing"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	FailingFor   string    `json:"failing_for,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	NeedsAction  bool      `json:"needs_action,omitempty"`
}

// readyz is 200 while ingest is open (no syslog listener failing to accept)
// and not blocked (no sink with when_full block has a full queue), the
// outbox takes records (its disk is not full) and no sink has failed for
// longer than failingTooLong or needs an operator; the body says which sinks
// fail and since when, and which block ingest.
func (d *daemon) readyz(w http.ResponseWriter, r *http.Request) {
	body := struct {
		Ready     bool                  `json:"ready"`
		Outbox    string                `json:"outbox_error,omitempty"`
		BlockedBy []string              `json:"ingest_blocked_by,omitempty"`
		Ingest    map[string]string     `json:"ingest_errors,omitempty"`
		Sinks     map[string]sinkHealth `json:"sinks"`
	}{Ready: d.ready.Load(), Sinks: map[string]sinkHealth{}}
	if body.BlockedBy = d.router.Blocking(); len(body.BlockedBy) > 0 {
		body.Ready = false // every sender waits, or hears 503, until these sinks drain
	}
	for i, s := range d.syslogs {
		if err := s.Healthy(); err != nil {
			if body.Ingest == nil {
				body.Ingest = map[string]string{}
			}
			body.Ingest[d.cfg.Ingest.Syslog[i].Listen], body.Ready = err.Error(), false
		}
	}
	if j := d.journal; j != nil {
		if err := j.Healthy(); err != nil {
			if body.Ingest == nil {
				body.Ingest = map[string]string{}
			}
			body.Ingest["journal"], body.Ready = err.Error(), false
		}
	}
	d.sinks.each(func(s *sinkRun) {
		snap, err := s.worker.Snapshot(r.Context())
		h := sinkHealth{QueueDepth: snap.QueueDepth, LastError: snap.LastError}
		if err != nil {
			h.LastError, body.Ready = err.Error(), false // the outbox cannot be read
		}
		if err := s.queue.Writable(); err != nil {
			body.Outbox, body.Ready = err.Error(), false // ingest would answer 507
		}
		if !snap.FailingSince.IsZero() {
			h.Failing, h.FailingSince, h.NeedsAction = true, snap.FailingSince, snap.NeedsAction
			h.FailingFor = time.Since(snap.FailingSince).Round(time.Second).String()
			// A sink refused for its own settings or credentials is not
			// ready at once: waiting will not fix it.
			if time.Since(snap.FailingSince) > failingTooLong || snap.NeedsAction {
				body.Ready = false
			}
		}
		body.Sinks[s.name] = h
	})
	w.Header().Set("Content-Type", "application/json")
	if !body.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(body)
}

// helpTruncated is shared: one metric name has one help text.
const helpTruncated = "Messages cut at the size limit, or so that the stored record (escapes and all) fits it, and stored."

// metrics registers gauges and counters that read the live state at scrape
// time: nothing is counted twice, nothing goes stale.
func (d *daemon) metrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, labels prometheus.Labels, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f))
	}
	reg.MustRegister(sinkCollector{d})
	space := func(name, help string, pick func(size, avail float64) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			size, avail, ok := dataDirSpace(d.cfg.DataDir)
			if !ok {
				return math.NaN()
			}
			return pick(size, avail)
		}))
	}
	space("outboxd_data_dir_size_bytes", "Size of the file system that holds data_dir.", func(size, _ float64) float64 { return size })
	space("outboxd_data_dir_avail_bytes", "Bytes free for outboxd on the file system that holds data_dir.", func(_, avail float64) float64 { return avail })
	if h := d.http; h != nil {
		l := prometheus.Labels{"endpoint": "http"}
		counter("outboxd_ingest_records_total", "Records accepted (committed).", l, func() float64 { return float64(h.Accepted.Load()) })
		counter("outboxd_ingest_bytes_total", "Bytes of the accepted records.", l, func() float64 { return float64(h.Bytes.Load()) })
		counter("outboxd_ingest_refused_requests_total", "Requests refused, for any reason (bad input, full, auth, memory budget, no route).", l, func() float64 { return float64(h.Refused.Load()) })
		counter("outboxd_ingest_truncated_records_total", helpTruncated, l, func() float64 { return float64(h.Truncated.Load()) })
	}
	otlpCounters := func(endpoint string, c *otlp.Counters) {
		l := prometheus.Labels{"endpoint": endpoint}
		counter("outboxd_ingest_records_total", "Records accepted (committed).", l, func() float64 { return float64(c.Accepted.Load()) })
		counter("outboxd_ingest_bytes_total", "Bytes of the accepted records.", l, func() float64 { return float64(c.Bytes.Load()) })
		counter("outboxd_ingest_refused_requests_total", "Requests refused, for any reason (bad input, full, auth, memory budget, no route).", l, func() float64 { return float64(c.Refused.Load()) })
		counter("outboxd_ingest_rejected_records_total", "OTLP log records over the record size limit, not stored and reported to the client in partial_success.", l, func() float64 { return float64(c.Rejected.Load()) })
	}
	if h := d.otlpHTTP; h != nil {
		otlpCounters("otlp_http", &h.Counters)
	}
	if g := d.otlpGRPC; g != nil {
		otlpCounters("otlp_grpc", &g.Counters)
	}
	for i, s := range d.syslogs {
		l := prometheus.Labels{"endpoint": d.cfg.Ingest.Syslog[i].Listen}
		counter("outboxd_ingest_records_total", "Records accepted (committed).", l, func() float64 { return float64(s.Received.Load()) })
		counter("outboxd_ingest_bytes_total", "Bytes of the accepted records.", l, func() float64 { return float64(s.Bytes.Load()) })
		counter("outboxd_ingest_dropped_records_total", "Datagrams that could not be stored: a full outbox or memory budget (UDP cannot push back).", l, func() float64 { return float64(s.Dropped.Load()) })
		counter("outboxd_ingest_truncated_records_total", helpTruncated, l, func() float64 { return float64(s.Truncated.Load()) })
		counter("outboxd_ingest_unrouted_records_total", "Records discarded because no route takes syslog.", l, func() float64 { return float64(s.Unrouted.Load()) })
		counter("outboxd_ingest_framing_errors_total", "TCP connections closed for an octet-counting length over the message limit.", l, func() float64 { return float64(s.FramingErrors.Load()) })
		counter("outboxd_ingest_refused_connections_total", "TCP connections closed at once: max_connections were open.", l, func() float64 { return float64(s.RefusedConns.Load()) })
		counter("outboxd_ingest_tls_handshake_errors_total", "tls:// connections whose TLS handshake failed or timed out.", l, func() float64 { return float64(s.HandshakeErrors.Load()) })
	}
	for _, c := range d.certs {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outboxd_ingest_tls_cert_not_after_seconds",
			Help: "When the TLS input's certificate in use expires (Unix time); SIGHUP re-reads it.", ConstLabels: prometheus.Labels{"input": c.path}},
			func() float64 { return float64(c.NotAfter().Unix()) }))
	}
	if t := d.tailer; t != nil {
		st := t.Stats()
		l := prometheus.Labels{"endpoint": "files"}
		counter("outboxd_ingest_records_total", "Records accepted (committed).", l, func() float64 { return float64(st.Records.Load()) })
		counter("outboxd_ingest_bytes_total", "Bytes of the accepted records.", l, func() float64 { return float64(st.Bytes.Load()) })
		counter("outboxd_ingest_truncated_records_total", helpTruncated, l, func() float64 { return float64(st.Truncated.Load()) })
		counter("outboxd_files_rotations_total", "Files seen truncated, and files read to their end after they left the globs.", nil, func() float64 { return float64(st.Rotations.Load()) })
		counter("outboxd_files_errors_total", "Files that could not be opened or read, and reads whose commit failed (all retried).", nil, func() float64 { return float64(st.Errors.Load()) })
		counter("outboxd_files_parse_errors_total", "json or cri lines that were not, stored as text with parse_error.", nil, func() float64 { return float64(st.ParseError.Load()) })
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outboxd_files_tracked", Help: "Files open and tailed."},
			func() float64 { return float64(len(t.Files())) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outboxd_files_lag_bytes", Help: "Bytes of the tailed files not yet committed to the outbox, all files together."},
			func() float64 {
				var lag int64
				for _, f := range t.Files() {
					lag += max(f.Size-f.Offset, 0)
				}
				return float64(lag)
			}))
	}
	if j := d.journal; j != nil {
		st := j.Stats()
		l := prometheus.Labels{"endpoint": "journal"}
		counter("outboxd_ingest_records_total", "Records accepted (committed).", l, func() float64 { return float64(st.Records.Load()) })
		counter("outboxd_ingest_bytes_total", "Bytes of the accepted records.", l, func() float64 { return float64(st.Bytes.Load()) })
		counter("outboxd_journal_filtered_total", "Journal entries read and left out by ingest.journal.units (their cursor is committed).", nil, func() float64 { return float64(st.Filtered.Load()) })
		counter("outboxd_journal_restarts_total", "journalctl runs that failed (exited, killed, missing) or whose commit failed; run again from the committed cursor.", nil, func() float64 { return float64(st.Restarts.Load()) })
		counter("outboxd_journal_cursor_not_found_total", "Starts whose stored cursor was no longer in the journal (vacuumed).", nil, func() float64 { return float64(st.Vacuumed.Load()) })
		counter("outboxd_journal_rereads_total", "Entries read again because their fields did not add up to their cursor's hash (journalctl read them while they were being written).", nil, func() float64 { return float64(st.Rereads.Load()) })
		counter("outboxd_journal_partial_total", "Entries stored although their fields never added up to their cursor's hash (a damaged journal file).", nil, func() float64 { return float64(st.Partial.Load()) })
	}
	return reg
}

// sinkCollector reports every running sink and the outbox file at scrape
// time. It reads the live set, so sinks added or removed by a reload appear
// and disappear.
type sinkCollector struct{ d *daemon }

var (
	descForwarded = prometheus.NewDesc("outboxd_forwarded_records_total", "Records the sink confirmed.", []string{"sink"}, nil)
	descBatches   = prometheus.NewDesc("outboxd_forwarded_batches_total", "Batches the sink confirmed.", []string{"sink"}, nil)
	descRetries   = prometheus.NewDesc("outboxd_forward_retries_total", "Failed attempts that were retried.", []string{"sink"}, nil)
	descMisconf   = prometheus.NewDesc("outboxd_forward_misconfigured_total",
		"Failed attempts the destination refused for the sink's own settings or credentials (401, 403, 404, SASL): retried, an operator must act.", []string{"sink"}, nil)
	descRejected = prometheus.NewDesc("outboxd_dead_lettered_records_total", "Records moved to the dead-letter queue.", []string{"sink"}, nil)
	descQueued   = prometheus.NewDesc("outboxd_queue_records", "Records in the sink's outbox queue.", []string{"sink"}, nil)
	descOldest   = prometheus.NewDesc("outboxd_queue_oldest_age_seconds", "Age of the oldest queued record; 0 when empty.", []string{"sink"}, nil)
	descFailing  = prometheus.NewDesc("outboxd_sink_failing_seconds", "How long the sink has been failing; 0 when healthy.", []string{"sink"}, nil)
	descBackoff  = prometheus.NewDesc("outboxd_sink_backoff_seconds", "The current wait before the next attempt.", []string{"sink"}, nil)
	descDropped  = prometheus.NewDesc("outboxd_sink_dropped_records_total",
		"Records a full sink's when_full policy dropped for it (stored for the other sinks): new ones left out, or the oldest deleted.",
		[]string{"sink", "which"}, nil)
	descDLQ   = prometheus.NewDesc("outboxd_dlq_records", "Records in the sink's dead-letter queue.", []string{"sink"}, nil)
	descLimit = prometheus.NewDesc("outboxd_queue_limit_records", "max_records: the most records the sink's queue holds; absent when there is no limit.", []string{"sink"}, nil)
	descFull  = prometheus.NewDesc("outboxd_sink_full",
		"1 while the sink's queue is full (max_records, or max_disk_bytes for the outbox file): its when_full policy applies.", []string{"sink"}, nil)
	descDiskFull  = prometheus.NewDesc("outboxd_outbox_disk_full", "1 while the outbox file's disk is full and new records are refused.", nil, nil)
	descSplits    = prometheus.NewDesc("outboxd_forward_split_requests_total", "Extra requests an HTTP sink made to isolate records its collector refused (a refused batch split in halves).", []string{"sink"}, nil)
	descDiskUsed  = prometheus.NewDesc("outboxd_outbox_used_bytes", "Bytes of the outbox file in live pages, what max_disk_bytes limits (only while it is set).", nil, nil)
	descDiskLimit = prometheus.NewDesc("outboxd_outbox_limit_bytes", "max_disk_bytes: the outbox file's limit of live pages (only while it is set).", nil, nil)
	descCommitLat = prometheus.NewDesc("outboxd_outbox_commit_seconds", "Time per outbox commit: its statements and its fsync.", nil, nil)
	descGroup     = prometheus.NewDesc("outboxd_outbox_group_commit_writes", "Writes (ingest requests, acks) that shared one outbox commit.", nil, nil)
)

// Describe sends nothing: the collector is unchecked, since its sinks change.
func (sinkCollector) Describe(chan<- *prometheus.Desc) {}

func (c sinkCollector) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	var stats *outbox.CommitStats
	c.d.sinks.each(func(s *sinkRun) {
		st, snap := s.worker.Stats(), s.worker.Snapshot
		counter := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), s.name)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, s.name)
		}
		counter(descForwarded, st.RecordsSent.Load())
		counter(descBatches, st.Batches.Load())
		counter(descRetries, st.Retries.Load())
		counter(descMisconf, st.Misconfigured.Load())
		counter(descRejected, st.Rejected.Load())
		n, _ := s.queue.Len(ctx)
		gauge(descQueued, float64(n))
		age := 0.0
		if at, ok, _ := s.queue.Oldest(ctx); ok {
			age = time.Since(at).Seconds()
		}
		gauge(descOldest, age)
		sn, _ := snap(ctx)
		failing := 0.0
		if !sn.FailingSince.IsZero() {
			failing = time.Since(sn.FailingSince).Seconds()
		}
		gauge(descFailing, failing)
		gauge(descBackoff, sn.Backoff.Seconds())
		if n, err := s.queue.DeadLetterLen(ctx); err == nil {
			gauge(descDLQ, float64(n)) // through the queue's own handle: no file opened per scrape
		}
		if m := c.d.cfg.MaxRecords; m > 0 {
			gauge(descLimit, float64(m))
		}
		gauge(descFull, boolFloat(s.queue.Full()))
		if sp, ok := s.sink.(interface{ SplitRequests() int64 }); ok {
			counter(descSplits, sp.SplitRequests())
		}
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(c.d.router.Dropped(s.name)), s.name, "newest")
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.queue.Evicted()), s.name, "oldest")
		if stats == nil { // every sink's queue is a table of the one outbox file
			cs := s.queue.CommitStats()
			stats = &cs
			ch <- prometheus.MustNewConstMetric(descDiskFull, prometheus.GaugeValue, boolFloat(s.queue.Writable() != nil))
			if used, limit := s.queue.DiskUsage(); limit > 0 {
				ch <- prometheus.MustNewConstMetric(descDiskUsed, prometheus.GaugeValue, float64(used))
				ch <- prometheus.MustNewConstMetric(descDiskLimit, prometheus.GaugeValue, float64(limit))
			}
		}
	})
	if stats != nil {
		ch <- constHistogram(descCommitLat, stats.Latency)
		ch <- constHistogram(descGroup, stats.Writers)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// dataDirSpace reads the size and the space left to outboxd's user on the
// file system that holds the data directory; ok is false if it cannot.
func dataDirSpace(dir string) (size, avail float64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	return float64(st.Blocks) * float64(st.Bsize), float64(st.Bavail) * float64(st.Bsize), true
}

func constHistogram(d *prometheus.Desc, h outbox.Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Counts[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets)
}
