package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// footprintConfig is the embedded default's shape (console sink, loopback,
// data in ./outboxd-data) on free ports, or, with a sink URL, an HTTP sink.
func footprintConfig(sinkURL string) (cfg string, httpPort int) {
	sink := "  console:\n    type: console\n"
	if sinkURL != "" {
		sink = fmt.Sprintf("  collector:\n    type: http\n    url: %s\n    retry: {initial: 100ms, max: 1s}\n", sinkURL)
	}
	name := "console"
	if sinkURL != "" {
		name = "collector"
	}
	port, httpPort := freePort(), freePort()
	return fmt.Sprintf(`data_dir: ./outboxd-data
durability: full
ingest:
  http:
    listen: 127.0.0.1:%d
  syslog:
    - listen: udp://127.0.0.1:%d
    - listen: tcp://127.0.0.1:%d
sinks:
%sroutes:
  - sinks: [%s]
admin:
  listen: 127.0.0.1:%d
`, httpPort, port, port, sink, name, freePort()), httpPort
}

type footprintFlags struct {
	idle, load time.Duration
	rate       float64
	backlog    int64
}

func footprintCommand(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("footprint", flag.ContinueOnError)
	var f footprintFlags
	fs.DurationVar(&f.idle, "idle", 60*time.Second, "how long the idle daemon is watched")
	fs.Float64Var(&f.rate, "rate", 150_000, "records a second for the load phase")
	fs.DurationVar(&f.load, "load", 20*time.Second, "length of the load phase")
	fs.Int64Var(&f.backlog, "backlog", 1_000_000, "records queued while the sink is down")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "outboxd-footprint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(w, "outboxd footprint: `go run ./cmd/outboxd-bench footprint -idle %s -rate %.0f -load %s -backlog %d`\n\n", f.idle, f.rate, f.load, f.backlog)
	fmt.Fprintln(w, "| what | measured | target | |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	bin, err := binarySizes(ctx, dir, w)
	if err != nil {
		return err
	}
	idleDB, err := idlePhase(ctx, bin, filepath.Join(dir, "idle"), f.idle, w)
	if err != nil {
		return err
	}
	if err := loadPhase(ctx, bin, filepath.Join(dir, "load"), f, w); err != nil {
		return err
	}
	return backlogPhase(ctx, bin, filepath.Join(dir, "backlog"), f.backlog, idleDB, w)
}

// binarySizes builds every release architecture and reports their sizes; it
// returns this machine's binary.
func binarySizes(ctx context.Context, dir string, w io.Writer) (string, error) {
	var host string
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		bin, err := buildOutboxd(ctx, dir, arch)
		if err != nil {
			return "", err
		}
		info, _ := os.Stat(bin)
		size := info.Size() >> 10
		report(w, "binary size, linux/"+arch+map[bool]string{true: "v7", false: ""}[arch == "arm"], mib(size), "<= 30 MiB", size <= 30<<10)
		if arch == hostArch() {
			host = bin
		}
	}
	return host, nil
}

// idlePhase runs the default configuration untouched for d and reports RSS,
// CPU and wakeups; it returns the outbox file's idle size.
func idlePhase(ctx context.Context, bin, dir string, d time.Duration, w io.Writer) (int64, error) {
	os.MkdirAll(dir, 0o755)
	cfg, _ := footprintConfig("")
	dmn, err := startDaemon(bin, dir, cfg)
	if err != nil {
		return 0, err
	}
	defer dmn.stop()
	time.Sleep(time.Second) // let start-up settle
	ticks0, _ := cpuTicks(dmn.pid())
	wake0, _ := wakeups(dmn.pid())
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	ticks1, _ := cpuTicks(dmn.pid())
	wake1, _ := wakeups(dmn.pid())
	rss, err := procStatus(dmn.pid(), "VmRSS")
	if err != nil {
		return 0, err
	}
	cpu := float64(ticks1-ticks0) / 100 / d.Seconds() * 100
	perSec := float64(wake1-wake0) / d.Seconds()
	report(w, fmt.Sprintf("idle RSS after %s, default config", d+time.Second), mib(rss), "<= 20 MiB", rss <= 20<<10)
	report(w, fmt.Sprintf("idle CPU over %s", d), fmt.Sprintf("%.3f %% (%d ticks of 10 ms)", cpu, ticks1-ticks0), "< 0.1 %", cpu < 0.1)
	report(w, fmt.Sprintf("idle wakeups over %s (context switches, all threads)", d), fmt.Sprintf("%.2f /s", perSec), "a few per second at most", perSec <= 5)
	return outboxBytes(dir), nil
}

// outboxBytes is the size of the outbox database and its WAL (not the
// fixed 8 MiB reserve file, nor the dead letters).
func outboxBytes(dir string) int64 {
	var n int64
	for _, f := range []string{"outbox.db", "outbox.db-wal"} {
		if info, err := os.Stat(filepath.Join(dir, "outboxd-data", f)); err == nil {
			n += info.Size()
		}
	}
	return n
}

