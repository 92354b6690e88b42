package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// needRsyslog skips t where rsyslog with omkafka is missing and cannot be
// installed.
func needRsyslog(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(rsyslogKafkaModule()); err == nil {
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("rsyslog-kafka is not installed and installing it needs root")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("no rsyslog-kafka and no apt-get")
	}
}

func TestFilesCompareCommand(t *testing.T) {
	needRsyslog(t)
	// The plain pass also runs outboxd (its build is shared with
	// TestCompareCommand's); the race pass runs rsyslog alone, in seconds.
	only := "rsyslog-da"
	if !raceEnabled {
		only = "outboxd-full,rsyslog-da"
		t.Chdir("../..") // the bench builds ./cmd/outboxd from the repository root
	}
	t.Run("a tiny comparison runs each shipper through throughput and crashes and prints its row", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var out bytes.Buffer
		err := filesCompareCommand(ctx, []string{"-only", only, "-lines", "3000", "-many-files", "5",
			"-kills", "2", "-crash-for", "3s", "-crash-rate", "800", "-rotate-every", "500ms", "-drain-quiet", "2s"}, &out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		// rsyslog's omkafka stalls now and then ("Local: Queue full": some
		// lines never arrive); that is rsyslog's, and its row says so. A
		// failed outboxd run fails the test.
		errored := map[string]bool{}
		for _, line := range strings.Split(out.String(), "\n") {
			if name, _, ok := strings.Cut(line, ", "); ok && strings.Contains(line, ": error:") {
				errored[name] = true
				if strings.HasPrefix(name, "outboxd") {
					t.Errorf("an outboxd run failed: %s", line)
				}
			}
		}
		for _, name := range strings.Split(only, ",") {
			if errored[name] && !strings.HasPrefix(name, "outboxd") {
				t.Logf("%s failed a run (its own stall); its row is not checked", name)
				continue
			}
			var row []string
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(line, "| "+name+" |") {
					row = strings.Split(line, " | ")
				}
			}
			// shipper, 1 file, many files, CPU, RSS, written, lost outside,
			// lost in window, duplicated, kills, setup
			if len(row) != 11 {
				t.Fatalf("no %s row of 11 cells in:\n%s", name, out.String())
			}
			if row[1] == "0" || row[2] == "0" || row[2] == "-" || strings.HasPrefix(row[5], "0 ") || row[9] != "2" {
				t.Errorf("throughput, written or kills missing in the row %q", row)
			}
		}
		t.Log("\n" + out.String())
	})
}

func TestLineCounter(t *testing.T) {
	t.Run("lines are counted lost in or out of a copytruncate window, and duplicated", func(t *testing.T) {
		c := &lineCounter{}
		now := time.Now()
		msg := func(file, seq int) []byte {
			// outboxd's record: the line inside JSON, after a path that
			// must not be taken for the line's file number.
			return []byte(`{"path":"/logs/app1.log","offset":7,"message":"` + strings.TrimSuffix(string(appendLine(nil, file, seq)), "\n") + `"}`)
		}
		for seq := range 10 {
			if seq != 3 && seq != 7 {
				c.add(msg(0, seq), now)
			}
		}
		c.add(msg(0, 5), now) // duplicated twice
		c.add(msg(0, 5), now)
		c.add(appendLine(nil, 1, 0), now) // rsyslog's: the bare line
		c.add(msg(1, 0), now)
		c.add([]byte("probe-ready"), now)
		c.add([]byte("file=1 se"), now) // a torn line
		// Line 3 was in a file rotated away while the shipper was down.
		got := c.tally([]fileLog{{n: 10, window: []int{7, 8}, gens: []generation{{from: 0, to: 5, kind: renamed, down: true}}}, {n: 2}})
		want := crashCounts{written: 12, window: 2, lostWindow: 1, lostOutside: 2, lostRotatedDown: 1, dupLines: 2, dupExtra: 3, other: 2,
			lostIn: [3]int{renamed: 1, current: 1}, dupIn: [3]int{current: 2}}
		if got != want {
			t.Fatalf("tally = %+v, want %+v", got, want)
		}
		if !c.sawProbe() {
			t.Fatal("the probe was not seen")
		}
	})
	t.Run("a line that was never written is counted apart", func(t *testing.T) {
		c := &lineCounter{}
		c.add(appendLine(nil, 0, 4), time.Now())
		c.add(appendLine(nil, 3, 0), time.Now())
		if got := c.tally([]fileLog{{n: 2}}); got.unknown != 2 || got.lostOutside != 2 {
			t.Fatalf("tally = %+v, want 2 unknown and 2 lost", got)
		}
	})
	t.Run("every line is lineSize bytes and parses back", func(t *testing.T) {
		for _, fs := range [][2]int{{0, 0}, {99, 123_456_789}} {
			line := appendLine([]byte("prefix"), fs[0], fs[1])[len("prefix"):]
			if len(line) != lineSize || line[lineSize-1] != '\n' {
				t.Fatalf("line %q is %d bytes", line, len(line))
			}
			if file, seq, ok := parseLine(line); !ok || file != fs[0] || seq != fs[1] {
				t.Fatalf("parseLine(%q) = %d %d %v", line, file, seq, ok)
			}
		}
	})
}

