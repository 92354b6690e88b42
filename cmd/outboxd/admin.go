package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

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
}

// readyz is 200 while ingest is open and no sink has failed for longer than
// failingTooLong; the body says which sinks fail and since when.
func (d *daemon) readyz(w http.ResponseWriter, r *http.Request) {
	body := struct {
		Ready bool                  `json:"ready"`
		Sinks map[string]sinkHealth `json:"sinks"`
	}{Ready: d.ready.Load(), Sinks: map[string]sinkHealth{}}
	for name, wk := range d.workers {
		snap, err := wk.Snapshot(r.Context())
		h := sinkHealth{QueueDepth: snap.QueueDepth, LastError: snap.LastError}
		if err != nil {
			h.LastError, body.Ready = err.Error(), false // the outbox cannot be read
		}
		if !snap.FailingSince.IsZero() {
			h.Failing, h.FailingSince = true, snap.FailingSince
			h.FailingFor = time.Since(snap.FailingSince).Round(time.Second).String()
			if time.Since(snap.FailingSince) > failingTooLong {
				body.Ready = false
			}
		}
		body.Sinks[name] = h
	}
	w.Header().Set("Content-Type", "application/json")
	if !body.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(body)
}

// metrics registers gauges and counters that read the live state at scrape
// time: nothing is counted twice, nothing goes stale.
func (d *daemon) metrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, labels prometheus.Labels, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f))
	}
	gauge := func(name, help string, labels prometheus.Labels, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
	}
	for name, wk := range d.workers {
		l, st, q := prometheus.Labels{"sink": name}, wk.Stats(), d.queues[name]
		counter("outboxd_forwarded_records_total", "Records the sink confirmed.", l, func() float64 { return float64(st.RecordsSent.Load()) })
		counter("outboxd_forwarded_batches_total", "Batches the sink confirmed.", l, func() float64 { return float64(st.Batches.Load()) })
		counter("outboxd_forward_retries_total", "Failed attempts that were retried.", l, func() float64 { return float64(st.Retries.Load()) })
		counter("outboxd_dead_lettered_records_total", "Records moved to the dead-letter queue.", l, func() float64 { return float64(st.Rejected.Load()) })
		gauge("outboxd_queue_records", "Records in the sink's outbox queue.", l, func() float64 {
			n, _ := q.Len(context.Background())
			return float64(n)
		})
		gauge("outboxd_queue_oldest_age_seconds", "Age of the oldest queued record.", l, func() float64 {
			at, ok, _ := q.Oldest(context.Background())
			if !ok {
				return 0
			}
			return time.Since(at).Seconds()
		})
		gauge("outboxd_sink_failing_seconds", "How long the sink has been failing; 0 when healthy.", l, func() float64 {
			snap, _ := wk.Snapshot(context.Background())
			if snap.FailingSince.IsZero() {
				return 0
			}
			return time.Since(snap.FailingSince).Seconds()
		})
		gauge("outboxd_sink_backoff_seconds", "The current wait before the next attempt.", l, func() float64 {
			snap, _ := wk.Snapshot(context.Background())
			return snap.Backoff.Seconds()
		})
	}
	if h := d.http; h != nil {
		l := prometheus.Labels{"endpoint": "http"}
		counter("outboxd_ingest_records_total", "Records accepted (committed).", l, func() float64 { return float64(h.Accepted.Load()) })
		counter("outboxd_ingest_refused_requests_total", "Requests refused, for any reason.", l, func() float64 { return float64(h.Refused.Load()) })
	}
	for i, s := range d.syslogs {
		l := prometheus.Labels{"endpoint": d.cfg.Ingest.Syslog[i].Listen}
		counter("outboxd_ingest_records_total", "Records accepted (committed).", l, func() float64 { return float64(s.Received.Load()) })
		counter("outboxd_ingest_dropped_records_total", "Datagrams that could not be stored (UDP cannot push back).", l, func() float64 { return float64(s.Dropped.Load()) })
	}
	return reg
}
