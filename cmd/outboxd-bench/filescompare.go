package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// filesCompare runs log-file tailers side by side: outboxd's files input
// and rsyslog's imfile. Each shipper tails logDir/*.log (or *.log*, the
// rotated files too, with -rotated-in-glob) and forwards every
// line to a Kafka topic on a kfake broker in this process.
//
// Per shipper it measures throughput (one file, then many, written flat out)
// and crash correctness: numbered lines appended to a few files at a steady
// rate, the files rotated by rename+create and by copytruncate, the shipper
// killed with SIGKILL and restarted, then drained; every line is counted at
// Kafka as lost or duplicated.

// fileShipper is one tailer under comparison. command writes its
// configuration into dir (its state lives there too, so a restart on the
// same dir resumes) and returns the command that runs it, not started.
type fileShipper struct {
	name    string
	note    string
	command func(dir, glob, broker, topic string) (*exec.Cmd, error)
}

type filesFlags struct {
	lines       int
	manyFiles   int
	kills       int
	crashFor    time.Duration
	crashRate   float64
	crashFiles  int
	rotateEvery time.Duration
	drainQuiet  time.Duration
	only        string
	keep        bool
	rotatedIn   bool
}

// pattern is the glob the crash run tails.
func (f filesFlags) pattern() string {
	if f.rotatedIn {
		return "*.log*"
	}
	return "*.log"
}

func filesCompareCommand(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("files-compare", flag.ContinueOnError)
	var f filesFlags
	fs.IntVar(&f.lines, "lines", 1_000_000, "256-byte lines written flat out for the throughput runs")
	fs.IntVar(&f.manyFiles, "many-files", 100, "files the second throughput run spreads -lines over (0: skip it)")
	fs.IntVar(&f.kills, "kills", 10, "SIGKILLs of the shipper during the crash run")
	fs.DurationVar(&f.crashFor, "crash-for", 40*time.Second, "length of the crash run's writing")
	fs.Float64Var(&f.crashRate, "crash-rate", 4_000, "lines a second, over all files, in the crash run")
	fs.IntVar(&f.crashFiles, "crash-files", 4, "files written in the crash run")
	fs.DurationVar(&f.rotateEvery, "rotate-every", 2*time.Second, "one file is rotated this often in the crash run, by rename+create and copytruncate in turn")
	fs.DurationVar(&f.drainQuiet, "drain-quiet", 10*time.Second, "after the crash run, drained means nothing new arrived for this long")
	fs.StringVar(&f.only, "only", "outboxd-full,rsyslog-da,rsyslog-memory", "comma-separated shippers to run, of outboxd-full, rsyslog-disk-synced (slow: about 5,000 lines/s), rsyslog-da, rsyslog-memory")
	fs.BoolVar(&f.rotatedIn, "rotated-in-glob", false, "the crash run tails *.log* (rotated files app0.log.1... included) instead of *.log")
	fs.BoolVar(&f.keep, "keep", false, "keep the work directory (logs, state, configs) and print its path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.lines < 1 || f.crashFiles < 1 || f.crashRate <= 0 || f.kills < 0 || f.manyFiles < 0 {
		return errors.New("files-compare: -lines, -crash-files and -crash-rate must be positive; -kills and -many-files not negative")
	}
	dir, err := os.MkdirTemp("", "outboxd-files-compare-")
	if err != nil {
		return err
	}
	if f.keep {
		fmt.Fprintln(os.Stderr, "work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := ensureRsyslog(ctx, w); err != nil {
		return err
	}
	all := fileShippers("")
	var names []string
	for _, s := range all {
		names = append(names, s.name)
	}
	var run []fileShipper
	for _, name := range strings.Split(f.only, ",") {
		i := slices.IndexFunc(all, func(s fileShipper) bool { return s.name == name })
		if i < 0 {
			return fmt.Errorf("-only: no shipper %q (want %s)", name, strings.Join(names, ", "))
		}
		run = append(run, all[i])
	}
	if slices.ContainsFunc(run, func(s fileShipper) bool { return strings.HasPrefix(s.name, "outboxd") }) {
		bin, err := buildOutboxd(ctx, dir, hostArch())
		if err != nil {
			return err
		}
		byName := fileShippers(bin)
		for i := range run {
			run[i] = byName[slices.IndexFunc(byName, func(s fileShipper) bool { return s.name == run[i].name })]
		}
	}
	var results []filesResult
	loadBefore := loadAverage()
	for _, s := range run {
		res := filesResult{name: s.name, note: s.note}
		sdir := filepath.Join(dir, s.name)
		fmt.Fprintf(os.Stderr, "== %s: throughput, 1 file\n", s.name)
		res.one = filesThroughput(ctx, s, filepath.Join(sdir, "one"), f.lines, 1)
		if f.manyFiles > 0 && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "== %s: throughput, %d files\n", s.name, f.manyFiles)
			res.many = filesThroughput(ctx, s, filepath.Join(sdir, "many"), f.lines, f.manyFiles)
		}
		if ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "== %s: crash run, %d kills\n", s.name, f.kills)
			res.crash = filesCrash(ctx, s, filepath.Join(sdir, "crash"), f)
		}
		results = append(results, res)
	}
	fmt.Fprintf(w, "`go run ./cmd/outboxd-bench files-compare %s`\n\n", strings.Join(args, " "))
	// The shippers, the writer, the broker and the consumer share the
	// machine: anything else running skews the figures.
	fmt.Fprintf(w, "%d CPUs; load average (1, 5, 15 min) before: %s, after: %s\n\n", runtime.NumCPU(), loadBefore, loadAverage())
	printFilesComparison(w, results, f)
	return ctx.Err()
}

