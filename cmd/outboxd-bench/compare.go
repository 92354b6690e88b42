package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// shipper is one system under comparison: it takes syslog over TCP on a
// port and forwards every message to a Kafka topic.
type shipper struct {
	name  string
	start func(ctx context.Context, dir string, port int, broker, topic string) (*exec.Cmd, error)
	// send writes n numbered records to the shipper's port, at rate a second
	// for dur or flat out with rate 0; nil: syslog TCP (sendSyslog).
	send func(ctx context.Context, port int, rate float64, dur time.Duration, n, base int) (int, error)
}

// result is one shipper's run.
type result struct {
	name                      string
	records                   int
	sendRate, deliverRate     float64 // records/s: written to the socket; at Kafka
	p50, p99, p999            time.Duration
	cpuSeconds                float64
	peakRSS                   int64 // kB
	latencyRate               float64
	latencyErr, throughputErr error
}

type compareFlags struct {
	records     int
	latencyRate float64
	latencyFor  time.Duration
	only        string
	svg         string
	cpuprofile  string
}

func compareCommand(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	var f compareFlags
	fs.IntVar(&f.records, "records", 200_000, "records sent flat out to each shipper")
	fs.Float64Var(&f.latencyRate, "latency-rate", 2_000, "records a second for the latency run")
	fs.DurationVar(&f.latencyFor, "latency-for", 10*time.Second, "length of the latency run")
	fs.StringVar(&f.only, "only", "", "comma-separated shippers to run (default all)")
	fs.StringVar(&f.svg, "svg", "", "write the plot to this SVG file")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "outboxd writes a CPU profile here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "outboxd-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := ensureRsyslog(ctx, w); err != nil {
		return err
	}
	bin, err := buildOutboxd(ctx, dir, hostArch())
	if err != nil {
		return err
	}
	var results []result
	all := shippers(bin, f.cpuprofile)
	if f.only != "" {
		for _, name := range strings.Split(f.only, ",") {
			if !slices.ContainsFunc(all, func(s shipper) bool { return s.name == name }) {
				return fmt.Errorf("-only: no shipper %q (want outboxd-full, rsyslog-disk-synced, rsyslog-disk, rsyslog-memory)", name)
			}
		}
	}
	for _, s := range all {
		if f.only != "" && !slices.Contains(strings.Split(f.only, ","), s.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", s.name)
		results = append(results, runShipper(ctx, s, filepath.Join(dir, s.name), f))
	}
	command := "go run ./cmd/outboxd-bench compare " + strings.Join(args, " ")
	fmt.Fprintf(w, "`%s`\n\n", command)
	printComparison(w, results, f)
	if f.svg != "" {
		return os.WriteFile(f.svg, []byte(plot(results, command)), 0o644)
	}
	return nil
}

// ensureRsyslog installs rsyslog and its Kafka output with apt-get when
// they are missing.
func ensureRsyslog(ctx context.Context, w io.Writer) error {
	if _, err := os.Stat(rsyslogKafkaModule()); err == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "installing rsyslog and rsyslog-kafka with apt-get")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "rsyslog", "rsyslog-kafka"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %v: %w\n%s", args, err, out)
		}
	}
	return nil
}

func rsyslogKafkaModule() string {
	m, _ := filepath.Glob("/usr/lib/*/rsyslog/omkafka.so")
	if len(m) == 0 {
		return "/usr/lib/rsyslog/omkafka.so"
	}
	return m[0]
}

func shippers(outboxd, profile string) []shipper {
	return []shipper{
		{"outboxd-full", outboxdShipper(outboxd, "full", profile, "syslog"), nil},
		{"outboxd-full-http", outboxdShipper(outboxd, "full", "", "http"), sendHTTP},
		{"rsyslog-disk-synced", rsyslogShipper(`queue.type="Disk" queue.syncqueuefiles="on"`), nil},
		{"rsyslog-disk", rsyslogShipper(`queue.type="Disk" queue.syncqueuefiles="off"`), nil},
		{"rsyslog-memory", rsyslogShipper(`queue.type="LinkedList"`), nil},
	}
}

