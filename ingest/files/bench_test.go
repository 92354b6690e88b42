package files

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/ingest/route"
	"github.com/outboxd/outboxd/outbox"
)

// BenchmarkTail measures lines/s from files already written into the outbox
// at durability full, and the CPU each line costs (this process's user +
// system time over lines), 256-byte lines:
//
//	go test ./ingest/files -run '^$' -bench Tail -benchtime 3x
func BenchmarkTail(b *testing.B) {
	for _, c := range []struct{ files, lines int }{{1, 500_000}, {100, 5_000}} {
		b.Run(fmt.Sprintf("files=%d", c.files), func(b *testing.B) {
			dir := b.TempDir()
			line := strings.Repeat("x", 255) + "\n"
			for i := range c.files {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.log", i)), []byte(strings.Repeat(line, c.lines)), 0o644)
			}
			total := c.files * c.lines
			var elapsed time.Duration
			var cpu time.Duration
			for range b.N {
				took, used := tailOnce(b, dir, total)
				elapsed += took
				cpu += used
			}
			b.ReportMetric(float64(total*b.N)/elapsed.Seconds(), "lines/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(total*b.N), "cpu-ns/line")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// tailOnce reads dir's files into a new outbox until total records are
// committed, and returns how long it took and the CPU time used.
func tailOnce(b *testing.B, dir string, total int) (time.Duration, time.Duration) {
	db := filepath.Join(b.TempDir(), "outbox.db")
	q, err := outbox.Open(context.Background(), db, "sink_main", outbox.Options[[]byte]{Durability: outbox.DurabilityFull})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	r := route.New(nil)
	r.Install(nil, []route.Sink{{Name: "main", Queue: q}})
	e := config.FileInput{Paths: []string{dir + "/*.log"}, ReadFrom: "beginning", Format: "text",
		MaxLineBytes: config.DefaultMaxLineBytes, RotateWait: time.Second, Rescan: time.Second}
	tl, err := New(Config{Inputs: []config.FileInput{e}, Host: "bench"}, r)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cpu0 := cpuTime()
	start := time.Now()
	go func() { done <- tl.Run(ctx) }()
	for tl.Stats().Records.Load() < int64(total) {
		time.Sleep(time.Millisecond)
	}
	took, used := time.Since(start), cpuTime()-cpu0
	cancel()
	<-done
	return took, used
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