// secondsAfter lists times as seconds after begin.
func secondsAfter(begin time.Time, ts ...time.Time) string {
	var s []string
	for _, t := range ts {
		s = append(s, fmt.Sprintf("%.1f", t.Sub(begin).Seconds()))
	}
	return strings.Join(s, ", ")
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// fileShippers lists the tailers; outboxd is the binary to run (it is built
// only when an outboxd shipper is asked for).
func fileShippers(outboxd string) []fileShipper {
	return []fileShipper{
		{"outboxd-full", "files input, durability full", outboxdFiles(outboxd, "full")},
		{"rsyslog-disk-synced", "imfile -> omkafka, disk queue, fsynced", rsyslogFiles(`queue.type="Disk" queue.filename="fwdq" queue.syncqueuefiles="on" queue.maxdiskspace="4g" queue.saveonshutdown="on"`)},
		{"rsyslog-da", "imfile -> omkafka, disk-assisted queue", rsyslogFiles(`queue.type="LinkedList" queue.filename="fwdq" queue.maxdiskspace="4g" queue.saveonshutdown="on"`)},
		{"rsyslog-memory", "imfile -> omkafka, in-memory queue", rsyslogFiles(`queue.type="LinkedList"`)},
	}
}

// outboxdFiles runs outboxd with one files input on logDir.
func outboxdFiles(bin, durability string) func(dir, glob, broker, topic string) (*exec.Cmd, error) {
	return func(dir, glob, broker, topic string) (*exec.Cmd, error) {
		cfg := fmt.Sprintf(`data_dir: %s/data
durability: %s
ingest:
  files:
    - paths: [%s, %s]
      exclude: ["*.gz"]
      read_from: beginning
      max_line_bytes: 1MiB
      format: text
sinks:
  kafka:
    type: kafka
    brokers: [%s]
    topic: %s
    linger: 5ms
routes:
  - sinks: [kafka]
log:
  level: warn
`, dir, durability, glob, filepath.Join(filepath.Dir(glob), "**", filepath.Base(glob)), broker, topic)
		path := filepath.Join(dir, "outboxd.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		return exec.Command(bin, "run", "-config", path), nil
	}
}

// rsyslogFiles runs rsyslogd in the foreground: imfile on glob,
// with state files in a private work directory written after every batch
// it submits, and truncation noticed, into a ruleset whose omkafka action
// has the given queue and retries for ever, as a durable rsyslog setup for
// files to Kafka is written. The ruleset has no queue of its own: lines
// imfile has submitted wait in the in-memory main queue.
func rsyslogFiles(queue string) func(dir, glob, broker, topic string) (*exec.Cmd, error) {
	return func(dir, glob, broker, topic string) (*exec.Cmd, error) {
		work := filepath.Join(dir, "work")
		if err := os.MkdirAll(work, 0o755); err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf(`global(workDirectory="%s" maxMessageSize="64k")
module(load="imfile" mode="inotify")
module(load="omkafka")
template(name="msgonly" type="string" string="%%msg%%")
input(type="imfile" file="%s" tag="files" ruleset="fwd"
      freshStartTail="off" reopenOnTruncate="on" persistStateAfterSubmission="on")
ruleset(name="fwd") {
  action(type="omkafka" broker=["%s"] topic="%s" template="msgonly"
         confParam=["queue.buffering.max.ms=5"]
         %s
         action.resumeRetryCount="-1")
}
`, work, glob, broker, topic, queue)
		path := filepath.Join(dir, "rsyslog.conf")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		// A pid file left by a SIGKILL names a process that is gone, or
		// another one: rsyslogd would refuse to start.
		pid := filepath.Join(dir, "rsyslog.pid")
		os.Remove(pid)
		return exec.Command("rsyslogd", "-n", "-f", path, "-i", pid), nil
	}
}

// runningShipper is a started shipper process. Its output goes to a log
// file in its directory, kept across restarts.
type runningShipper struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited and been reaped
}

func startFileShipper(s fileShipper, dir, glob, broker, topic string) (*runningShipper, error) {
	cmd, err := s.command(dir, glob, broker, topic)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "shipper.log")
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	p := &runningShipper{cmd: cmd, log: logPath, done: make(chan struct{})}
	// Owned by p: kill and stop wait for it.
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *runningShipper) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *runningShipper) pid() int { return p.cmd.Process.Pid }

