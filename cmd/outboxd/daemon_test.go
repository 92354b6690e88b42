package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// daemonProc is the real outboxd binary running as a child process.
type daemonProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

func (p *daemonProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.Write(b)
}

// log is what the daemon has written to stderr so far.
func (p *daemonProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func startDaemon(t *testing.T, cfgPath string) *daemonProc {
	t.Helper()
	p, err := launchDaemon(t, cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// launchDaemon starts the binary on cfgPath and waits until it says it is
// ready; a daemon that exits first is an error with its last log lines.
func launchDaemon(t *testing.T, cfgPath string) (*daemonProc, error) {
	t.Helper()
	p := &daemonProc{cmd: exec.Command(outboxdBinary(t), "run", "-config", cfgPath), done: make(chan error, 1)}
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); err := <-p.done; p.done <- err })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.log(), "outboxd ready") {
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("outboxd exited before it was ready (%v): %s", err, lastLines(p.log(), 3))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("outboxd not ready after 20s: %s", lastLines(p.log(), 3))
		}
	}
	return p, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM and returns the exit error (nil: exit 0).
func (p *daemonProc) stop(t *testing.T) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20s of SIGTERM\n%s", p.log())
		return nil
	}
}

func postLines(t *testing.T, port int, format string, n int) {
	t.Helper()
	var body strings.Builder
	for i := range n {
		fmt.Fprintf(&body, "{\"message\":\""+format+"\"}\n", i)
	}
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", port), "application/x-ndjson", strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("post: %s", resp.Status)
	}
}

// switchable answers 503 until on is set, then collects like collector.
type switchable struct {
	collector
	on atomic.Bool
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.on.Load() {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	s.collector.ServeHTTP(w, r)
}

// exactlyOnce fails unless each of the n numbered messages arrived once.
func (c *collector) exactlyOnce(t *testing.T, format string, n int) {
	t.Helper()
	for i := range n {
		if got := c.count(`"` + fmt.Sprintf(format, i) + `"`); got != 1 {
			t.Errorf("%s arrived %d times, want once", fmt.Sprintf(format, i), got)
		}
	}
}

func TestReload(t *testing.T) {
	t.Run("SIGHUP changes sinks and routes without losing or duplicating queued records", func(t *testing.T) {
		a, b := &switchable{}, &collector{}
		srvA, srvB := httptest.NewServer(a), httptest.NewServer(b)
		defer srvA.Close()
		defer srvB.Close()
		port, dataDir := freePort(t), t.TempDir()
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		write := func(sinks, routes string) {
			os.WriteFile(cfgPath, []byte(fmt.Sprintf("data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:%d\nsinks:\n%sroutes:\n%s",
				dataDir, port, sinks, routes)), 0o600)
		}
		sinkA := func(batch int) string {
			return fmt.Sprintf("  a:\n    type: http\n    url: %s\n    linger: 10ms\n    batch_records: %d\n    retry: {initial: 20ms, max: 100ms}\n", srvA.URL, batch)
		}
		sinkB := fmt.Sprintf("  b:\n    type: http\n    url: %s\n    linger: 10ms\n", srvB.URL)
		write(sinkA(1000), "  - sinks: [a]\n")
		d := startDaemon(t, cfgPath)
		postLines(t, port, "one-%03d", 50) // queued: a answers 503

		hup := func(wantLog string) {
			t.Helper()
			before := strings.Count(d.log(), wantLog)
			d.cmd.Process.Signal(syscall.SIGHUP)
			waitUntil(t, "the log line "+wantLog, func() bool { return strings.Count(d.log(), wantLog) > before })
		}
		// a changes (its worker restarts on the same queue), b is added.
		write(sinkA(7)+sinkB, "  - sinks: [a, b]\n")
		hup("reload: applied")
		postLines(t, port, "two-%03d", 50)
		a.on.Store(true)
		waitUntil(t, "a to receive both rounds, b the second", func() bool {
			return a.count(`"one-`) >= 50 && a.count(`"two-`) >= 50 && b.count(`"two-`) >= 50
		})

		// An invalid config is refused; the running one goes on.
		write(sinkA(7)+sinkB, "  - sinks: [a, missing]\n")
		hup("reload refused")
		postLines(t, port, "three-%03d", 10)
		waitUntil(t, "the third round at both", func() bool { return a.count(`"three-`) >= 10 && b.count(`"three-`) >= 10 })

		// b is removed: new records go to a only.
		write(sinkA(7), "  - sinks: [a]\n")
		hup("reload: applied")
		postLines(t, port, "four-%03d", 10)
		waitUntil(t, "the last round", func() bool { return a.count(`"four-`) >= 10 })
		if err := d.stop(t); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.log())
		}
		a.exactlyOnce(t, "one-%03d", 50)
		a.exactlyOnce(t, "two-%03d", 50)
		a.exactlyOnce(t, "three-%03d", 10)
		a.exactlyOnce(t, "four-%03d", 10)
		b.exactlyOnce(t, "two-%03d", 50)
		b.exactlyOnce(t, "three-%03d", 10)
		if n := b.count(`"one-`) + b.count(`"four-`); n != 0 {
			t.Errorf("b received %d records routed before it was added or after it was removed", n)
		}
		if !strings.Contains(d.log(), `no sink named \"missing\"`) {
			t.Errorf("the refusal does not say why:\n%s", d.log())
		}
	})
}

