package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestFootprintCommand(t *testing.T) {
	if raceEnabled {
		t.Skip("builds and drives the real binary; runs in the plain pass")
	}
	t.Run("a short footprint run measures every row of the budget", func(t *testing.T) {
		os.Chdir("../..") // the bench builds ./cmd/outboxd from the repository root
		defer os.Chdir("cmd/outboxd-bench")
		var out bytes.Buffer
		err := footprintCommand(context.Background(), []string{"-idle", "1s", "-rate", "20000", "-load", "1s", "-backlog", "20000"}, &out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		for _, row := range []string{"binary size, linux/amd64", "binary size, linux/armv7", "idle RSS", "idle CPU", "idle wakeups",
			"HTTP ingest at a target of 20000", "peak RSS", "RSS while the backlog waits", "outbox file per queued record",
			"drain of the 20000-record backlog", "outbox file after the drain"} {
			if !strings.Contains(out.String(), "| "+row) {
				t.Errorf("no row %q in:\n%s", row, out.String())
			}
		}
		t.Log("\n" + out.String())
	})
}
