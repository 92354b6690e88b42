package main

// The files input in the durability harness (issue 13): a writer appends
// numbered lines to four files, rotating two by rename and create and two by
// copytruncate, while the daemon is killed with SIGKILL or the power is cut
// under its data directory. The sinks are down for the whole abuse, so a
// forwarder cannot duplicate anything: every duplicate counted is a line
// read twice, and every loss a line never read. Both must be 0.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox/powerfs"
)

// fileWriter appends numbered lines to files in dir and rotates them; a line
// counts as acknowledged once written (a file is its own acknowledgment).
type fileWriter struct {
	o       *oracle
	dir     string
	written int
	rotated int
	stopped chan struct{}
	done    sync.WaitGroup
}

const proofFiles = 4

func startFileWriter(o *oracle, dir string) *fileWriter {
	w := &fileWriter{o: o, dir: dir, stopped: make(chan struct{})}
	w.done.Go(w.loop)
	return w
}

func (w *fileWriter) path(i int) string { return filepath.Join(w.dir, fmt.Sprintf("app%d.log", i)) }

// loop writes a batch of lines to each file in turn, about 4,000 lines a
// second in all, and every 300 ms rotates one file: files 0 and 1 by
// rename and create, 2 and 3 by copytruncate. The copy and the truncation
// happen between two writes, so copytruncate's window (lines written after
// the copy, before the truncation) is empty here: any loss is outboxd's.
func (w *fileWriter) loop() {
	handles := make([]*os.File, proofFiles)
	open := func(i int) {
		f, err := os.OpenFile(w.path(i), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			panic(err)
		}
		handles[i] = f
	}
	for i := range handles {
		open(i)
	}
	defer func() {
		for _, f := range handles {
			f.Close()
		}
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastRotation := time.Now()
	for n := 0; ; n++ {
		select {
		case <-w.stopped:
			return
		case <-tick.C:
		}
		for i, f := range handles {
			ns := w.o.numbers(10)
			var b []byte
			for _, k := range ns {
				b = fmt.Appendf(b, "%s\n", line(k))
			}
			if _, err := f.Write(b); err != nil {
				panic(err)
			}
			w.o.ack(ns)
			w.written += len(ns)
			_ = i
		}
		if time.Since(lastRotation) > 300*time.Millisecond {
			lastRotation = time.Now()
			i := w.rotated % proofFiles
			w.rotated++
			old := fmt.Sprintf("%s.%d", w.path(i), w.rotated)
			if i < 2 { // rename and create; the writer reopens at once
				os.Rename(w.path(i), old)
				handles[i].Close()
				open(i)
			} else { // copytruncate: the writer keeps its O_APPEND handle
				b, _ := os.ReadFile(w.path(i))
				os.WriteFile(old, b, 0o644)
				os.Truncate(w.path(i), 0)
			}
		}
	}
}

func (w *fileWriter) stop() { close(w.stopped); w.done.Wait() }

// filesConfig is a daemon that tails dir's files (rotated names included:
// a file renamed while the daemon is down is still found) into both sinks.
func (s *proofSinks) filesConfig(dataDir, durability, logDir string) string {
	return fmt.Sprintf(`data_dir: %s
durability: %s
grace_period: 5s
ingest:
  files:
    - paths: [%s/*.log*]
      rotate_wait: 1s
      rescan: 100ms
sinks:
  collector:
    type: http
    url: %s
    linger: 20ms
    retry: {initial: 20ms, max: 200ms}
  kafka:
    type: kafka
    brokers: [%s]
    topic: proof
    linger: 20ms
    retry: {initial: 20ms, max: 200ms}
routes:
  - sinks: [collector, kafka]
`, dataDir, durability, logDir, s.srv.URL, s.kafkaAt)
}

// filesProof runs the abuse: cycles of kill -9 (and a power cut when pfs is
// not nil) with the sinks down, then the sinks back and a final drain.
func filesProof(t *testing.T, dataDir string, pfs *powerfs.FS, cycles int) {
	o := newOracle()
	s := newProofSinks(t, o)
	s.down.Store(true)
	s.kafkaOff.Store(true)
	logDir := t.TempDir()
	r := &proofRun{t: t, dataDir: dataDir, cfgPath: filepath.Join(t.TempDir(), "config.yaml")}
	os.WriteFile(r.cfgPath, []byte(s.filesConfig(dataDir, "full", logDir)), 0o600)
	w := startFileWriter(o, logDir)
	r.start()
	for range cycles {
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		r.d.cmd.Process.Kill()
		err := <-r.d.done
		r.d.done <- err
		if pfs != nil {
			if _, err := pfs.PowerCut(); err != nil {
				t.Fatal(err)
			}
		}
		r.start()
	}
	w.stop()
	s.down.Store(false)
	s.kafkaOff.Store(false)
	deadline := time.Now().Add(90 * time.Second)
	for !o.allArrived() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // duplicates would come now
	if err := r.d.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, r.d.log())
	}
	events := fmt.Sprintf("%d kills", cycles)
	scenario := "files: kill -9 while writing and rotating, sinks down"
	if pfs != nil {
		events = fmt.Sprintf("%d power cuts", cycles)
		scenario = "files: power cuts (powerfs) while writing and rotating, sinks down"
	}
	events += fmt.Sprintf("; %d rotations (half rename, half copytruncate)", w.rotated)
	for _, sink := range []string{"collector", "kafka"} {
		sc := o.score(sink)
		row := fmt.Sprintf("| %s | full | %s | %s | %d | %d | %d |", scenario, events, sink, sc.acked, sc.lost, sc.duplicated)
		t.Log(row)
		proofReport.Lock()
		proofReport.rows = append(proofReport.rows, row)
		proofReport.Unlock()
		if sc.acked == 0 || w.rotated < 2 {
			t.Errorf("%s: %d lines written, %d rotations: the scenario tested nothing", sink, sc.acked, w.rotated)
		}
		if sc.lost > 0 || sc.duplicated > 0 {
			t.Errorf("%s: %d of %d lines lost, %d duplicated; want 0 and 0\n%s", sink, sc.lost, sc.acked, sc.duplicated, lastLines(r.d.log(), 20))
		}
	}
}
