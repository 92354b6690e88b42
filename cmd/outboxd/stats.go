package main

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	_ "github.com/glebarez/go-sqlite" // the same driver the outbox uses
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
	dbPath := filepath.Join(cfg.DataDir, "outbox.db")
	if _, err := os.Stat(dbPath); err != nil {
		fmt.Fprintf(stderr, "outboxd stats: no outbox at %s: %v\n", dbPath, err)
		return 1
	}
	db, err := sql.Open("sqlite", sqliteURI(dbPath, "mode=ro"))
	if err != nil {
		fmt.Fprintln(stderr, "outboxd stats:", err)
		return 1
	}
	defer db.Close()
	dlq := openIfExists(outbox.DLQPath(dbPath))
	if dlq != nil {
		defer dlq.Close()
	}
	names := make([]string, 0, len(cfg.Sinks))
	for n := range cfg.Sinks {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tQUEUED\tOLDEST\tDEAD-LETTERED")
	for _, name := range names {
		table := "sink_" + name
		var n int64
		var oldest sql.NullInt64
		if err := db.QueryRow(`SELECT COUNT(*), MIN(created_at) FROM "`+table+`"`).Scan(&n, &oldest); err != nil {
			fmt.Fprintf(tw, "%s\t?\t?\t? (%v)\n", name, err)
			continue
		}
		age := "-"
		if oldest.Valid {
			age = time.Since(time.Unix(oldest.Int64, 0)).Round(time.Second).String()
		}
		dead := "0"
		if dlq != nil {
			var d int64
			if err := dlq.QueryRow(`SELECT COUNT(*) FROM "` + outbox.DLQTable(table) + `"`).Scan(&d); err == nil {
				dead = fmt.Sprint(d)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", name, n, age, dead)
	}
	tw.Flush()
	for _, f := range []string{dbPath, dbPath + "-wal", outbox.DLQPath(dbPath)} {
		if info, err := os.Stat(f); err == nil {
			fmt.Fprintf(stdout, "%s: %.1f MiB\n", f, float64(info.Size())/(1<<20))
		}
	}
	return 0
}

func openIfExists(path string) *sql.DB {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := sql.Open("sqlite", sqliteURI(path, "mode=ro"))
	if err != nil {
		return nil
	}
	return db
}

// sqliteURI is the driver's DSN for the file at path with query: a file:
// URI with every byte of the path that could mean something escaped. The
// driver cuts a DSN at its first '?', and in a URI '#' ends the path and
// '%' starts an escape: unescaped, a data_dir "a#b" opened (and with
// mode=ro cut off, created) the file "a".
func sqliteURI(path, query string) string {
	const hex = "0123456789ABCDEF"
	b := []byte("file:")
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("/-_.~", c) >= 0:
			b = append(b, c)
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b) + "?" + query
}