// kill sends SIGKILL and waits for the exit.
func (p *runningShipper) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and waits up to 30 s before SIGKILL.
func (p *runningShipper) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

// tail is the end of the shipper's output, for an error message.
func (p *runningShipper) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if t := strings.TrimSpace(string(b)); t != "" {
		return t
	}
	return "(it wrote nothing)"
}

// waitShipper is waitFor that gives up early, with the shipper's last
// words, when the shipper has exited.
func waitShipper(ctx context.Context, p *runningShipper, what string, limit time.Duration, cond func() bool) error {
	var gone bool
	err := waitFor(ctx, what, limit, func() bool {
		gone = p.exited()
		return gone || cond()
	})
	switch {
	case err == nil && gone && !cond():
		return fmt.Errorf("the shipper exited (%v) before %s:\n%s", p.cmd.ProcessState, what, p.tail())
	case err != nil:
		return fmt.Errorf("%w; the shipper's last words:\n%s", err, p.tail())
	}
	return nil
}

type throughput struct {
	files     int
	lines     int
	writeRate float64 // lines/s appended by the writer
	rate      float64 // lines/s delivered, first line written to last consumed
	cpuPerM   float64 // shipper CPU seconds per million lines
	peakRSS   int64   // kB
	dupExtra  int
	err       error
}

type filesResult struct {
	name, note string
	one, many  throughput
	crash      crashResult
}

// newBroker starts a one-broker kfake cluster with topic.
func newBroker(topic string) (*kfake.Cluster, error) {
	return kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic),
		// See runShipper: a smaller segment keeps kfake's CPU down.
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.Itoa(8 << 20)}))
}

// fileRun is one shipper tailing a fresh log directory into a fresh
// broker, read by a line counter.
type fileRun struct {
	s           fileShipper
	dir, logDir string
	pattern     string // the glob tailed, in logDir
	broker      *kfake.Cluster
	lc          *lineCounter
	p           *runningShipper // the latest process: restart replaces it
}