// outboxdShipper runs outboxd with one ingest endpoint on port: syslog TCP,
// or HTTP.
func outboxdShipper(bin, durability, profile, input string) func(context.Context, string, int, string, string) (*exec.Cmd, error) {
	return func(ctx context.Context, dir string, port int, broker, topic string) (*exec.Cmd, error) {
		ingest := fmt.Sprintf("  syslog:\n    - listen: tcp://127.0.0.1:%d", port)
		if input == "http" {
			ingest = fmt.Sprintf("  http:\n    listen: 127.0.0.1:%d", port)
		}
		cfg := fmt.Sprintf(`data_dir: %s/data
durability: %s
ingest:
%s
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
`, dir, durability, ingest, broker, topic)
		path := filepath.Join(dir, "outboxd.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		args := []string{"run", "-config", path}
		if profile != "" {
			args = append(args, "-cpuprofile", profile)
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stderr = os.Stderr
		return cmd, cmd.Start()
	}
}

// rsyslogShipper runs rsyslogd in the foreground: imtcp into a ruleset whose
// omkafka action has the given queue, retrying for ever, as a durable
// rsyslog setup for Kafka is written.
func rsyslogShipper(queue string) func(context.Context, string, int, string, string) (*exec.Cmd, error) {
	return func(ctx context.Context, dir string, port int, broker, topic string) (*exec.Cmd, error) {
		spool := filepath.Join(dir, "spool")
		os.MkdirAll(spool, 0o755)
		cfg := fmt.Sprintf(`global(workDirectory="%s" maxMessageSize="64k")
module(load="imtcp")
module(load="omkafka")
template(name="msgonly" type="string" string="%%msg%%")
input(type="imtcp" port="%d" address="127.0.0.1" ruleset="fwd")
ruleset(name="fwd") {
  action(type="omkafka" broker=["%s"] topic="%s" template="msgonly"
         confParam=["queue.buffering.max.ms=5"]
         %s queue.filename="fwdq" queue.maxdiskspace="4g" queue.saveonshutdown="on"
         action.resumeRetryCount="-1")
}
`, spool, port, broker, topic, queue)
		path := filepath.Join(dir, "rsyslog.conf")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, "rsyslogd", "-n", "-f", path, "-i", filepath.Join(dir, "rsyslog.pid"))
		cmd.Stderr = os.Stderr
		return cmd, cmd.Start()
	}
}

// runShipper measures one shipper on a fresh broker: throughput flat out,
// then latency at a fixed rate.
func runShipper(ctx context.Context, s shipper, dir string, f compareFlags) result {
	res := result{name: s.name, records: f.records, latencyRate: f.latencyRate}
	os.MkdirAll(dir, 0o755)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "bench"),
		// kfake keeps a segment in one growing slice; at its default of
		// 100 MiB the re-growing was a quarter of this process's CPU.
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.Itoa(8 << 20)}))
	if err != nil {
		res.throughputErr = err
		return res
	}
	defer broker.Close()
	port := freePort()
	cmd, err := s.start(ctx, dir, port, broker.ListenAddrs()[0], "bench")
	if err != nil {
		res.throughputErr = err
		return res
	}
	defer stopGently(cmd)
	if err := waitFor(ctx, s.name+" to listen", 30*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		res.throughputErr = err
		return res
	}
	cons, err := newConsumer(broker)
	if err != nil {
		res.throughputErr = err
		return res
	}
	defer cons.close()

	send := s.send
	if send == nil {
		send = sendSyslog
	}
	ticks0, _ := cpuTicks(cmd.Process.Pid)
	start := time.Now()
	sent, err := send(ctx, port, 0, 0, f.records, 0)
	res.sendRate = float64(sent) / time.Since(start).Seconds()
	if err == nil {
		err = waitFor(ctx, "every record at Kafka", 10*time.Minute, func() bool { return cons.count() >= sent })
	}
	res.deliverRate = float64(cons.count()) / cons.lastAt().Sub(start).Seconds()
	ticks1, _ := cpuTicks(cmd.Process.Pid)
	res.cpuSeconds = float64(ticks1-ticks0) / 100
	res.throughputErr = err

	cons.reset()
	n := int(f.latencyRate * f.latencyFor.Seconds())
	sent, err = send(ctx, port, f.latencyRate, f.latencyFor, n, f.records)
	if err == nil {
		err = waitFor(ctx, "the latency run at Kafka", 5*time.Minute, func() bool { return cons.count() >= sent })
	}
	res.latencyErr = err
	res.p50, res.p99, res.p999 = cons.percentiles()
	res.peakRSS, _ = procStatus(cmd.Process.Pid, "VmHWM")
	return res
}