func TestCrashFile(t *testing.T) {
	t.Run("lines written between a copytruncate's copy and its truncate are in neither file and are recorded", func(t *testing.T) {
		dir := t.TempDir()
		cf, err := openCrashFile(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer cf.close()
		if err := cf.write(0, 5); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if err := cf.write(0, 1); err != nil {
					t.Error(err)
					return
				}
			}
		})
		// Until a line falls inside the window: the writer may be slow to
		// start under the race detector.
		var window []int
		for len(window) == 0 {
			if err := cf.copyTruncate(false); err != nil {
				t.Fatal(err)
			}
			window = cf.written().window
		}
		close(stop)
		wg.Wait()
		w := cf.written()
		n, window := w.n, w.window
		seen := make(map[int]int)
		rotated, _ := filepath.Glob(filepath.Join(dir, "app0.log.*"))
		for _, path := range append(rotated, filepath.Join(dir, "app0.log")) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range bytes.SplitAfter(b, []byte("\n")) {
				if _, seq, ok := parseLine(line); ok {
					seen[seq]++
				}
			}
		}
		inWindow := make(map[int]bool)
		for _, s := range window {
			inWindow[s] = true
		}
		for seq := range n {
			switch {
			case inWindow[seq] && seen[seq] != 0:
				t.Errorf("line %d is recorded in a window but was kept", seq)
			case !inWindow[seq] && seen[seq] != 1:
				t.Errorf("line %d, outside the windows, is in the files %d times", seq, seen[seq])
			}
		}
	})
	t.Run("a rename rotation keeps every line in the old or the new file, and notes a rotation while the shipper is down", func(t *testing.T) {
		dir := t.TempDir()
		cf, err := openCrashFile(dir, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer cf.close()
		cf.write(2, 3)
		if err := cf.renameRotate(true); err != nil {
			t.Fatal(err)
		}
		cf.write(2, 4)
		if got := cf.written().gens; len(got) != 1 || got[0].from != 0 || got[0].to != 3 || got[0].kind != renamed || !got[0].down || got[0].name != "app2.log.1" {
			t.Errorf("rotated while down: %v, want lines 0 to 3", got)
		}
		old, _ := os.ReadFile(filepath.Join(dir, "app2.log.1"))
		cur, _ := os.ReadFile(filepath.Join(dir, "app2.log"))
		if len(old) != 3*lineSize || len(cur) != 4*lineSize {
			t.Fatalf("old %d bytes, new %d bytes; want %d and %d", len(old), len(cur), 3*lineSize, 4*lineSize)
		}
		if _, seq, _ := parseLine(cur); seq != 3 {
			t.Fatalf("the new file starts at line %d, want 3", seq)
		}
	})
}
