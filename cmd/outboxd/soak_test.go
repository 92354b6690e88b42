package main

// The reload soak: steady load through the real daemon while a reload
// removes and re-adds the Kafka sink and the broker goes down and comes
// back, cycle after cycle. The daemon's goroutines (go_goroutines on
// /metrics), file descriptors (/proc/PID/fd) and RSS must stay flat, every
// acknowledged record must arrive, and nothing routed while the Kafka sink
// was removed may reach Kafka. Flat allows a few connections that the live
// sinks open and close as they go; the exact check is the goroutine dump
// at the end (SIGQUIT): one metadata goroutine, the live sink's. CI runs a few cycles (about 30 s); -soak runs
// cycles for that long:
//
//	go test ./cmd/outboxd -run TestReloadSoak -soak=5m -v

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slack is how many goroutines and fds above the first cycle's count as
// flat: connections that live sinks open and close (a reconnect after the
// outage, a produce connection that idles out after 30s).
const slack = 4

var soak = flag.Duration("soak", 0, "run TestReloadSoak's cycles for this long (default: 4 cycles, about 30s)")

// footprint is what the daemon holds at a quiet moment.
type footprint struct{ goroutines, fds, rssKiB int }

func (f footprint) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, RSS %d KiB", f.goroutines, f.fds, f.rssKiB)
}

// measure reads the daemon's footprint: goroutines from its own metrics,
// fds and RSS from /proc.
func measure(t *testing.T, pid, adminPort int) footprint {
	t.Helper()
	var f footprint
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f.goroutines, _ = strconv.Atoi(v)
		}
	}
	resp.Body.Close()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	f.fds = len(fds)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for l := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f.rssKiB, _ = strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return f
}

// settledFootprint measures until goroutines and fds are back to at most
// base's (connections closing is asynchronous), for up to 2s, and returns
// the last measure.
func settledFootprint(t *testing.T, pid, adminPort int, base footprint) footprint {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		f := measure(t, pid, adminPort)
		if (f.goroutines <= base.goroutines && f.fds <= base.fds) || time.Now().After(deadline) {
			return f
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// steadyLoad posts 20 numbered records every 5ms over one kept-alive
// connection, acknowledging to the oracle what the daemon accepted (202).
type steadyLoad struct {
	o      *oracle
	url    string
	client *http.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (l *steadyLoad) start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			ns := l.o.numbers(20)
			var b strings.Builder
			for _, n := range ns {
				fmt.Fprintf(&b, "{\"message\":%q}\n", line(n))
			}
			if resp, err := l.client.Post(l.url, "application/x-ndjson", strings.NewReader(b.String())); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					l.o.ack(ns)
				}
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
	})
}

// stop ends the load and returns the next number it would have used.
func (l *steadyLoad) stop() int64 {
	l.cancel()
	l.wg.Wait()
	return l.o.next.Load()
}

