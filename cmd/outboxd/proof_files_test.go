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
	"slices"
	"strings"
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
func (s *proofSinks) filesConfig(t *testing.T, dataDir, logDir string) string {
	return strings.Replace(s.config(dataDir, "full", freePort(t), freePort(t)), "ingest:\n",
		"ingest:\n  files:\n    - paths: ["+logDir+"/*.log*]\n      rotate_wait: 1s\n      rescan: 100ms\n", 1)
}

// filesProof runs the abuse: cycles of kill -9 (and a power cut when pfs is
// not nil) with the sinks down, then the sinks back and a final drain.
func filesProof(t *testing.T, dataDir string, pfs *powerfs.FS, cycles int) {
	o := newOracle()
	o.where = map[int64][]string{}
	s := newProofSinks(t, o)
	s.down.Store(true)
	s.kafkaOff.Store(true)
	logDir := t.TempDir()
	r := &proofRun{t: t, dataDir: dataDir, cfgPath: filepath.Join(t.TempDir(), "config.yaml")}
	os.WriteFile(r.cfgPath, []byte(s.filesConfig(t, dataDir, logDir)), 0o600)
	w := startFileWriter(o, logDir)
	r.start()
	abuse(t, r, pfs, cycles)
	w.stop()
	drainAndStop(t, r, s, o)
	scenario, events := "files: kill -9 while writing and rotating, sinks down", fmt.Sprintf("%d kills", cycles)
	if pfs != nil {
		scenario, events = "files: power cuts (powerfs) while writing and rotating, sinks down", fmt.Sprintf("%d power cuts", cycles)
	}
	events += fmt.Sprintf("; %d rotations (half rename, half copytruncate)", w.rotated)
	if w.rotated < 2 {
		t.Errorf("%d rotations: the scenario tested no rotation", w.rotated)
	}
	reportExactlyOnce(t, o, scenario, events, func() string { return "some duplicates came from:" + o.duplicateSources(5) })
}

// abuse kills the daemon cycles times, 0.3 to 1.5 s apart, cutting the
// power under its data directory after each kill when pfs is not nil, and
// starts it again.
func abuse(t *testing.T, r *proofRun, pfs *powerfs.FS, cycles int) {
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
}

// drainAndStop brings the sinks back, waits until every written number
// arrived (or 90 s), a second more for duplicates, and stops the daemon.
func drainAndStop(t *testing.T, r *proofRun, s *proofSinks, o *oracle) {
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
}

// reportExactlyOnce adds the scenario's rows to the table and fails unless
// both sinks got every number exactly once (the sinks were down during the
// abuse: a duplicate is a record read twice). why says more on a failure.
func reportExactlyOnce(t *testing.T, o *oracle, scenario, events string, why func() string) {
	t.Helper()
	for _, sink := range []string{"collector", "kafka"} {
		sc := o.score(sink)
		row := fmt.Sprintf("| %s | full | %s | %s | %d | %d | %d |", scenario, events, sink, sc.acked, sc.lost, sc.duplicated)
		t.Log(row)
		proofReport.Lock()
		proofReport.rows = append(proofReport.rows, row)
		proofReport.Unlock()
		if sc.acked == 0 {
			t.Errorf("%s: nothing written: the scenario tested nothing", sink)
		}
		if sc.lost > 0 || sc.duplicated > 0 {
			t.Errorf("%s: %d of %d lost, %d duplicated; want 0 and 0; %s", sink, sc.lost, sc.acked, sc.duplicated, why())
		}
	}
}

// duplicateSources describes up to n runs of duplicated numbers: where
// each copy came from (path@offset).
func (o *oracle) duplicateSources(n int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var dups []int64
	for k, c := range o.arrived["collector"] {
		if c > 1 {
			dups = append(dups, k)
		}
	}
	slices.Sort(dups)
	var b strings.Builder
	for i, k := range dups {
		if i > 0 && dups[i-1] == k-1 {
			continue // one line per run
		}
		if n == 0 {
			break
		}
		n--
		end := k
		for j := i + 1; j < len(dups) && dups[j] == end+1; j++ {
			end = dups[j]
		}
		fmt.Fprintf(&b, "\n  %d..%d: %v", k, end, o.where[k])
	}
	return b.String()
}

// lostNumbers lists up to n acknowledged numbers that never reached sink.
func (o *oracle) lostNumbers(sink string, n int) []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var lost []int64
	for k := range o.acked {
		if o.arrived[sink][k] == 0 && !o.excused[sink][k] {
			lost = append(lost, k)
		}
	}
	slices.Sort(lost)
	return lost[:min(n, len(lost))]
}
