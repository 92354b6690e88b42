package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rssBudget is the footprint target: the daemon's RSS at load, hostile
// input included.
const rssBudget = 64 << 20

// vmRSS reads the resident set of pid from /proc, in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// hostile runs the attacks against the daemon's listeners until ctx ends.
// Every goroutine belongs to wg.
type hostile struct {
	httpURL, tcpAddr, udpAddr string
	wg                        sync.WaitGroup
	idle                      []net.Conn
}

func (h *hostile) spawn(n int, ctx context.Context, f func(context.Context)) {
	for range n {
		h.wg.Go(func() {
			for ctx.Err() == nil {
				f(ctx)
			}
		})
	}
}

// writeUntil dials addr and writes chunk until ctx ends or the daemon
// closes the connection.
func writeUntil(ctx context.Context, network, addr string, chunk []byte) {
	conn, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		time.Sleep(10 * time.Millisecond)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Now()) })
	defer stop()
	for ctx.Err() == nil {
		if _, err := conn.Write(chunk); err != nil {
			return
		}
	}
}

func (h *hostile) start(ctx context.Context, t *testing.T) {
	digits := bytes.Repeat([]byte("7"), 1<<20)
	controlLine := append(bytes.Repeat([]byte("\x01"), 60<<10), '\n')
	datagram := append([]byte("<14>1 - h a - - - "), bytes.Repeat([]byte("\x02"), 65000)...)
	var body bytes.Buffer // 8 MiB of text lines of control bytes: 48 MiB of records as escaped
	for range 8 {
		body.Write(bytes.Repeat([]byte("\x03"), 1<<20-1))
		body.WriteByte('\n')
	}
	// Long octet-counting prefixes.
	h.spawn(3, ctx, func(ctx context.Context) { writeUntil(ctx, "tcp", h.tcpAddr, digits) })
	// Control-byte floods, newline-framed.
	h.spawn(4, ctx, func(ctx context.Context) { writeUntil(ctx, "tcp", h.tcpAddr, controlLine) })
	// Large datagrams of control bytes.
	h.spawn(2, ctx, func(ctx context.Context) { writeUntil(ctx, "udp", h.udpAddr, datagram) })
	// Large HTTP bodies of control bytes.
	client := &http.Client{Timeout: 30 * time.Second}
	h.spawn(6, ctx, func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.httpURL, bytes.NewReader(body.Bytes()))
		req.Header.Set("Content-Type", "text/plain")
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	// Many idle connections: more than the limit, held open.
	for range 300 {
		if c, err := net.DialTimeout("tcp", h.tcpAddr, time.Second); err == nil {
			h.idle = append(h.idle, c)
		}
	}
	t.Logf("hostile clients running; %d idle connections open", len(h.idle))
}

func (h *hostile) stop() {
	for _, c := range h.idle {
		c.Close()
	}
	h.wg.Wait()
}

// politeSender posts small NDJSON requests, as a well-behaved client does,
// and keeps what it was answered.
type politeSender struct {
	url                    string
	accepted, busy, failed atomic.Int64
	mu                     sync.Mutex
	failures               []string
}

func (p *politeSender) post(ctx context.Context) int {
	body := strings.Repeat(`{"message":"polite"}`+"\n", 10)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		if ctx.Err() == nil {
			p.fail(err.Error())
		}
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusAccepted:
		p.accepted.Add(1)
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		p.busy.Add(1)
	default:
		p.fail(resp.Status)
	}
	return resp.StatusCode
}

func (p *politeSender) fail(what string) {
	p.failed.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, what)
}

func TestHostileClients(t *testing.T) {
	t.Run("hostile clients on every input in parallel: RSS stays under 64 MiB and a polite sender is served", func(t *testing.T) {
		seconds := 15 * time.Second
		if *long {
			seconds = 25 * time.Second
		}
		// batch_records: 16, because a sink's claim reads up to
		// batch_records rows before it applies batch_bytes (outbox
		// claimRows): 1000 records of 64 KiB would be 64 MiB in the
		// forwarder alone. That is the outbox's to bound, not ingest's.
		dir := t.TempDir()
		httpPort, tcpPort, udpPort, adminPort := freePort(t), freePort(t), freePort(t), freePort(t)
		cfgPath := filepath.Join(dir, "config.yaml")
		cfg := fmt.Sprintf(`data_dir: %s
max_disk_bytes: 256MiB
ingest:
  http:
    listen: 127.0.0.1:%d
  syslog:
    - listen: tcp://127.0.0.1:%d
    - listen: udp://127.0.0.1:%d
sinks:
  c:
    type: console
    batch_records: 16
admin:
  listen: 127.0.0.1:%d
`, filepath.Join(dir, "data"), httpPort, tcpPort, udpPort, adminPort)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, cfgPath)
		pid := d.cmd.Process.Pid

		ctx, cancel := context.WithTimeout(context.Background(), seconds)
		defer cancel()
		h := &hostile{httpURL: fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort),
			tcpAddr: fmt.Sprintf("127.0.0.1:%d", tcpPort), udpAddr: fmt.Sprintf("127.0.0.1:%d", udpPort)}
		p := &politeSender{url: h.httpURL}
		// RSS is sampled every 100 ms from the start of the flood until the
		// daemon has caught up after it.
		var peak atomic.Int64
		sampling, stopSampling := context.WithCancel(context.Background())
		var sampler sync.WaitGroup
		sampler.Go(func() {
			for sampling.Err() == nil {
				if rss, err := vmRSS(pid); err == nil && rss > peak.Load() {
					peak.Store(rss)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		var bg sync.WaitGroup
		bg.Go(func() { // the polite sender, every 200 ms
			for ctx.Err() == nil {
				p.post(ctx)
				time.Sleep(200 * time.Millisecond)
			}
		})
		h.start(ctx, t)
		<-ctx.Done()
		h.stop()
		bg.Wait()
		// Once the flood stops, the daemon takes records at once.
		waitUntil(t, "a 202 after the flood", func() bool { return p.post(context.Background()) == http.StatusAccepted })
		time.Sleep(time.Second) // what was read is being stored: still sampled
		stopSampling()
		sampler.Wait()

		t.Logf("peak RSS %.1f MiB; polite sender: %d accepted, %d busy (503 + Retry-After), %d failed",
			float64(peak.Load())/(1<<20), p.accepted.Load(), p.busy.Load(), p.failed.Load())
		t.Logf("daemon metrics:\n%s", ingestMetrics(t, adminPort))
		if peak.Load() > rssBudget {
			t.Errorf("peak RSS %.1f MiB over the %d MiB budget", float64(peak.Load())/(1<<20), rssBudget>>20)
		}
		if p.failed.Load() > 0 {
			t.Errorf("the polite sender got %d answers other than 202 or 503 with Retry-After: %v", p.failed.Load(), p.failures)
		}
		if p.accepted.Load() == 0 {
			t.Errorf("the polite sender was never served (%d busy answers)", p.busy.Load())
		}
		if err := d.stop(t); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, lastLines(d.log(), 10))
		}
	})
}

// ingestMetrics is the ingest and memory lines of the daemon's /metrics.
func ingestMetrics(t *testing.T, adminPort int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "outboxd_ingest_") || strings.HasPrefix(l, "go_memstats_heap") || strings.HasPrefix(l, "go_memstats_sys") || strings.HasPrefix(l, "process_resident") || strings.HasPrefix(l, "go_memstats_stack") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