func TestReloadSoak(t *testing.T) {
	t.Run("reloads that remove and re-add a Kafka sink, and broker outages, leave goroutines, fds and RSS flat and lose nothing", func(t *testing.T) {
		o := newOracle()
		s := newProofSinks(t, o)
		_, kafkaPort, _ := net.SplitHostPort(s.kafkaAt)
		port, _ := strconv.Atoi(kafkaPort)
		dataDir, httpPort, adminPort := t.TempDir(), freePort(t), freePort(t)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		write := func(withKafka bool) {
			sinks := fmt.Sprintf("  collector:\n    type: http\n    url: %s\n    linger: 20ms\n    retry: {initial: 20ms, max: 200ms}\n", s.srv.URL)
			routes := "  - sinks: [collector]\n"
			if withKafka {
				sinks += fmt.Sprintf("  kafka:\n    type: kafka\n    brokers: [%s]\n    topic: proof\n    linger: 20ms\n    retry: {initial: 20ms, max: 200ms}\n", s.kafkaAt)
				routes = "  - sinks: [collector, kafka]\n"
			}
			cfg := fmt.Sprintf("data_dir: %s\ngrace_period: 5s\ningest:\n  http:\n    listen: 127.0.0.1:%d\nadmin:\n  listen: 127.0.0.1:%d\nsinks:\n%sroutes:\n%s",
				dataDir, httpPort, adminPort, sinks, routes)
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write(true)
		t.Setenv("GOTRACEBACK", "all") // SIGQUIT dumps every goroutine
		d := startDaemon(t, cfgPath)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("the daemon's last lines:\n%s", lastLines(d.log(), 40))
			}
		})
		pid := d.cmd.Process.Pid
		load := &steadyLoad{o: o, url: fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort), client: &http.Client{Timeout: 10 * time.Second}}
		defer load.client.CloseIdleConnections()
		reload := func(withKafka bool) {
			t.Helper()
			write(withKafka)
			before := strings.Count(d.log(), "reload: applied")
			d.cmd.Process.Signal(syscall.SIGHUP)
			waitUntil(t, "the reload", func() bool { return strings.Count(d.log(), "reload: applied") > before })
		}
		var removed [][2]int64 // numbers routed while the Kafka sink was removed
		phase := 800 * time.Millisecond
		cycle := func() {
			load.start()
			time.Sleep(phase)
			load.stop()
			reload(false)
			from := o.next.Load()
			load.start()
			time.Sleep(phase)
			removed = append(removed, [2]int64{from, load.stop()})
			reload(true)
			load.start()
			time.Sleep(phase / 2)
			s.stopBroker() // the sink's connections break; it retries
			time.Sleep(phase)
			s.startBroker(t, port)
			time.Sleep(phase)
			load.stop()
			waitUntil(t, "the backlog to drain", o.allArrivedExcept(removed))
		}

		cycle() // the first cycle starts what runs for good (pools, caches)
		base := settledFootprint(t, pid, adminPort, footprint{})
		t.Logf("after cycle 1: %s", base)
		cycles, start := 1, time.Now()
		for cycles < 4 || time.Since(start) < *soak {
			cycle()
			cycles++
			f := settledFootprint(t, pid, adminPort, base)
			t.Logf("after cycle %d: %s", cycles, f)
			if f.goroutines > base.goroutines+slack || f.fds > base.fds+slack {
				t.Fatalf("after %d cycles: %s; after the first: %s\n%s", cycles, f, base, lastLines(d.log(), 20))
			}
			if f.rssKiB > base.rssKiB+32<<10 {
				t.Fatalf("RSS grew from %d KiB to %d KiB", base.rssKiB, f.rssKiB)
			}
		}
		d.cmd.Process.Signal(syscall.SIGQUIT)
		<-d.done
		d.done <- nil // for the cleanup
		dump := d.log()
		if n := strings.Count(dump, "(*connPool).discover("); n != 1 {
			t.Errorf("%d kafka-go metadata goroutines after %d removals of the Kafka sink, want 1 (the live sink's)", n, cycles)
		}
		if !strings.Contains(dump, "goroutine ") {
			t.Errorf("no goroutine dump after SIGQUIT:\n%s", lastLines(dump, 5))
		}
		for _, sink := range []string{"collector", "kafka"} {
			sc := o.score(sink)
			t.Logf("%s: %d acknowledged, %d lost, %d duplicated", sink, sc.acked, sc.lost, sc.duplicated)
			if sc.acked == 0 || sc.lost > 0 {
				t.Errorf("%s lost %d of %d acknowledged records", sink, sc.lost, sc.acked)
			}
		}
		if n := o.arrivedIn("kafka", removed); n > 0 {
			t.Errorf("%d records routed while the Kafka sink was removed reached Kafka", n)
		}
	})
}

// allArrivedExcept excuses at Kafka the records routed while it was removed,
// and reports whether every other acknowledged record arrived.
func (o *oracle) allArrivedExcept(removed [][2]int64) func() bool {
	return func() bool {
		for _, r := range removed {
			for n := r[0]; n < r[1]; n++ {
				o.excuse("kafka", n)
			}
		}
		return o.allArrived()
	}
}

// arrivedIn counts the records of the ranges that arrived at sink.
func (o *oracle) arrivedIn(sink string, ranges [][2]int64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range ranges {
		for i := r[0]; i < r[1]; i++ {
			n += o.arrived[sink][i]
		}
	}
	return n
}