func TestDataDirLock(t *testing.T) {
	t.Run("a second daemon on the same data directory is refused with the pid of the first", func(t *testing.T) {
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:%d\nsinks:\n  c:\n    type: console\n",
			t.TempDir(), freePort(t))), 0o600)
		d := startDaemon(t, cfgPath)
		out, err := exec.Command(outboxdBinary(t), "run", "-config", cfgPath).CombinedOutput()
		if err == nil || !strings.Contains(string(out), fmt.Sprintf("locked by outboxd pid %d", d.cmd.Process.Pid)) {
			t.Fatalf("second daemon: %v\n%s", err, out)
		}
	})
}

func TestDLQReplay(t *testing.T) {
	t.Run("dead letters are replayed with the daemon stopped and then delivered", func(t *testing.T) {
		var accept atomic.Bool
		coll := &collector{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !accept.Load() {
				http.Error(w, "schema mismatch", 400)
				return
			}
			coll.ServeHTTP(w, r)
		}))
		defer srv.Close()
		port := freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:%d\nsinks:\n  picky:\n    type: http\n    url: %s\n    linger: 10ms\n",
			t.TempDir(), port, srv.URL)), 0o600)
		bin := outboxdBinary(t)
		dlq := func(args ...string) (string, error) {
			out, err := exec.Command(bin, append([]string{"dlq"}, append(args, "-sink", "picky", "-config", cfgPath)...)...).CombinedOutput()
			return string(out), err
		}
		d := startDaemon(t, cfgPath)
		postLines(t, port, "dead-%02d", 20)
		waitUntil(t, "20 dead letters", func() bool {
			out, _ := dlq("list")
			return strings.Count(out, "schema mismatch") == 20
		})
		if out, err := dlq("replay"); err == nil || !strings.Contains(out, "stop the daemon first") {
			t.Fatalf("replay beside a running daemon: %v\n%s", err, out)
		}
		if err := d.stop(t); err != nil {
			t.Fatal(err)
		}
		if out, err := dlq("replay", "-limit", "5"); err != nil || !strings.Contains(out, "replayed 5 dead letters") {
			t.Fatalf("replay -limit 5: %v\n%s", err, out)
		}
		if out, err := dlq("replay"); err != nil || !strings.Contains(out, "replayed 15 dead letters") {
			t.Fatalf("replay: %v\n%s", err, out)
		}
		accept.Store(true)
		startDaemon(t, cfgPath)
		waitUntil(t, "the replayed records at the collector", func() bool { return coll.count(`"dead-`) >= 20 })
		coll.exactlyOnce(t, "dead-%02d", 20)
		if out, _ := dlq("list"); strings.Contains(out, "schema mismatch") {
			t.Fatalf("dead letters left after replay:\n%s", out)
		}
	})
}

