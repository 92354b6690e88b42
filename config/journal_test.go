package config

import (
	"slices"
	"strings"
	"testing"
)

func TestJournalInput(t *testing.T) {
	const sinks = "sinks:\n  c:\n    type: console\n"
	t.Run("the issue's block parses, and read_from defaults to end", func(t *testing.T) {
		c, err := Parse([]byte("ingest:\n  journal:\n    directory: /var/log/journal/remote\n    units: [nginx.service]\n" + sinks))
		if err != nil {
			t.Fatal(err)
		}
		j := c.Ingest.Journal
		if j == nil || j.Directory != "/var/log/journal/remote" || !slices.Equal(j.Units, []string{"nginx.service"}) || j.ReadFrom != "end" {
			t.Fatalf("journal = %+v", j)
		}
	})
	t.Run("an empty block turns the system journal on", func(t *testing.T) {
		c, err := Parse([]byte("ingest:\n  journal: {}\n" + sinks))
		if err != nil {
			t.Fatal(err)
		}
		if c.Ingest.Journal == nil || c.Ingest.Journal.ReadFrom != "end" {
			t.Fatalf("journal = %+v", c.Ingest.Journal)
		}
	})
	t.Run("bad values are refused by key", func(t *testing.T) {
		_, err := Parse([]byte("ingest:\n  journal:\n    directory: rel/dir\n    units: [\"a b\"]\n    read_from: middle\n" + sinks))
		for _, want := range []string{"ingest.journal.directory", "ingest.journal.units[0]", "ingest.journal.read_from"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to name %s", err, want)
			}
		}
	})
	t.Run("routes name journal; unrouted it is a warning", func(t *testing.T) {
		if _, err := Parse([]byte("ingest:\n  journal: {}\n" + sinks + "routes:\n  - sources: [journal]\n    sinks: [c]\n")); err != nil {
			t.Fatal(err)
		}
		w := warnings(t, "ingest:\n  journal: {}\n"+sinks+"routes:\n  - sources: [http]\n    sinks: [c]\n")
		if !strings.Contains(w, "ingest.journal: no route takes records from journal") {
			t.Fatalf("warnings: %s", w)
		}
	})
}
