package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
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
	if *limit == 0 {
		*limit = 100
	}
	dlqPath := outbox.DLQPath(filepath.Join(cfg.DataDir, "outbox.db"))
	table := outbox.DLQTable("sink_" + *sink)
	db := openIfExists(dlqPath)
	if db == nil {
		fmt.Fprintf(stdout, "no dead letters (%s does not exist)\n", dlqPath)
		return 0
	}
	db.Close()
	mode := "ro"
	if verb == "purge" {
		mode = "rw"
	}
	db, err = sql.Open("sqlite", sqliteURI(dlqPath, "mode="+mode+"&_pragma=busy_timeout(10000)"))
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq:", err)
		return 1
	}
	defer db.Close()
	if verb == "list" {
		return listDeadLetters(db, table, *limit, stdout, stderr)
	}
	cutoff := time.Now().Add(-*before).Unix()
	if *before == 0 {
		cutoff = time.Now().Add(time.Hour).Unix() // everything
	}
	res, err := db.Exec(`DELETE FROM "`+table+`" WHERE moved_at < ?`, cutoff)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq purge:", err)
		return 1
	}
	n, _ := res.RowsAffected()
	fmt.Fprintf(stdout, "purged %d dead letters of sink %s\n", n, *sink)
	return 0
}

func listDeadLetters(db *sql.DB, table string, limit int, stdout, stderr io.Writer) int {
	rows, err := db.Query(`SELECT id, original_id, moved_at, error_message, data FROM "`+table+`" ORDER BY id LIMIT ?`, limit)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd dlq list:", err)
		return 1
	}
	defer rows.Close()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECORD\tMOVED\tREASON\tDATA")
	for rows.Next() {
		var id, orig, moved int64
		var reason string
		var data []byte
		if err := rows.Scan(&id, &orig, &moved, &reason, &data); err != nil {
			fmt.Fprintln(stderr, "outboxd dlq list:", err)
			return 1
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", id, orig, time.Unix(moved, 0).UTC().Format(time.RFC3339), short(reason, 80), short(string(data), 120))
	}
	tw.Flush()
	if err := rows.Err(); err != nil {
		fmt.Fprintln(stderr, "outboxd dlq list:", err)
		return 1
	}
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
	q, err := outbox.Open(ctx, filepath.Join(cfg.DataDir, "outbox.db"), "sink_"+sink, outbox.Options[[]byte]{
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
