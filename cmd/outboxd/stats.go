package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outboxd/outboxd/ingest/files"
	"github.com/outboxd/outboxd/ingest/journal"
	"github.com/outboxd/outboxd/outbox"
)

// statsCommand prints per sink the queued records, the oldest one's age and
// the dead letters, and the database files' sizes. It opens the files read
// only, so it is safe beside a running daemon.
func statsCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("stats", "stats [-config FILE]",
		"Prints, per sink, queued records, the oldest one's age and dead letters, then the file sizes.\nRead-only: safe beside a running daemon.", stderr)
	path := fs.String("config", "", configFlagHelp)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, "outboxd stats:", err)
		return 1
	}
	ctx := context.Background()
	in, err := outbox.Inspect(ctx, outboxPath(cfg.DataDir))
	if err != nil {
		fmt.Fprintln(stderr, "outboxd stats:", err)
		return 1
	}
	defer in.Close()
	names := make([]string, 0, len(cfg.Sinks))
	for n := range cfg.Sinks {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tQUEUED\tOLDEST\tDEAD-LETTERED")
	for _, name := range names {
		st, err := in.Stats(ctx, sinkTable(name))
		if err != nil {
			fmt.Fprintf(tw, "%s\t?\t?\t? (%v)\n", name, err)
			continue
		}
		age := "-"
		if !st.Oldest.IsZero() {
			age = time.Since(st.Oldest).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", name, st.Records, age, st.DeadLetters)
	}
	tw.Flush()
	if err := printFiles(ctx, in, stdout); err != nil {
		fmt.Fprintln(stderr, "outboxd stats:", err)
		return 1
	}
	if err := printJournal(ctx, in, stdout); err != nil {
		fmt.Fprintln(stderr, "outboxd stats:", err)
		return 1
	}
	for _, f := range in.Files() {
		fmt.Fprintf(stdout, "%s: %.1f MiB\n", f.Path, float64(f.Size)/(1<<20))
	}
	return 0
}

// printFiles lists the tailed files (ingest.files) with their committed
// offsets and sizes: the lag is what is not in the outbox yet.
func printFiles(ctx context.Context, in *outbox.Inspector, w io.Writer) error {
	marks, err := in.Marks(ctx, files.MarkPrefix)
	if err != nil || len(marks) == 0 {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tCOMMITTED\tSIZE\tLAG")
	for _, f := range files.Stored(marks) {
		if f.Size < 0 {
			fmt.Fprintf(tw, "%s\t%d\t-\t- (gone, or rotated away)\n", f.Path, f.Offset)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", f.Path, f.Offset, f.Size, max(f.Size-f.Offset, 0))
	}
	return tw.Flush()
}

// printJournal prints the journal cursor committed with the last entries
// stored (ingest.journal): the next start reads on from there.
func printJournal(ctx context.Context, in *outbox.Inspector, w io.Writer) error {
	marks, err := in.Marks(ctx, journal.MarkPrefix)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(marks))
	for k := range marks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		dir := strings.TrimPrefix(strings.TrimPrefix(k, journal.MarkPrefix), "/")
		if dir == "" {
			dir = "system journal"
		}
		fmt.Fprintf(w, "journal (%s): cursor %s\n", dir, marks[k])
	}
	return nil
}