// loadPhase drives HTTP ingest at the rate with a healthy sink and reports
// the accepted rate and the highest RSS seen.
func loadPhase(ctx context.Context, bin, dir string, f footprintFlags, w io.Writer) error {
	_, dmn, port, stop, err := startWithCollector(bin, dir, false)
	if err != nil {
		return err
	}
	defer stop()
	var peak, peakAnon, peakFile int64
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if rss, err := procStatus(dmn.pid(), "VmRSS"); err == nil && rss > peak {
				peak = rss
				peakAnon, _ = procStatus(dmn.pid(), "RssAnon")
				peakFile, _ = procStatus(dmn.pid(), "RssFile")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	res := postLoad(ctx, ingestURL(port), f.rate, f.load, 0, 1000, 16, sameBody(1000, 256))
	stopSampling()
	<-sampled
	report(w, fmt.Sprintf("HTTP ingest at a target of %.0f records/s of 256 bytes, 1,000 per request, durability full", f.rate),
		fmt.Sprintf("%.0f records/s accepted, %d refused", res.rate(), res.refused), fmt.Sprintf(">= %.0f /s", f.rate*0.95), res.rate() >= f.rate*0.95)
	report(w, "peak RSS while accepting that load (sampled every 100 ms)",
		fmt.Sprintf("%s (anonymous %s, file-backed %s: the binary and the outbox's memory map)", mib(peak), mib(peakAnon), mib(peakFile)),
		"<= 64 MiB", peak <= 64<<10)
	return nil
}

// backlogPhase queues records while the sink is down, reports RSS as the
// backlog grows and disk per record, then drains it and reports the drain
// rate and what the file gives back.
func backlogPhase(ctx context.Context, bin, dir string, backlog, idleDB int64, w io.Writer) error {
	coll, dmn, port, stop, err := startWithCollector(bin, dir, true)
	if err != nil {
		return err
	}
	defer stop()
	var queued int64
	var rss []string
	var lo, hi int64
	for _, step := range []int64{backlog / 10, backlog / 4, backlog / 2, backlog} {
		res := postLoad(ctx, ingestURL(port), 0, 0, step-queued, 1000, 8, sameBody(1000, 256))
		queued += res.sent
		if res.refused > 0 {
			return fmt.Errorf("%d records refused while queueing the backlog", res.refused)
		}
		r, _ := procStatus(dmn.pid(), "VmRSS")
		rss = append(rss, fmt.Sprintf("%s at %d", mib(r), queued))
		if lo == 0 || r < lo {
			lo = r
		}
		hi = max(hi, r)
	}
	report(w, "RSS while the backlog waits for a down sink", fmt.Sprint(rss), "flat, <= 64 MiB", hi <= 64<<10 && hi-lo <= 8<<10)
	disk := outboxBytes(dir)
	perRecord := float64(disk) / float64(queued)

	start := time.Now()
	coll.down.Store(false)
	if err := waitFor(ctx, "the backlog to drain", 10*time.Minute, func() bool { return coll.records.Load() >= queued }); err != nil {
		return err
	}
	took := time.Since(start)
	stored := float64(coll.bytes.Load()) / float64(coll.records.Load())
	report(w, fmt.Sprintf("outbox file per queued record (%d records, %s; a record as stored is %.0f bytes)", queued, mib(disk>>10), stored),
		fmt.Sprintf("%.0f bytes = %.2fx the stored record", perRecord, perRecord/stored), "<= 1.5x", perRecord <= 1.5*stored)
	report(w, "the same, per 256-byte record as sent over HTTP (ingest adds ts, received_at, host, source)",
		fmt.Sprintf("%.2fx", perRecord/256), "<= 1.5x", perRecord <= 1.5*256)
	report(w, fmt.Sprintf("drain of the %d-record backlog once the sink is back", queued),
		fmt.Sprintf("%.0f records/s (%.1f s)", float64(queued)/took.Seconds(), took.Seconds()), "", true)
	waitFor(ctx, "the file to shrink", 30*time.Second, func() bool { return outboxBytes(dir) < 2*idleDB })
	after := outboxBytes(dir)
	report(w, "outbox file after the drain (vacuum once 80% free for 5 s)", fmt.Sprintf("%d bytes (idle: %d)", after, idleDB),
		"< 2x idle", after < 2*idleDB)
	return nil
}

// startWithCollector runs outboxd in dir forwarding to a collector in this
// process, which starts down or up. stop ends both.
func startWithCollector(bin, dir string, down bool) (coll *collector, dmn *daemon, httpPort int, stop func(), err error) {
	os.MkdirAll(dir, 0o755)
	coll = &collector{}
	coll.down.Store(down)
	srv := httptest.NewServer(coll)
	cfg, httpPort := footprintConfig(srv.URL)
	if dmn, err = startDaemon(bin, dir, cfg); err != nil {
		srv.Close()
		return nil, nil, 0, nil, err
	}
	return coll, dmn, httpPort, func() { dmn.stop(); srv.Close() }, nil
}

func ingestURL(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/v1/logs", port) }

func hostArch() string { return runtime.GOARCH }
