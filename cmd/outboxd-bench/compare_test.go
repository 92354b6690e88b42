package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCompareCommand(t *testing.T) {
	if raceEnabled {
		t.Skip("drives real daemons; runs in the plain pass")
	}
	if _, err := os.Stat(rsyslogKafkaModule()); err != nil && os.Geteuid() != 0 {
		t.Skip("rsyslog-kafka is not installed and installing it needs root")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		if _, err := os.Stat(rsyslogKafkaModule()); err != nil {
			t.Skip("no rsyslog-kafka and no apt-get")
		}
	}
	t.Run("a short comparison runs every shipper to kfake and draws the plot", func(t *testing.T) {
		os.Chdir("../..") // the bench builds ./cmd/outboxd from the repository root
		defer os.Chdir("cmd/outboxd-bench")
		svg := filepath.Join(t.TempDir(), "compare.svg")
		var out bytes.Buffer
		err := compareCommand(context.Background(), []string{"-records", "3000", "-latency-rate", "500", "-latency-for", "1s", "-svg", svg}, &out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		for _, row := range []string{"| outboxd-full |", "| outboxd-full-http |", "| rsyslog-disk-synced |", "| rsyslog-disk |", "| rsyslog-memory |", "outboxd-full / rsyslog-disk-synced:"} {
			if !strings.Contains(out.String(), row) {
				t.Errorf("no %q in:\n%s", row, out.String())
			}
		}
		if strings.Contains(out.String(), "errors:") {
			t.Errorf("a shipper failed:\n%s", out.String())
		}
		drawn, err := os.ReadFile(svg)
		if err != nil || !strings.HasPrefix(string(drawn), "<svg") || strings.Count(string(drawn), "<rect") < 20 {
			t.Errorf("plot: %v\n%.300s", err, drawn)
		}
		t.Log("\n" + out.String())
	})
}

func TestConsumerAdd(t *testing.T) {
	t.Run("a numbered record counts once, with its latency; others are ignored", func(t *testing.T) {
		c := &consumer{}
		sent := time.Unix(0, 1_700_000_000_000_000_000)
		rec := func(num int) []byte {
			return []byte(`{"message":"bench-` + strconv.Itoa(num) + `-` + strconv.FormatInt(sent.UnixNano(), 10) + ` xxxx"}`)
		}
		now := sent.Add(7 * time.Millisecond)
		c.add(rec(5), now)
		c.add(rec(5), now.Add(time.Second)) // a duplicate
		c.add(rec(70_000), now)
		c.add([]byte(`{"message":"bench-x-1"}`), now)
		c.add([]byte(`{"message":"unrelated"}`), now)
		if c.count() != 2 {
			t.Fatalf("count = %d, want 2", c.count())
		}
		if p50, _, _ := c.percentiles(); p50 != 7*time.Millisecond {
			t.Fatalf("latency = %v, want 7ms", p50)
		}
		if !c.seen.has(70_000) || c.seen.has(6) {
			t.Fatal("seen set is wrong")
		}
	})
}
