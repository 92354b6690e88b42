package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outboxd/outboxd/outbox"
)

func TestOddDataDir(t *testing.T) {
	t.Run("stats and dlq read the files of a data_dir named with #, % and ?, and open no other file", func(t *testing.T) {
		ctx := context.Background()
		parent := t.TempDir()
		dataDir := filepath.Join(parent, "a#b%41c?mode=rwc")
		if err := os.Mkdir(dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		q, err := outbox.Open(ctx, filepath.Join(dataDir, "outbox.db"), "sink_c", outbox.Options[[]byte]{})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.SendBatch(ctx, [][]byte{[]byte("kept"), []byte("refused")}); err != nil {
			t.Fatal(err)
		}
		l, err := q.Claim(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.DeadLetter(ctx, map[int]string{1: "schema mismatch"}); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, fmt.Appendf(nil, "data_dir: %q\nsinks:\n  c:\n    type: console\n", dataDir), 0o600)
		bin := outboxdBinary(t)
		run := func(args ...string) string {
			t.Helper()
			out, err := exec.Command(bin, append(args, "-config", cfgPath)...).CombinedOutput()
			if err != nil {
				t.Fatalf("outboxd %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		if out := run("stats"); !regexp.MustCompile(`(?m)^c\s+1\s+\S+\s+1\s*$`).MatchString(out) {
			t.Errorf("stats: want 1 queued and 1 dead letter for sink c:\n%s", out)
		}
		if out := run("dlq", "list", "-sink", "c"); !strings.Contains(out, "schema mismatch") {
			t.Errorf("dlq list:\n%s", out)
		}
		if out := run("dlq", "purge", "-sink", "c"); !strings.Contains(out, "purged 1 dead letters") {
			t.Errorf("dlq purge:\n%s", out)
		}
		entries, _ := os.ReadDir(parent)
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("the data_dir's parent holds %q, want only the data_dir", names)
		}
	})
}

func TestDLQReplayMaxRecords(t *testing.T) {
	t.Run("replay fills the queue up to max_records, not past it, and says so", func(t *testing.T) {
		ctx := context.Background()
		dataDir := t.TempDir()
		dbPath := filepath.Join(dataDir, "outbox.db")
		q, err := outbox.Open(ctx, dbPath, "sink_c", outbox.Options[[]byte]{})
		if err != nil {
			t.Fatal(err)
		}
		var recs [][]byte
		for i := range 8 {
			recs = append(recs, fmt.Appendf(nil, "r%d", i))
		}
		if err := q.SendBatch(ctx, recs); err != nil {
			t.Fatal(err)
		}
		l, err := q.Claim(ctx, 8)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.DeadLetter(ctx, map[int]string{0: "x", 1: "x", 2: "x", 3: "x", 4: "x", 5: "x"}); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil { // 2 queued, 6 dead letters
			t.Fatal(err)
		}
		q.Close()
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, fmt.Appendf(nil, "data_dir: %q\nmax_records: 5\nsinks:\n  c:\n    type: console\n", dataDir), 0o600)
		replay := func() (string, error) {
			out, err := exec.Command(outboxdBinary(t), "dlq", "replay", "-sink", "c", "-config", cfgPath).CombinedOutput()
			return string(out), err
		}
		out, err := replay()
		if err != nil || !strings.Contains(out, "replayed 3 dead letters") || !strings.Contains(out, "max_records (5)") {
			t.Fatalf("replay into a queue of 2 with max_records 5: %v\n%s", err, out)
		}
		if out, err := replay(); err == nil || !strings.Contains(out, "holds max_records (5) already") {
			t.Fatalf("replay into a full queue: %v\n%s", err, out)
		}
		q, err = outbox.Open(ctx, dbPath, "sink_c", outbox.Options[[]byte]{})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		if n, _ := q.Len(ctx); n != 5 {
			t.Fatalf("the queue holds %d records after the replay, max_records is 5", n)
		}
	})
}