// newFileRun starts the shipper on an empty dir/logs, tailing pattern
// there, writes one probe line and waits until it is at Kafka: the shipper
// is tailing.
func newFileRun(ctx context.Context, s fileShipper, dir, pattern string) (*fileRun, error) {
	r := &fileRun{s: s, dir: dir, logDir: filepath.Join(dir, "logs"), pattern: pattern}
	for _, d := range []string{dir, r.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var err error
	if r.broker, err = newBroker("bench"); err != nil {
		return nil, err
	}
	if r.lc, err = newLineCounter(r.broker, "bench"); err != nil {
		r.broker.Close()
		return nil, err
	}
	if err = r.restart(); err == nil {
		err = os.WriteFile(filepath.Join(r.logDir, "probe.log"), []byte("probe-ready\n"), 0o644)
	}
	if err == nil {
		err = waitShipper(ctx, r.p, "the probe line at Kafka", 60*time.Second, r.lc.sawProbe)
	}
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// restart starts the shipper (again) on its directory.
func (r *fileRun) restart() error {
	p, err := startFileShipper(r.s, r.dir, filepath.Join(r.logDir, r.pattern), r.broker.ListenAddrs()[0], "bench")
	if err != nil {
		return err
	}
	r.p = p
	return nil
}

// close stops the shipper, then the counter, then the broker.
func (r *fileRun) close() {
	if r.p != nil {
		r.p.stop()
	}
	r.lc.close()
	r.broker.Close()
}

// filesThroughput writes lines numbered lines, spread over files files,
// flat out, and measures how fast they reach Kafka.
func filesThroughput(ctx context.Context, s fileShipper, dir string, lines, files int) throughput {
	res := throughput{files: files, lines: lines}
	r, err := newFileRun(ctx, s, dir, "*.log")
	if err != nil {
		res.err = err
		return res
	}
	defer r.close()
	p, lc := r.p, r.lc

	ticks0, _ := cpuTicks(p.pid())
	start := time.Now()
	err = writeFlatOut(r.logDir, lines, files)
	res.writeRate = float64(lines) / time.Since(start).Seconds()
	if err == nil {
		// Every line, or nothing new for a minute: a shipper that
		// dropped lines is not waited for any longer.
		lastChange, last := time.Now(), -1
		err = waitShipper(ctx, p, "every line at Kafka", 10*time.Minute, func() bool {
			d, _ := lc.arrived()
			if d != last {
				last, lastChange = d, time.Now()
			}
			return d >= lines || time.Since(lastChange) > time.Minute
		})
		if d, _ := lc.arrived(); err == nil && d < lines {
			err = fmt.Errorf("stalled: %d of %d lines at Kafka, none new for a minute; the shipper's last words:\n%s", d, lines, p.tail())
		}
	}
	res.err = err
	ticks1, _ := cpuTicks(p.pid())
	res.peakRSS, _ = procStatus(p.pid(), "VmHWM")
	distinct, all := lc.arrived()
	res.dupExtra = all - distinct
	if distinct > 0 {
		res.rate = float64(distinct) / lc.lastAt().Sub(start).Seconds()
	}
	res.cpuPerM = float64(ticks1-ticks0) / 100 / float64(lines) * 1e6
	return res
}

// writeFlatOut appends lines numbered lines to logDir/f<i>.log, i < files,
// every file by its own writer at once, as fast as they can.
func writeFlatOut(logDir string, lines, files int) error {
	var wg sync.WaitGroup
	errs := make([]error, files)
	for i := range files {
		n := lines / files
		if i < lines%files {
			n++
		}
		wg.Go(func() {
			f, err := os.OpenFile(filepath.Join(logDir, fmt.Sprintf("f%d.log", i)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				errs[i] = err
				return
			}
			w := bufio.NewWriterSize(f, 64<<10)
			var line []byte
			for seq := range n {
				line = appendLine(line[:0], i, seq)
				w.Write(line)
			}
			errs[i] = errors.Join(w.Flush(), f.Close())
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func printFilesComparison(w io.Writer, rs []filesResult, f filesFlags) {
	fmt.Fprintf(w, "log files -> Kafka (kfake), one machine. Throughput: %d lines of %d bytes appended flat out to 1 file", f.lines, lineSize)
	if f.manyFiles > 0 {
		fmt.Fprintf(w, ", then spread over %d files written at once", f.manyFiles)
	}
	fmt.Fprintf(w, "; lines/s from the first line written to the last consumed. Crash: %d files at %.0f lines/s for %s, "+
		"one rotated every %s (rename+create and copytruncate in turn) to <name>.<k>, tailed as %s, the shipper SIGKILLed %d times and restarted, then drained.\n\n",
		f.crashFiles, f.crashRate, f.crashFor, f.rotateEvery, f.pattern(), f.kills)
	fmt.Fprintln(w, "| shipper | lines/s, 1 file | lines/s, many files | CPU s per 1M lines | peak RSS | crash: written | lost outside copytruncate window (in files rotated while down) | lost in window (of lines in windows) | duplicated lines (extra copies) | kills | setup |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		c := r.crash.counts
		many, cpu, rss := "-", fmt.Sprintf("%.1f", r.one.cpuPerM), mib(r.one.peakRSS)
		if r.many.files > 0 {
			many = fmt.Sprintf("%.0f", r.many.rate)
			cpu += fmt.Sprintf(" / %.1f", r.many.cpuPerM)
			rss += " / " + mib(r.many.peakRSS)
		}
		kills := strconv.Itoa(r.crash.kills)
		if r.crash.selfExits > 0 {
			kills += fmt.Sprintf(" + %d exits on its own", r.crash.selfExits)
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %d of %.0f | %d (%d) | %d (of %d) | %d (%d) | %s | %s |\n",
			r.name, r.one.rate, many, cpu, rss, c.written, f.crashRate*f.crashFor.Seconds(), c.lostOutside, c.lostRotatedDown, c.lostWindow, c.window, c.dupLines, c.dupExtra, kills, r.note)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU and RSS: 1 file / many files. Written: of the lines planned at the rate (fewer: the writer was starved of CPU; it catches up in larger writes). Lost: written and never at Kafka. Lines written between a copytruncate's copy and its truncate are in neither file; they are lost by design unless the shipper read them in time, and are counted apart. In brackets after lost outside the window: of those, the lines of a file rotated while the shipper was down (between a kill and its restart); tailing *.log, what the shipper had not read of it is then in a file the glob does not match. A shipper that exits on its own is restarted a second later, as systemd's Restart=always would. Duplicated: arrived more than once, from re-reading after a restart and from at-least-once forwarding to Kafka (a batch sent but not yet acknowledged when killed is sent again); the run does not tell the two apart.")
	for _, r := range rs {
		for _, e := range []struct {
			what string
			err  error
		}{{"1 file", r.one.err}, {"many files", r.many.err}, {"crash", r.crash.err}} {
			if e.err != nil {
				fmt.Fprintf(w, "\n%s, %s: error: %v\n", r.name, e.what, e.err)
			}
		}
		if r.crash.selfExits > 0 {
			fmt.Fprintf(w, "\n%s exited on its own %d times in the crash run; the first: %s\n", r.name, r.crash.selfExits, r.crash.firstExit)
		}
		if c := r.crash.counts; c.lostOutside+c.dupLines > 0 {
			fmt.Fprintf(w, "\n%s, crash: by the file a line was written to (%s):", r.name, strings.Join(kindNames[:], ", "))
			fmt.Fprintf(w, " lost outside the window %v, duplicated %v (%d in files rotated while down); %d rename+create and %d copytruncate rotations\n",
				c.lostIn, c.dupIn, c.dupRotatedDown, r.crash.rotations[0], r.crash.rotations[1])
		}
		if len(r.crash.issues) > 0 {
			fmt.Fprintf(w, "\n%s, crash: kills at %s s; rotated files with lines lost or duplicated:\n", r.name, secondsAfter(r.crash.begin, r.crash.killedAt...))
			for i, is := range r.crash.issues {
				if i == 20 {
					fmt.Fprintf(w, "- and %d more\n", len(r.crash.issues)-i)
					break
				}
				down := ""
				if is.down {
					down = ", while down"
				}
				fmt.Fprintf(w, "- %s (%s at %s s%s): lines %d-%d, %d lost, %d duplicated\n",
					is.name, kindNames[is.kind], secondsAfter(r.crash.begin, is.at), down, is.from, is.to-1, is.lost, is.dup)
			}
		}
		if r.one.dupExtra+r.many.dupExtra > 0 {
			fmt.Fprintf(w, "\n%s: %d duplicates in the throughput runs\n", r.name, r.one.dupExtra+r.many.dupExtra)
		}
		if c := r.crash.counts; c.unknown > 0 || c.other > 1 {
			fmt.Fprintf(w, "\n%s: %d lines at Kafka that were never written, %d messages without a line number (torn lines; the probe is one)\n", r.name, c.unknown, c.other)
		}
	}
}