// sendSyslog writes n newline-framed RFC 5424 messages of about 256 bytes
// over one TCP connection, numbered from base, each carrying its send time;
// at rate a second, or flat out with rate 0. It returns how many it wrote.
func sendSyslog(ctx context.Context, port int, rate float64, dur time.Duration, n, base int) (int, error) {
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	w := bufio.NewWriterSize(conn, 64<<10)
	pad := strings.Repeat("x", 160)
	var line []byte
	var tick <-chan time.Time
	if rate > 0 {
		// Send in bursts of 10 every 10/rate seconds: a timer per record
		// cannot keep up above a few thousand a second.
		t := time.NewTicker(time.Duration(float64(time.Second) * 10 / rate))
		defer t.Stop()
		tick = t.C
	}
	for i := range n {
		if tick != nil && i%10 == 0 {
			w.Flush()
			select {
			case <-tick:
			case <-ctx.Done():
				return i, ctx.Err()
			}
		}
		// As fmt would print "... bench-%d-%d %s\n", without its cost.
		line = append(line[:0], "<14>1 2026-11-26T00:00:00Z edge-host bench - - - bench-"...)
		line = strconv.AppendInt(line, int64(base+i), 10)
		line = append(line, '-')
		line = strconv.AppendInt(line, time.Now().UnixNano(), 10)
		line = append(line, ' ')
		line = append(line, pad...)
		line = append(line, '\n')
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	io.Copy(io.Discard, conn) // until the shipper closes: it has read everything
	return n, nil
}

// sendHTTP posts numbered NDJSON records of about 256 bytes, each carrying
// its send time, numbered from base: n of them flat out (rate 0) from 16
// clients in requests of 100, or rate a second for dur in requests of 10.
// It returns how many were accepted (202).
func sendHTTP(ctx context.Context, port int, rate float64, dur time.Duration, n, base int) (int, error) {
	pad := strings.Repeat("x", 200)
	numbered := func(first int64, count int) []byte {
		var b []byte
		for i := first; i < first+int64(count); i++ {
			b = append(b, `{"message":"bench-`...)
			b = strconv.AppendInt(b, int64(base)+i, 10)
			b = append(b, '-')
			b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
			b = append(b, ' ')
			b = append(b, pad...)
			b = append(b, "\"}\n"...)
		}
		return b
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/logs", port)
	var res loadResult
	if rate > 0 {
		res = postLoad(ctx, url, rate, dur, 0, 10, 4, numbered)
	} else {
		res = postLoad(ctx, url, 0, 0, int64(n), 100, 16, numbered)
	}
	if res.refused > 0 {
		return int(res.sent), fmt.Errorf("http: %d records refused", res.refused)
	}
	return int(res.sent), ctx.Err()
}

// consumer reads the topic and keeps each record's delivery latency.
type consumer struct {
	cl        *kgo.Client
	cancel    context.CancelFunc
	done      chan struct{}
	n         atomic.Int64
	mu        sync.Mutex
	latencies []time.Duration
	last      time.Time
	seen      bitset
}

func newConsumer(broker *kfake.Cluster) (*consumer, error) {
	c := &consumer{}
	var err error
	c.cl, c.cancel, c.done, err = pollTopic(broker, "bench", c.add)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// pollTopic reads topic from its start and hands every record to add with
// its arrival time, until cancel; done closes when the poller has stopped.
func pollTopic(broker *kfake.Cluster, topic string, add func([]byte, time.Time)) (*kgo.Client, context.CancelFunc, chan struct{}, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // owned by the caller's close: cancel, then wait on done
		defer close(done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			now := time.Now()
			fetches.EachRecord(func(r *kgo.Record) { add(r.Value, now) })
		}
	}()
	return cl, cancel, done, nil
}

// add keeps the first arrival of each numbered message. It runs for every
// record at the broker's pace and shares the machine with the shipper, so
// it reads the two numbers in place and allocates nothing.
func (c *consumer) add(v []byte, now time.Time) {
	i := bytes.Index(v, benchTag)
	if i < 0 {
		return
	}
	num, rest, ok := leadingInt(v[i+len(benchTag):])
	if !ok || len(rest) == 0 || rest[0] != '-' {
		return
	}
	sentAt, _, ok := leadingInt(rest[1:])
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen.has(num) {
		return
	}
	c.seen.add(num)
	c.latencies = append(c.latencies, now.Sub(time.Unix(0, int64(sentAt))))
	c.last = now
	c.n.Add(1)
}

var benchTag = []byte("bench-")

// leadingInt parses the decimal digits at the start of b.
func leadingInt(b []byte) (n int, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 19; i++ {
		n = n*10 + int(b[i]-'0')
	}
	return n, b[i:], i > 0
}

// bitset is a set of small non-negative ints.
type bitset []uint64

func (s bitset) has(n int) bool { return n/64 < len(s) && s[n/64]&(1<<(n%64)) != 0 }

func (s *bitset) add(n int) {
	for n/64 >= len(*s) {
		*s = append(*s, make([]uint64, len(*s)+1024)...)
	}
	(*s)[n/64] |= 1 << (n % 64)
}

func (c *consumer) count() int { return int(c.n.Load()) }

func (c *consumer) lastAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// reset forgets the latencies and the count (not which numbers were seen).
func (c *consumer) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latencies = nil
	c.n.Store(0)
}

func (c *consumer) percentiles() (p50, p99, p999 time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.latencies) == 0 {
		return
	}
	l := slices.Clone(c.latencies)
	slices.Sort(l)
	return quantile(l, 0.50), quantile(l, 0.99), quantile(l, 0.999)
}

