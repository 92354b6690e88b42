package journal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/ingest/route"
	"github.com/outboxd/outboxd/outbox"
)

// The journal benchmark: a directory of 1,000,000 entries (generated once
// with systemd-journal-remote and kept in $TMPDIR/outboxd-journal-bench-N)
// read from its first entry into an outbox at durability full; beside it,
// journalctl's own rate on the same directory (-o export into /dev/null),
// the ceiling:
//
//	go test -run '^$' -bench Journal -benchtime 1x ./ingest/journal/
//
// OUTBOXD_JOURNAL_BENCH_ENTRIES sets another count. CPU is user+system of
// this process (outboxd's reader and outbox; the test harness is idle) and,
// apart, of journalctl; peak RSS is this process's and, apart, the largest
// journalctl's (its mapped journal files count).

func benchEntries(b *testing.B) int {
	n := 1_000_000
	if s := os.Getenv("OUTBOXD_JOURNAL_BENCH_ENTRIES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("OUTBOXD_JOURNAL_BENCH_ENTRIES: %v", err)
		}
	}
	return n
}

// benchDir returns a journal directory of n entries shaped like a
// service's journald entries (16 fields, a message of about 120 bytes),
// generating it the first time.
func benchDir(b *testing.B, n int) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("outboxd-journal-bench-%d", n))
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return dir
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command(remoteBin, "-o", filepath.Join(dir, "bench.journal"), "-")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	for i := range n {
		fmt.Fprintf(w, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_MACHINE_ID=0123456789abcdef0123456789abcdef\n"+
			"_HOSTNAME=web-1\n_TRANSPORT=stdout\n_UID=33\n_GID=33\n_PID=%d\n_COMM=nginx\n_EXE=/usr/sbin/nginx\n"+
			"_CMDLINE=nginx: worker process\n_SYSTEMD_UNIT=nginx.service\n_SYSTEMD_CGROUP=/system.slice/nginx.service\n"+
			"PRIORITY=6\nSYSLOG_FACILITY=3\nSYSLOG_IDENTIFIER=nginx\n"+
			"MESSAGE=10.0.%d.%d - - \"GET /api/v1/items/%d HTTP/1.1\" 200 %d \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" rt=0.%03d\n\n",
			1_700_000_000_000_000+int64(i)*10, 1_000_000+int64(i)*10, boot1, 1000+i%50, i%256, i/256%256, i, 100+i%9000, i%1000)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("systemd-journal-remote: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644)
	b.Logf("generated %d entries in %s in %v", n, dir, time.Since(start).Round(time.Millisecond))
	return dir
}

// cpuTime is the user+system time of this process, and of its children
// that ended (journalctl).
func cpuTime() (self, children time.Duration) {
	var s, c syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(s.Utime) + tv(s.Stime), tv(c.Utime) + tv(c.Stime)
}

// reportCPU reports the CPU seconds used since self0 and children0.
func reportCPU(b *testing.B, self0, children0 time.Duration) {
	self, children := cpuTime()
	b.ReportMetric((self - self0).Seconds(), "cpu-s-outboxd")
	b.ReportMetric((children - children0).Seconds(), "cpu-s-journalctl")
}

func BenchmarkJournal(b *testing.B) {
	if testing.Short() {
		b.Skip("the journal benchmark reads 1,000,000 entries; not in -short")
	}
	needJournal(b)
	n := benchEntries(b)
	dir := benchDir(b, n)

	b.Run("journalctl-export-to-devnull", func(b *testing.B) {
		for b.Loop() {
			self0, children0 := cpuTime()
			t0 := time.Now()
			cmd := exec.Command("journalctl", "--directory="+dir, "--merge", "--output=export", "--no-pager")
			null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			cmd.Stdout = null // the file itself: no copying in this process
			err = cmd.Run()
			null.Close()
			if err != nil {
				b.Fatal(err)
			}
			el := time.Since(t0)
			b.ReportMetric(float64(n)/el.Seconds(), "entries/s")
			reportCPU(b, self0, children0)
			b.ReportMetric(float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)/1024, "child-peak-RSS-MiB")
		}
	})

	b.Run("into-outbox-durability-full", func(b *testing.B) {
		for b.Loop() {
			q, err := outbox.Open(context.Background(), filepath.Join(b.TempDir(), "outbox.db"), "sink_main", outbox.Options[[]byte]{Durability: outbox.DurabilityFull})
			if err != nil {
				b.Fatal(err)
			}
			rt := route.New(nil)
			rt.Install(nil, []route.Sink{{Name: "main", Queue: q}})
			r := New(Config{Input: config.JournalInput{Directory: dir, ReadFrom: "beginning"}}, rt)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			self0, children0 := cpuTime()
			t0 := time.Now()
			go func() { done <- r.Run(ctx) }()
			for r.Stats().Records.Load() < int64(n) {
				time.Sleep(2 * time.Millisecond)
			}
			el := time.Since(t0)
			cancel()
			<-done // journalctl ended: its CPU is counted
			reportCPU(b, self0, children0)
			q.Close()
			var ru syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			b.ReportMetric(float64(n)/el.Seconds(), "entries/s")
			b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
			var ch syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ch)
			b.ReportMetric(float64(ch.Maxrss)/1024, "child-peak-RSS-MiB")
		}
	})
}

// BenchmarkParseEncode is the reader's own work per entry, without
// journalctl or the outbox: parse an export stream and build the records.
func BenchmarkParseEncode(b *testing.B) {
	var stream []byte
	const per = 1000
	for i := range per {
		e := entry(boot1, i, Field{"_TRANSPORT", []byte("stdout")}, Field{"_UID", []byte("33")}, Field{"_GID", []byte("33")},
			Field{"_PID", []byte("1042")}, Field{"_COMM", []byte("nginx")}, Field{"_EXE", []byte("/usr/sbin/nginx")},
			Field{"_CMDLINE", []byte("nginx: worker process")}, Field{"_SYSTEMD_UNIT", []byte("nginx.service")},
			Field{"_SYSTEMD_CGROUP", []byte("/system.slice/nginx.service")}, Field{"PRIORITY", []byte("6")},
			Field{"SYSLOG_FACILITY", []byte("3")}, Field{"SYSLOG_IDENTIFIER", []byte("nginx")},
			Field{"MESSAGE", fmt.Appendf(nil, `10.0.0.%d - - "GET /api/v1/items/%d HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=0.012`, i%256, i)})
		e.Fields = append([]Field{{"__CURSOR", fmt.Appendf(nil, "s=5d16ab40510b4072baeb46a09190f077;i=%x;b=%s;m=3e8;t=60a24181e4000;x=3af3f019475f70e3", i, boot1)}}, e.Fields...)
		stream = appendExport(stream, e)
	}
	b.SetBytes(int64(len(stream) / per))
	for b.Loop() {
		x := newExportReader(bytes.NewReader(stream), 1<<20)
		enc := newEncoder("h")
		enc.reset(time.Now())
		for {
			e, err := x.Next()
			if err != nil {
				break
			}
			_ = enc.encode(e)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "entries/s")
}
