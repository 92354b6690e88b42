package journal

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestJournalctlRace shows the systemd behaviour complete() guards against,
// with journalctl alone: systemd-journal-remote appends batches of 100
// entries every 25 ms while journalctl catches up, then follows for up to
// 1.5 s and is killed, again and again from the last cursor; it counts the
// entries printed without all their fields (their cursor's hash says so).
// It runs only when asked, for as long as asked (the README's figure: two
// runs of 9m):
//
//	OUTBOXD_JOURNALCTL_RACE=9m go test -run TestJournalctlRace -v -timeout 15m ./ingest/journal/
func TestJournalctlRace(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("OUTBOXD_JOURNALCTL_RACE"))
	if err != nil {
		t.Skip("set OUTBOXD_JOURNALCTL_RACE to a duration to run it")
	}
	needJournal(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	written := 0
	wg.Go(func() {
		for n := 0; ctx.Err() == nil; n++ {
			time.Sleep(25 * time.Millisecond)
			var in []byte
			for i := range 100 {
				in = appendExport(in, entry(fmt.Sprintf("%032x", 1+n/50), written+i))
			}
			cmd := exec.Command(remoteBin, "-o", filepath.Join(dir, "race.journal"), "-")
			cmd.Stdin = bytes.NewReader(in)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("systemd-journal-remote: %v: %s", err, out)
				return
			}
			written += 100
		}
	})
	var read, incomplete, runs int
	cursor := ""
	run := func(follow time.Duration) {
		runs++
		args := []string{"--directory=" + dir, "--merge", "-o", "export"}
		if cursor != "" {
			args = append(args, "--cursor="+cursor)
		}
		rctx := context.Background()
		if follow > 0 {
			args = append(args, "--follow", "--lines=all")
			var stop context.CancelFunc
			rctx, stop = context.WithTimeout(rctx, follow)
			defer stop()
		}
		cmd := exec.CommandContext(rctx, "journalctl", args...)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		x := newExportReader(out, 1<<20)
		var scratch []byte
		for first := cursor != ""; ; first = false {
			e, err := x.Next()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Errorf("read journalctl: %v", err)
				}
				return
			}
			c, _ := e.Get("__CURSOR")
			if first && string(c) == cursor {
				continue
			}
			read++
			if !complete(e, c, &scratch) {
				incomplete++
				t.Logf("printed without all its fields (follow=%v): %q", follow > 0, e.Fields)
			}
			cursor = string(c)
		}
	}
	for end := time.Now().Add(d); time.Now().Before(end); {
		run(0)
		run(time.Duration(1+rand.IntN(1500)) * time.Millisecond)
	}
	cancel()
	wg.Wait()
	run(0)
	t.Logf("%d entries written, %d read in %d journalctl runs, %d printed without all their fields", written, read, runs, incomplete)
	if read != written {
		t.Errorf("read %d entries of %d", read, written)
	}
}
