// Package route sends each ingest request's records to the outbox queues of
// the sinks that take them, in one commit. It is the daemon's
// ingest.Appender: inputs hand it records and a source name; it applies the
// routes, and each sink's when_full policy, and never holds up a reload.
package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/outbox"
)

// Sink is one sink as the router sees it: its queue and what a full queue
// does to ingest.
type Sink struct {
	Name     string
	Queue    *outbox.Queue[[]byte]
	WhenFull outbox.WhenFull
}

// Router is safe for concurrent use. Install swaps its table at once.
type Router struct {
	table atomic.Pointer[table]
	log   *slog.Logger

	mu    sync.Mutex
	drops map[string]*drops // by sink name; kept across reloads
}

type table struct {
	routes []config.Route
	sinks  map[string]Sink
	all    []string // every sink, for a configuration without routes
}

// drops counts the records a sink's when_full policy left out, and when the
// router last said so in the log.
type drops struct {
	n        atomic.Int64
	mu       sync.Mutex
	logged   time.Time
	unlogged int64
}

// New returns a router with no sinks; Install gives it some.
func New(log *slog.Logger) *Router {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Router{log: log, drops: map[string]*drops{}}
}

// Install makes routes and sinks the table for every request that starts
// from now on. It never waits: a request still routing by the old table
// finishes with it, and one that waits for room in a queue that the reload
// then closes is routed again by the new table (see Append).
func (r *Router) Install(routes []config.Route, sinks []Sink) {
	t := &table{routes: routes, sinks: map[string]Sink{}}
	for _, s := range sinks {
		t.sinks[s.Name] = s
		r.dropsOf(s.Name)
	}
	t.all = slices.Sorted(maps.Keys(t.sinks))
	r.table.Store(t)
}

// Append stores records from source for every sink its route names, in one
// transaction. A sink whose policy is block makes it wait while that sink's
// queue is full (until ctx ends); a drop_newest or drop_oldest sink never
// does. If a reload closes a queue it was waiting on, the records are routed
// again by the new table: the old write stored nothing.
func (r *Router) Append(ctx context.Context, source string, records [][]byte) error {
	return r.AppendMarked(ctx, source, records, nil)
}

// AppendMarked is Append that also stores marks (an input's read position)
// in the same transaction as the records: both are committed, or neither.
// The marks are stored even when a drop policy left every record out, and
// when records is empty.
func (r *Router) AppendMarked(ctx context.Context, source string, records [][]byte, marks []outbox.Mark) error {
	for {
		t := r.table.Load()
		err := r.appendBy(ctx, t, source, records, marks)
		if errors.Is(err, outbox.ErrClosed) && r.table.Load() != t {
			continue
		}
		return err
	}
}

func (r *Router) appendBy(ctx context.Context, t *table, source string, records [][]byte, marks []outbox.Mark) error {
	names := t.sinksFor(source)
	if len(names) == 0 {
		// Inputs refuse such records at once: retrying cannot help until
		// the configuration changes.
		return fmt.Errorf("%w from %s", ingest.ErrNoRoute, source)
	}
	targets := make([]outbox.Target[[]byte], len(names))
	for i, name := range names {
		s := t.sinks[name]
		targets[i] = outbox.Target[[]byte]{Queue: s.Queue, Items: records, WhenFull: s.WhenFull}
	}
	if err := outbox.SendMarked(ctx, targets, marks); err != nil {
		return err
	}
	for i, tg := range targets {
		if tg.Dropped > 0 {
			r.dropped(names[i], tg.WhenFull, int64(tg.Dropped))
		}
	}
	return nil
}

// sinksFor applies the routes in order: the first whose sources include
// source wins; a route without sources matches every record. With no routes
// at all, every sink gets every record.
func (t *table) sinksFor(source string) []string {
	if len(t.routes) == 0 {
		return t.all
	}
	for _, rt := range t.routes {
		if len(rt.Sources) == 0 || slices.Contains(rt.Sources, source) {
			return rt.Sinks
		}
	}
	return nil
}

// Marks reads the stored marks whose keys start with prefix. Every sink's
// queue is on the one outbox file, which holds them.
func (r *Router) Marks(ctx context.Context, prefix string) (map[string][]byte, error) {
	for {
		t := r.table.Load()
		if t == nil || len(t.all) == 0 {
			return nil, errors.New("route: no sink, so no outbox to read marks from")
		}
		marks, err := t.sinks[t.all[0]].Queue.Marks(ctx, prefix)
		if errors.Is(err, outbox.ErrClosed) && r.table.Load() != t {
			continue
		}
		return marks, err
	}
}

// Takes reports whether some route takes records from source.
func (r *Router) Takes(source string) bool {
	t := r.table.Load()
	return t != nil && len(t.sinksFor(source)) > 0
}

func (r *Router) dropsOf(sink string) *drops {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.drops[sink]
	if d == nil {
		d = &drops{}
		r.drops[sink] = d
	}
	return d
}

// dropLogEvery is how often a sink that keeps dropping says so again.
const dropLogEvery = time.Minute

// dropped counts n records that sink's policy left out, and logs it: the
// first time, then at most once a minute with the count since.
func (r *Router) dropped(sink string, policy outbox.WhenFull, n int64) {
	d := r.dropsOf(sink)
	d.n.Add(n)
	d.mu.Lock()
	d.unlogged += n
	if time.Since(d.logged) < dropLogEvery {
		d.mu.Unlock()
		return
	}
	count := d.unlogged
	d.unlogged, d.logged = 0, time.Now()
	d.mu.Unlock()
	r.log.Warn("sink full: new records left out for it (when_full), stored for the other sinks",
		"sink", sink, "when_full", policy.String(), "records", count)
}

// Dropped is how many new records sink's when_full policy left out since
// the start (records that drop_oldest deleted are counted by its queue's
// Evicted).
func (r *Router) Dropped(sink string) int64 { return r.dropsOf(sink).n.Load() }

// Blocking names the sinks whose queue is full and whose policy is block:
// while there is one, every request routed to it waits.
func (r *Router) Blocking() []string {
	var names []string
	t := r.table.Load()
	if t == nil {
		return nil
	}
	for _, name := range t.all {
		if s := t.sinks[name]; s.WhenFull == outbox.Block && s.Queue.Full() {
			names = append(names, name)
		}
	}
	return names
}
