package main

// The journal input in the durability harness (issue 14): a writer appends
// numbered entries to a journal directory through systemd-journal-remote
// (real journal files, no journald needed) while the daemon is killed with
// SIGKILL or the power is cut under its data directory. The sinks are down
// for the whole abuse, so every duplicate counted is an entry read twice
// (the cursor not committed with it), and every loss an entry never read.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox/powerfs"
)

const journalRemote = "/lib/systemd/systemd-journal-remote"

// journalWriter appends numbered entries to dir's journal; an entry counts
// as acknowledged once systemd-journal-remote has written it and exited.
type journalWriter struct {
	o       *oracle
	dir     string
	written int
	runs    int
	err     error
	stopped chan struct{}
	done    sync.WaitGroup
}

func startJournalWriter(o *oracle, dir string) *journalWriter {
	w := &journalWriter{o: o, dir: dir, stopped: make(chan struct{})}
	w.done.Go(w.loop)
	return w
}

// loop appends 100 entries every 25 ms or so (systemd-journal-remote runs
// once per batch), about 3,000 entries a second; every 50th batch begins a
// new boot, so that the daemon reads across boots while it is killed.
func (w *journalWriter) loop() {
	boot := 1
	for n := 0; ; n++ {
		select {
		case <-w.stopped:
			return
		case <-time.After(25 * time.Millisecond):
		}
		if n%50 == 49 {
			boot++
		}
		ns := w.o.numbers(100)
		var in bytes.Buffer
		for _, k := range ns {
			fmt.Fprintf(&in, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%032x\n_HOSTNAME=proof\nSYSLOG_IDENTIFIER=proof\nPRIORITY=6\nMESSAGE=%s\n\n",
				1_700_000_000_000_000+k, 1_000_000+k, boot, line(k))
		}
		cmd := exec.Command(journalRemote, "-o", filepath.Join(w.dir, "proof.journal"), "-")
		cmd.Stdin = &in
		if out, err := cmd.CombinedOutput(); err != nil {
			w.err = fmt.Errorf("systemd-journal-remote: %v: %s", err, out)
			return
		}
		w.o.ack(ns)
		w.written += len(ns)
		w.runs++
	}
}

func (w *journalWriter) stop() error { close(w.stopped); w.done.Wait(); return w.err }

// journalConfig is the scenarios' daemon (proofSinks.config: both sinks,
// every source to both) that also reads dir's journal from its first entry.
func (s *proofSinks) journalConfig(t *testing.T, dataDir, journalDir string) string {
	return strings.Replace(s.config(dataDir, "full", freePort(t), freePort(t)), "ingest:\n",
		"ingest:\n  journal:\n    directory: "+journalDir+"\n    read_from: beginning\n", 1)
}

// journalProof runs the abuse: cycles of kill -9 (and a power cut when pfs
// is not nil) with the sinks down, then the sinks back and a final drain.
func journalProof(t *testing.T, dataDir string, pfs *powerfs.FS, cycles int) {
	if _, err := os.Stat(journalRemote); err != nil {
		t.Skip("systemd-journal-remote is not installed (apt-get install systemd-journal-remote): it writes the journal files this scenario reads")
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skip("journalctl is not installed")
	}
	o := newOracle()
	s := newProofSinks(t, o)
	s.down.Store(true)
	s.kafkaOff.Store(true)
	journalDir := t.TempDir()
	r := &proofRun{t: t, dataDir: dataDir, cfgPath: filepath.Join(t.TempDir(), "config.yaml")}
	os.WriteFile(r.cfgPath, []byte(s.journalConfig(t, dataDir, journalDir)), 0o600)
	w := startJournalWriter(o, journalDir)
	r.start()
	abuse(t, r, pfs, cycles)
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	drainAndStop(t, r, s, o)
	if pfs == nil { // stats names the committed cursor
		out, err := exec.Command(outboxdBinary(t), "stats", "-config", r.cfgPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "journal ("+journalDir+"): cursor s=") {
			t.Errorf("stats does not show the journal cursor: %v\n%s", err, out)
		}
	}
	scenario, events := "journal: kill -9 while entries are appended, sinks down", fmt.Sprintf("%d kills", cycles)
	if pfs != nil {
		scenario, events = "journal: power cuts (powerfs) while entries are appended, sinks down", fmt.Sprintf("%d power cuts", cycles)
	}
	events += fmt.Sprintf("; %d appends by systemd-journal-remote; %d entries read again (read while being written)",
		w.runs, strings.Count(r.logs(), "read while being written): reading it again"))
	reportExactlyOnce(t, o, scenario, events, func() string {
		lost := o.lostNumbers("collector", 10)
		// Is a lost entry in the journal at all? journalctl says.
		out, _ := exec.Command("journalctl", "--directory="+journalDir, "--merge", "-o", "export").Output()
		var in []string
		for _, n := range lost {
			in = append(in, fmt.Sprintf("%d: %d times in the journal", n, bytes.Count(out, []byte(fmt.Sprintf("proof-%d-", n)))))
		}
		o.mu.Lock()
		unnumbered := o.unnumbered
		o.mu.Unlock()
		return fmt.Sprintf("lost %v of 0..%d (%s); %d records arrived without a number\n%s", lost, o.next.Load()-1, strings.Join(in, "; "), unnumbered, lastLines(r.d.log(), 20))
	})
}

// journalPowerCuts is journalProof with the data directory on powerfs and a
// power cut after each kill.
func journalPowerCuts(t *testing.T, cycles int) {
	dataDir, pfs := onPowerFS(t)
	journalProof(t, dataDir, pfs, cycles)
}
