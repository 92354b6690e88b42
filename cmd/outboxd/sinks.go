package main

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/forwarders"
	"github.com/outboxd/outboxd/ingest/route"
	"github.com/outboxd/outboxd/outbox"
)

// sinkRun is one running sink: its queue, the worker that drains it, and
// what stops that worker.
type sinkRun struct {
	name   string
	conf   config.Sink
	queue  *outbox.Queue[[]byte]
	worker *forwarders.Worker
	sink   forwarders.Sink
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the worker: a batch in flight gets the grace period to be
// delivered, else it stays in the queue. The queue stays open.
func (s *sinkRun) stop() {
	s.cancel()
	<-s.done
}

// sinkSet owns the running sinks. The daemon's goroutine changes it (start,
// reload, stop); admin handlers read it.
type sinkSet struct {
	mu    sync.RWMutex
	sinks map[string]*sinkRun
}

// each calls f for every sink, in name order, under the read lock.
func (ss *sinkSet) each(f func(*sinkRun)) {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	for _, name := range slices.Sorted(maps.Keys(ss.sinks)) {
		f(ss.sinks[name])
	}
}

// routed lists the running sinks as the router needs them.
func (ss *sinkSet) routed() []route.Sink {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	out := make([]route.Sink, 0, len(ss.sinks))
	for _, name := range slices.Sorted(maps.Keys(ss.sinks)) {
		s := ss.sinks[name]
		out = append(out, route.Sink{Name: name, Queue: s.queue, WhenFull: whenFull(s.conf)})
	}
	return out
}

// whenFull is the sink's when_full policy; validation refused any other
// value than the three, and the empty one means block.
func whenFull(sc config.Sink) outbox.WhenFull {
	w, _ := outbox.ParseWhenFull(sc.WhenFull)
	return w
}

// openQueue opens the queue of sink name (see sinkTable).
func (d *daemon) openQueue(ctx context.Context, name string) (*outbox.Queue[[]byte], error) {
	dur, err := outbox.ParseDurability(d.cfg.Durability)
	if err != nil {
		return nil, err
	}
	q, err := outbox.Open(ctx, outboxPath(d.cfg.DataDir), sinkTable(name), outbox.Options[[]byte]{
		MaxSize: d.cfg.MaxRecords, MaxBytes: int64(d.cfg.MaxDiskBytes), Durability: dur,
	})
	if err != nil {
		return nil, fmt.Errorf("sinks.%s: open its queue: %w", name, err)
	}
	if n, _ := q.Len(ctx); n > 0 {
		d.log.Info("queued records found", "sink", name, "records", n)
	}
	return q, nil
}

// startSink starts a worker that forwards q to sink.
func (d *daemon) startSink(name string, sc config.Sink, q *outbox.Queue[[]byte], sink forwarders.Sink) *sinkRun {
	w := forwarders.NewWorker(forwarders.Config{
		Name:         name,
		Batching:     forwarders.Batching{MaxRecords: sc.BatchRecords, MaxBytes: int(sc.BatchBytes), Linger: sc.Linger},
		Retry:        forwarders.Retry{Initial: sc.Retry.Initial, Max: sc.Retry.Max, Multiplier: sc.Retry.Multiplier},
		DrainTimeout: d.cfg.GracePeriod,
		// The limit is the whole dead-letter file's, which every sink's
		// worker checks before it adds to it.
		MaxDeadLetterBytes: int64(d.cfg.MaxDLQBytes),
		Logger:             d.log,
	}, q, sink)
	ctx, cancel := context.WithCancel(context.Background())
	s := &sinkRun{name: name, conf: sc, queue: q, worker: w, sink: sink, cancel: cancel, done: make(chan struct{})}
	go func() { // owned by s: stop cancels it and waits for done
		defer close(s.done)
		defer sink.Close()
		w.Run(ctx)
	}()
	return s
}

// startSinks opens every configured sink's queue and starts its worker.
func (d *daemon) startSinks(ctx context.Context) error {
	d.sinks.sinks = map[string]*sinkRun{}
	for _, name := range slices.Sorted(maps.Keys(d.cfg.Sinks)) {
		q, err := d.openQueue(ctx, name)
		if err != nil {
			return err
		}
		sink, err := buildSink(name, d.cfg.Sinks[name], d.log)
		if err != nil {
			q.Close()
			return err
		}
		d.sinks.sinks[name] = d.startSink(name, d.cfg.Sinks[name], q, sink)
	}
	return nil
}

// stopSinks stops every worker, then closes the queues.
func (d *daemon) stopSinks() {
	var wg sync.WaitGroup
	for _, s := range d.sinks.sinks {
		wg.Go(s.stop)
	}
	wg.Wait()
	for name, s := range d.sinks.sinks {
		if err := s.queue.Close(); err != nil {
			d.log.Error("close queue", "sink", name, "err", err)
		}
	}
}

// reload applies a new configuration's sinks and routes. Everything that
// can fail (reading, validating, building the new sink clients, opening new
// queues) happens before anything changes, so a bad config leaves the old
// one running. Queued records stay in their sink's table throughout: a
// changed sink's new worker starts after the old one stopped (its in-flight
// batch finishes first, so nothing is sent twice), and a removed sink's
// records wait on disk until a sink of that name comes back.
func (d *daemon) reload(ctx context.Context, next *config.Config) error {
	if fields := restartOnly(d.cfg, next); len(fields) > 0 {
		d.log.Warn("reload: these settings need a restart and keep their old values", "keys", fields)
	}
	type change struct {
		conf   config.Sink
		queue  *outbox.Queue[[]byte]
		client forwarders.Sink
		opened bool // the queue was opened for this reload
	}
	changes := map[string]*change{}
	abandon := func() {
		for _, c := range changes {
			c.client.Close()
			if c.opened {
				c.queue.Close()
			}
		}
	}
	for name, sc := range next.Sinks {
		cur := d.sinks.sinks[name]
		if cur != nil && reflect.DeepEqual(cur.conf, sc) {
			continue
		}
		client, err := buildSink(name, sc, d.log)
		if err != nil {
			abandon()
			return err
		}
		c := &change{conf: sc, client: client}
		changes[name] = c
		if cur != nil {
			c.queue = cur.queue
		} else if c.queue, err = d.openQueue(ctx, name); err != nil {
			client.Close()
			delete(changes, name)
			abandon()
			return err
		} else {
			c.opened = true
		}
	}
	started := map[string]*sinkRun{}
	for name, c := range changes {
		if cur := d.sinks.sinks[name]; cur != nil {
			cur.stop()
		}
		started[name] = d.startSink(name, c.conf, c.queue, c.client)
	}
	d.swap(next, started)
	return nil
}

// swap installs the new routes and sinks, then retires the sinks that are
// gone: their workers stop and their queues close. A request that routed by
// the old table and still waits for room in a closed queue is routed again
// by the new one (route.Router.Append); one that got its records committed
// before the close left them on disk in the removed sink's table, as any
// queued record of a removed sink is. Nothing here waits for a request:
// a reload must not wait on requests that wait on the reload.
func (d *daemon) swap(next *config.Config, started map[string]*sinkRun) {
	d.sinks.mu.Lock()
	var gone []*sinkRun
	for name, s := range d.sinks.sinks {
		if _, ok := next.Sinks[name]; !ok {
			gone = append(gone, s)
			delete(d.sinks.sinks, name)
		}
	}
	maps.Copy(d.sinks.sinks, started)
	d.sinks.mu.Unlock()

	routed := d.sinks.routed()
	d.router.Install(next.Routes, routed)
	for _, s := range gone {
		s.stop()
		n, _ := s.queue.Len(context.Background())
		s.queue.Close()
		d.log.Warn("reload: sink removed; its queued records stay on disk until a sink of that name is configured again",
			"sink", s.name, "records", n)
	}
	d.cfg.Sinks, d.cfg.Routes = next.Sinks, next.Routes
	d.log.Info("reload: applied", "sinks", slices.Sorted(maps.Keys(next.Sinks)), "changed", slices.Sorted(maps.Keys(started)))
}

// restartOnly names the settings that differ between a and b but only take
// effect at start: the outbox file and its limits, the listeners, logging.
func restartOnly(a, b *config.Config) []string {
	var keys []string
	for key, same := range map[string]bool{
		"data_dir":       a.DataDir == b.DataDir,
		"durability":     a.Durability == b.Durability,
		"max_records":    a.MaxRecords == b.MaxRecords,
		"max_disk_bytes": a.MaxDiskBytes == b.MaxDiskBytes,
		"max_dlq_bytes":  a.MaxDLQBytes == b.MaxDLQBytes,
		"ingest":         reflect.DeepEqual(a.Ingest, b.Ingest),
		"admin":          reflect.DeepEqual(a.Admin, b.Admin),
		"log":            reflect.DeepEqual(a.Log, b.Log),
		"grace_period":   a.GracePeriod == b.GracePeriod,
	} {
		if !same {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}