func TestEndToEndKafka(t *testing.T) {
	t.Run("records from logger and HTTP reach kfake and the collector, each once", func(t *testing.T) {
		broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "edge-logs"))
		if err != nil {
			t.Fatal(err)
		}
		defer broker.Close()
		coll := &collector{}
		srv := httptest.NewServer(coll)
		defer srv.Close()
		httpPort, syslogPort := freePort(t), freePort(t)
		sock := filepath.Join(t.TempDir(), "syslog.sock")
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf(`data_dir: %s
ingest:
  http:
    listen: 127.0.0.1:%d
  syslog:
    - listen: tcp://127.0.0.1:%d
    - listen: udp://127.0.0.1:%d
    - listen: unix://%s
sinks:
  main:
    type: kafka
    brokers: [%s]
    topic: edge-logs
    linger: 10ms
  archive:
    type: http
    url: %s
    linger: 10ms
routes:
  - sources: [syslog]
    sinks: [main]
  - sinks: [main, archive]
`, t.TempDir(), httpPort, syslogPort, syslogPort, sock, broker.ListenAddrs()[0], srv.URL)), 0o600)
		d := startDaemon(t, cfgPath)
		postLines(t, httpPort, "via-http-%03d", 100)
		for i, args := range [][]string{
			{"--server", "127.0.0.1", "--port", fmt.Sprint(syslogPort), "--tcp", "--rfc5424"},
			{"--server", "127.0.0.1", "--port", fmt.Sprint(syslogPort), "--udp", "--rfc3164"},
			{"--socket", sock, "--socket-errors=on"},
		} {
			msg := fmt.Sprintf("via-logger-%d", i)
			if out, err := exec.Command("logger", append(args, msg)...).CombinedOutput(); err != nil {
				t.Fatalf("logger %v: %v %s", args, err, out)
			}
		}
		got := consumeTopic(t, broker, 103)
		for i := range 100 {
			if n := countContaining(got, fmt.Sprintf(`"via-http-%03d"`, i)); n != 1 {
				t.Errorf("via-http-%03d is in Kafka %d times", i, n)
			}
		}
		for i := range 3 {
			if n := countContaining(got, fmt.Sprintf("via-logger-%d", i)); n != 1 {
				t.Errorf("via-logger-%d is in Kafka %d times", i, n)
			}
		}
		waitUntil(t, "the HTTP records at the collector", func() bool { return coll.count("via-http-") >= 100 })
		coll.exactlyOnce(t, "via-http-%03d", 100)
		if n := coll.count("via-logger-"); n != 0 {
			t.Errorf("the route sends syslog to main only, yet the collector has %d syslog records", n)
		}
		if err := d.stop(t); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.log())
		}
	})
}

// consumeTopic reads at least n records of edge-logs with franz-go, then any
// that follow within a quiet moment (so that duplicates would show).
func consumeTopic(t *testing.T, c *kfake.Cluster, n int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("edge-logs"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for quiet := 0; len(out) < n || quiet < 2; {
		poll, stop := context.WithTimeout(ctx, 300*time.Millisecond)
		fs := cl.PollFetches(poll)
		stop()
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(out), n)
		}
		before := len(out)
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
		if len(out) == before {
			quiet++
		} else {
			quiet = 0
		}
	}
	return out
}

func countContaining(values []string, substr string) int {
	n := 0
	for _, v := range values {
		if strings.Contains(v, substr) {
			n++
		}
	}
	return n
}

func TestMaxDiskBytes(t *testing.T) {
	t.Run("past max_disk_bytes ingest answers 503 with Retry-After and keeps what it accepted", func(t *testing.T) {
		port := freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("data_dir: %s\nmax_disk_bytes: 2MiB\ningest:\n  http:\n    listen: 127.0.0.1:%d\nsinks:\n  down:\n    type: http\n    url: http://127.0.0.1:%d/\n",
			t.TempDir(), port, freePort(t))), 0o600)
		d := startDaemon(t, cfgPath)
		line := `{"message":"` + strings.Repeat("x", 1000) + `"}` + "\n"
		body := strings.Repeat(line, 100)
		accepted := 0
		for range 100 {
			resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/logs", port), "application/x-ndjson", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 503 {
				if resp.Header.Get("Retry-After") == "" {
					t.Fatal("503 without Retry-After")
				}
				break
			}
			if resp.StatusCode != 202 {
				t.Fatalf("post: %s", resp.Status)
			}
			accepted += 100
		}
		if accepted < 1000 || accepted > 2100 {
			t.Fatalf("accepted %d records of about 1 kB under a 2 MiB limit", accepted)
		}
		if err := d.stop(t); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(outboxdBinary(t), "stats", "-config", cfgPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("down  %d", accepted)) {
			t.Fatalf("stats after %d accepted: %v\n%s", accepted, err, out)
		}
	})
}
