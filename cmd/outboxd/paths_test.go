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