// quantile is the q quantile of sorted, which must not be empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func (c *consumer) close() { c.cancel(); <-c.done; c.cl.Close() }

func printComparison(w io.Writer, rs []result, f compareFlags) {
	fmt.Fprintf(w, "syslog TCP (outboxd-full-http: HTTP NDJSON) -> Kafka (kfake), %d records of ~256 bytes flat out, then %.0f records/s for %s, one machine:\n\n", f.records, f.latencyRate, f.latencyFor)
	fmt.Fprintln(w, "| shipper | sent (records/s) | delivered to Kafka (records/s) | CPU s | peak RSS | latency p50 | p99 | p99.9 |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		errs := ""
		if r.throughputErr != nil || r.latencyErr != nil {
			errs = fmt.Sprintf(" (errors: %v; %v)", r.throughputErr, r.latencyErr)
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.1f | %s | %s | %s | %s |%s\n", r.name, r.sendRate, r.deliverRate, r.cpuSeconds, mib(r.peakRSS),
			round(r.p50), round(r.p99), round(r.p999), errs)
	}
	var ob *result
	for i := range rs {
		if rs[i].name == "outboxd-full" {
			ob = &rs[i]
		}
	}
	if ob == nil {
		return
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		if strings.HasPrefix(r.name, "rsyslog") && r.deliverRate > 0 {
			fmt.Fprintf(w, "outboxd-full / %s: %.1fx delivered records/s\n", r.name, ob.deliverRate/r.deliverRate)
		}
	}
}

func round(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}

// stopGently sends SIGTERM and waits up to 30 s before SIGKILL.
func stopGently(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}
