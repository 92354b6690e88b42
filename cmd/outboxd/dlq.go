package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/outbox"
)

// dlqCommand inspects, replays and purges a sink's dead letters:
//
//	outboxd dlq list   -sink NAME [-config FILE] [-limit N]
//	outboxd dlq replay -sink NAME [-config FILE] [-limit N]
//	outboxd dlq purge  -sink NAME [-config FILE] [-before DURATION]
//
// list and purge touch only the dead-letter file, so they are safe beside a
// running daemon (SQLite serialises the writes). replay writes to the sink's
// queue, whose counts the daemon keeps in memory, so it takes the data
// directory's lock and refuses while the daemon runs.
func dlqCommand(args []string, stdout, stderr io.Writer) int {
	const usage = "usage: outboxd dlq list|replay|purge -sink NAME [-config FILE] [-limit N] [-before DURATION]"
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, usage+"\n\n"+dlqAbout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if !slices.Contains([]string{"list", "replay", "purge"}, args[0]) {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	verb := args[0]
	fs := newFlags("dlq "+verb, "dlq "+verb+" -sink NAME [flags]", dlqAbout, stderr)
	path := fs.String("config", "", configFlagHelp)
	sink := fs.String("sink", "", "the sink whose dead letters to use (required)")
	limit := fs.Int("limit", 0, "list: most dead letters to print, oldest first (default 100); replay: most to move (default all)")
	before := fs.Duration("before", 0, "purge: only dead letters moved longer ago than this (0: all)")
	if code, done := parseFlags(fs, args[1:]); done {
		return code
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq:", err)
		return 1
	}
	if _, ok := cfg.Sinks[*sink]; !ok {
		fmt.Fprintf(stderr, "outboxd dlq: no sink named %q in the config\n", *sink)
		return 2
	}
	if *limit < 0 {
		fmt.Fprintf(stderr, "outboxd dlq %s: -limit %d is negative\n", verb, *limit)
		return 2
	}
	if verb == "replay" {
		return replayDeadLetters(cfg, *sink, *limit, stdout, stderr)
	}
	ctx := context.Background()
	dbPath, table := outboxPath(cfg.DataDir), sinkTable(*sink)
	if verb == "purge" {
		var movedBefore time.Time // zero: all
		if *before > 0 {
			movedBefore = time.Now().Add(-*before)
		}
		n, err := outbox.PurgeDeadLetters(ctx, dbPath, table, movedBefore, 0)
		if err != nil {
			fmt.Fprintln(stderr, "outboxd dlq purge:", err)
			return 1
		}
		fmt.Fprintf(stdout, "purged %d dead letters of sink %s\n", n, *sink)
		return 0
	}
	if *limit == 0 {
		*limit = 100
	}
	return listDeadLetters(ctx, dbPath, table, *limit, stdout, stderr)
}

// listDeadLetters prints up to limit of table's dead letters, oldest first.
func listDeadLetters(ctx context.Context, dbPath, table string, limit int, stdout, stderr io.Writer) int {
	if _, err := os.Stat(outbox.DLQPath(dbPath)); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stdout, "no dead letters (%s does not exist)\n", outbox.DLQPath(dbPath))
		return 0
	}
	in, err := outbox.Inspect(ctx, dbPath)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq list:", err)
		return 1
	}
	defer in.Close()
	dead, err := in.DeadLetters(ctx, table, limit)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq list:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECORD\tMOVED\tREASON\tDATA")
	for _, d := range dead {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", d.ID, d.OriginalID, d.Moved.UTC().Format(time.RFC3339), short(d.Reason, 80), short(string(d.Data), 120))
	}
	tw.Flush()
	return 0
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

const dlqAbout = `list    prints a sink's dead letters with the reason each was refused
replay  puts them back at the end of the sink's queue (stop the daemon first)
purge   deletes them, or only those older than -before`

// replayDeadLetters moves a sink's dead letters back to its queue, with the
// daemon stopped (the lock says so).
func replayDeadLetters(cfg *config.Config, sink string, limit int, stdout, stderr io.Writer) int {
	unlock, err := lockDataDir(cfg.DataDir)
	if errors.Is(err, errLocked) {
		fmt.Fprintf(stderr, "outboxd dlq replay: %v\nstop the daemon first (systemctl stop outboxd), replay, then start it again\n", err)
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq replay:", err)
		return 1
	}
	defer unlock()
	dur, err := outbox.ParseDurability(cfg.Durability)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq replay:", err)
		return 1
	}
	ctx := context.Background()
	// MaxSize as the daemon opens the queue: a replay must not fill it past
	// max_records, which the daemon would then refuse ingest for.
	q, err := outbox.Open(ctx, outboxPath(cfg.DataDir), sinkTable(sink), outbox.Options[[]byte]{
		MaxSize: cfg.MaxRecords, MaxBytes: int64(cfg.MaxDiskBytes), Durability: dur,
	})
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq replay:", err)
		return 1
	}
	limit, capped := replayRoom(ctx, q, cfg.MaxRecords, limit)
	if limit < 0 {
		q.Close()
		fmt.Fprintf(stderr, "outboxd dlq replay: the queue of sink %s holds max_records (%d) already: start the daemon to drain it, then replay\n", sink, cfg.MaxRecords)
		return 1
	}
	n, err := q.ReplayDeadLetters(ctx, limit)
	if cerr := q.Close(); err == nil {
		err = cerr
	}
	fmt.Fprintf(stdout, "replayed %d dead letters to the queue of sink %s\n", n, sink)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq replay:", err)
		return 1
	}
	if capped && n == limit {
		fmt.Fprintf(stdout, "the queue holds max_records (%d) now: start the daemon to drain it, then replay the rest\n", cfg.MaxRecords)
	}
	return 0
}

// replayRoom caps limit (0: all) at the room left under maxRecords (0: no
// limit). With the daemon stopped nothing drains the queue, so a replay that
// waited for room would wait for ever. It returns -1 when there is no room,
// and whether the room capped the limit.
func replayRoom(ctx context.Context, q *outbox.Queue[[]byte], maxRecords, limit int) (int, bool) {
	if maxRecords <= 0 {
		return limit, false
	}
	queued, err := q.Len(ctx)
	if err != nil {
		return limit, false
	}
	room := maxRecords - queued
	if room <= 0 {
		return -1, true
	}
	if limit == 0 || limit > room {
		return room, true
	}
	return limit, false
}
