package journal

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outboxd/outboxd/config"
)

func dirInput(dir, readFrom string, units ...string) config.JournalInput {
	return config.JournalInput{Directory: dir, ReadFrom: readFrom, Units: units}
}

func TestReader(t *testing.T) {
	needJournal(t)
	t.Run("keeps binary, multi-line and 100 KiB fields whole, repeated fields as lists", func(t *testing.T) {
		dir := t.TempDir()
		long := strings.Repeat("0123456789abcdef", 100<<10/16)
		appendJournal(t, dir, []*Entry{
			entry(boot1, 0, Field{"MESSAGE", []byte("first\nsecond \xff\x00 end")}, Field{"PRIORITY", []byte("3")},
				Field{"SYSLOG_FACILITY", []byte("3")}, Field{"SYSLOG_IDENTIFIER", []byte("nginx")}, Field{"_PID", []byte("42")},
				Field{"_SYSTEMD_UNIT", []byte("nginx.service")}, Field{"FOO", []byte("1")}, Field{"FOO", []byte("2")},
				Field{"BIN", []byte("a\xffb")}),
			entry(boot1, 1, Field{"MESSAGE", []byte(long)}, Field{"LONG", []byte(long)}),
		})
		st := newMemStore()
		start(t, Config{Input: dirInput(dir, "beginning"), Host: "fallback"}, st)
		waitFor(t, "2 records", func() bool { return st.count() == 2 })
		recs := st.records(t)
		r := recs[0]
		b, _ := base64.StdEncoding.DecodeString(r["message_base64"].(string))
		if string(b) != "first\nsecond \xff\x00 end" {
			t.Errorf("message_base64 holds %q", b)
		}
		if r["message"] != "first\nsecond \uFFFD\u0000 end" {
			t.Errorf("message = %q", r["message"])
		}
		want := map[string]any{"ts": "2023-11-14T22:13:20Z", "host": "h1", "source": "journal", "severity": "err",
			"facility": "daemon", "app": "nginx", "procid": "42"}
		for k, v := range want {
			if r[k] != v {
				t.Errorf("%s = %v, want %v", k, r[k], v)
			}
		}
		j := r["journal"].(map[string]any)
		if !slices.Equal(j["FOO"].([]any), []any{"1", "2"}) {
			t.Errorf("journal.FOO = %v, want [1 2]", j["FOO"])
		}
		if j["_SYSTEMD_UNIT"] != "nginx.service" || j["_BOOT_ID"] != boot1 || !strings.HasPrefix(j["__CURSOR"].(string), "s=") {
			t.Errorf("journal = %v", j)
		}
		for _, k := range []string{"MESSAGE", "PRIORITY", "_HOSTNAME", "_PID", "__REALTIME_TIMESTAMP"} {
			if _, ok := j[k]; ok {
				t.Errorf("journal.%s is there; it went to the top level", k)
			}
		}
		if b64 := r["journal_base64"].(map[string]any); b64["BIN"] != base64.StdEncoding.EncodeToString([]byte("a\xffb")) {
			t.Errorf("journal_base64 = %v", b64)
		}
		if recs[1]["message"] != long || recs[1]["journal"].(map[string]any)["LONG"] != long {
			t.Errorf("the 100 KiB fields are not whole")
		}
		if recs[1]["ts"] != "2023-11-14T22:13:20.001Z" {
			t.Errorf("ts = %v", recs[1]["ts"])
		}
	})

	t.Run("reads every boot of a directory, and a boot that begins while it follows", func(t *testing.T) {
		dir := t.TempDir()
		appendJournal(t, dir, entries(boot1, 0, 3))
		appendJournal(t, dir, entries(boot2, 3, 6))
		st := newMemStore()
		run := start(t, Config{Input: dirInput(dir, "beginning")}, st)
		waitFor(t, "6 records", func() bool { return st.count() == 6 })
		appendJournal(t, dir, entries(boot3, 6, 8)) // while following
		waitFor(t, "8 records", func() bool { return st.count() == 8 })
		run.stop()
		appendJournal(t, dir, entries(boot4, 8, 10)) // a new boot while stopped: its first entry is read
		start(t, Config{Input: dirInput(dir, "beginning")}, st)
		waitFor(t, "10 records", func() bool { return st.count() == 10 })
		time.Sleep(200 * time.Millisecond)
		if got := messages(st.records(t)); !slices.Equal(got, lines(0, 10)) {
			t.Fatalf("got %q", got)
		}
	})

	t.Run("a stored cursor no longer in the journal: says so, and loses nothing after it", func(t *testing.T) {
		dir := t.TempDir()
		appendJournal(t, dir, entries(boot1, 0, 5))
		st := newMemStore()
		run := start(t, Config{Input: dirInput(dir, "beginning")}, st)
		waitFor(t, "5 records", func() bool { return st.count() == 5 })
		run.stop()
		// Vacuumed: the file with the stored cursor is gone; newer entries
		// are in another.
		if err := os.Remove(filepath.Join(dir, "x.journal")); err != nil {
			t.Fatal(err)
		}
		appendJournal(t, dir, entries(boot1, 5, 9))
		run = start(t, Config{Input: dirInput(dir, "beginning")}, st)
		waitFor(t, "9 records", func() bool { return st.count() == 9 })
		time.Sleep(200 * time.Millisecond)
		if got := messages(st.records(t)); !slices.Equal(got, lines(0, 9)) {
			t.Fatalf("got %q", got)
		}
		if v := run.r.Stats().Vacuumed.Load(); v != 1 {
			t.Errorf("Vacuumed = %d, want 1", v)
		}
	})

	t.Run("units filter the entries, and the cursor moves past the others", func(t *testing.T) {
		dir := t.TempDir()
		var es []*Entry
		for n := range 10 {
			unit := "a.service"
			if n%2 == 1 || n == 9 {
				unit = "b.service"
			}
			es = append(es, entry(boot1, n, Field{"_SYSTEMD_UNIT", []byte(unit)}))
		}
		appendJournal(t, dir, es)
		st := newMemStore()
		run := start(t, Config{Input: dirInput(dir, "beginning", "a")}, st)
		last := lastCursorOf(t, dir)
		waitFor(t, "the cursor of the last entry (unit b)", func() bool { return st.mark(MarkKey(dir)) == last })
		if got := messages(st.records(t)); !slices.Equal(got, []string{"line 0", "line 2", "line 4", "line 6", "line 8"}) {
			t.Fatalf("got %q", got)
		}
		if f := run.r.Stats().Filtered.Load(); f != 5 {
			t.Errorf("Filtered = %d, want 5", f)
		}
		// A filter that matches nothing still moves the cursor.
		appendJournal(t, dir, entries(boot1, 10, 20, Field{"_SYSTEMD_UNIT", []byte("b.service")}))
		last = lastCursorOf(t, dir)
		waitFor(t, "the cursor past 10 entries of unit b", func() bool { return st.mark(MarkKey(dir)) == last })
		if n := st.count(); n != 5 {
			t.Fatalf("%d records, want 5", n)
		}
	})

	t.Run("read_from applies at the first start only", func(t *testing.T) {
		for _, from := range []string{"end", "beginning"} {
			dir := t.TempDir()
			appendJournal(t, dir, entries(boot1, 0, 3))
			st := newMemStore()
			run := start(t, Config{Input: dirInput(dir, from)}, st)
			waitFor(t, "a stored cursor", func() bool { return st.mark(MarkKey(dir)) != "" })
			appendJournal(t, dir, entries(boot1, 3, 5))
			waitFor(t, "line 4", func() bool { r := st.records(t); return len(r) > 0 && r[len(r)-1]["message"] == "line 4" })
			run.stop()
			appendJournal(t, dir, entries(boot1, 5, 7)) // while stopped: read at the next start whatever read_from says
			start(t, Config{Input: dirInput(dir, "end")}, st)
			waitFor(t, "line 6", func() bool { r := st.records(t); return len(r) > 0 && r[len(r)-1]["message"] == "line 6" })
			want := lines(3, 7)
			if from == "beginning" {
				want = lines(0, 7)
			}
			if got := messages(st.records(t)); !slices.Equal(got, want) {
				t.Fatalf("read_from %s: got %q, want %q", from, got, want)
			}
		}
	})

	t.Run("an empty journal at the first start with read_from end: what comes later is read, even after a restart", func(t *testing.T) {
		dir := t.TempDir()
		st := newMemStore()
		run := start(t, Config{Input: dirInput(dir, "end")}, st)
		waitFor(t, "a stored start", func() bool { return st.mark(MarkKey(dir)) == fromStart })
		run.stop()
		appendJournal(t, dir, entries(boot1, 0, 3))
		start(t, Config{Input: dirInput(dir, "end")}, st)
		waitFor(t, "3 records", func() bool { return st.count() == 3 })
	})

	t.Run("journalctl killed again and again: nothing lost, nothing repeated", func(t *testing.T) {
		dir := t.TempDir()
		const n = 60000 // over the pipe's 1 MiB many times
		for from := 0; from < n; from += 20000 {
			appendJournal(t, dir, entries(boot1, from, from+20000))
		}
		pids := filepath.Join(t.TempDir(), "pids")
		wrapper := filepath.Join(t.TempDir(), "journalctl")
		script := "#!/bin/sh\necho $$ >> " + pids + "\nexec journalctl \"$@\"\n"
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		st := newMemStore()
		st.gate = make(chan struct{})
		run := start(t, Config{Input: dirInput(dir, "beginning"), Journalctl: wrapper, BatchRecords: 200}, st)
		// Each commit waits for the gate; after every third, the running
		// journalctl is killed (once each). A commit that passed the gate
		// appends its records a moment later: the loop polls.
		killed, lastKilled, commits := 0, 0, 0
		deadline := time.Now().Add(60 * time.Second)
		for st.count() < n {
			if time.Now().After(deadline) {
				pprof.Lookup("goroutine").WriteTo(t.Output(), 1)
				out, _ := exec.Command("ps", "-eo", "pid,ppid,stat,etime,cmd").Output()
				t.Fatalf("%d of %d records after 60 s; last pid %d; processes:\n%s", st.count(), n, lastPid(t, pids), out)
			}
			select {
			case st.gate <- struct{}{}:
				commits++
			case <-time.After(20 * time.Millisecond):
				continue
			}
			if pid := lastPid(t, pids); commits%3 == 1 && pid > 0 && pid != lastKilled && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
				lastKilled = pid
			}
		}
		close(st.gate) // every commit goes through from now on
		waitFor(t, "every record", func() bool { return st.count() >= n })
		time.Sleep(200 * time.Millisecond)
		run.stop()
		if got := messages(st.records(t)); !slices.Equal(got, lines(0, n)) {
			t.Fatalf("%d records, want %d in order (first difference at %s)", len(got), n, firstDiff(got, lines(0, n)))
		}
		if killed < 5 || run.r.Stats().Restarts.Load() < 5 {
			t.Fatalf("killed journalctl %d times, %d restarts: the test did not test", killed, run.r.Stats().Restarts.Load())
		}
		t.Logf("journalctl killed %d times", killed)
	})

	t.Run("a full outbox stops the reading; nothing is dropped", func(t *testing.T) {
		dir := t.TempDir()
		appendJournal(t, dir, entries(boot1, 0, 5000))
		st := newMemStore()
		st.gate = make(chan struct{})
		start(t, Config{Input: dirInput(dir, "beginning"), BatchRecords: 100}, st)
		time.Sleep(300 * time.Millisecond) // journalctl fills the pipe and blocks
		if n := st.count(); n != 0 {
			t.Fatalf("%d records committed through a closed gate", n)
		}
		close(st.gate) // every commit goes through from now on
		waitFor(t, "5000 records", func() bool { return st.count() == 5000 })
		if got := messages(st.records(t)); !slices.Equal(got, lines(0, 5000)) {
			t.Fatalf("first difference at %s", firstDiff(got, lines(0, 5000)))
		}
	})

	t.Run("a queue smaller than a batch: the batches shrink to fit", func(t *testing.T) {
		dir := t.TempDir()
		appendJournal(t, dir, entries(boot1, 0, 3000))
		st := newMemStore()
		st.most = 100
		run := start(t, Config{Input: dirInput(dir, "beginning")}, st)
		waitFor(t, "3000 records", func() bool { return st.count() == 3000 })
		if got := messages(st.records(t)); !slices.Equal(got, lines(0, 3000)) {
			t.Fatalf("first difference at %s", firstDiff(got, lines(0, 3000)))
		}
		if b := run.r.batchSize(); b > 100 {
			t.Errorf("batch size %d, want at most 100", b)
		}
	})

	t.Run("a failed commit is read again", func(t *testing.T) {
		dir := t.TempDir()
		appendJournal(t, dir, entries(boot1, 0, 50))
		st := newMemStore()
		st.fail = errors.New("disk on fire")
		run := start(t, Config{Input: dirInput(dir, "beginning")}, st)
		waitFor(t, "the error in Healthy", func() bool {
			err := run.r.Healthy()
			return err != nil && strings.Contains(err.Error(), "disk on fire")
		})
		st.mu.Lock()
		st.fail = nil
		st.mu.Unlock()
		waitFor(t, "50 records", func() bool { return st.count() == 50 })
		waitFor(t, "healthy", func() bool { return run.r.Healthy() == nil })
		if got := messages(st.records(t)); !slices.Equal(got, lines(0, 50)) {
			t.Fatalf("got %q", got)
		}
	})
}

func TestMissingJournalctl(t *testing.T) {
	st := newMemStore()
	run := start(t, Config{Input: dirInput(t.TempDir(), "beginning"), Journalctl: "/nonexistent/journalctl"}, st)
	waitFor(t, "an error", func() bool { return run.r.Healthy() != nil })
	if err := run.r.Healthy(); !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Healthy: %v", err)
	}
	old := filepath.Join(t.TempDir(), "journalctl")
	os.WriteFile(old, []byte("#!/bin/sh\necho 'systemd 219 (219)'\n"), 0o755)
	run = start(t, Config{Input: dirInput(t.TempDir(), "beginning"), Journalctl: old}, st)
	waitFor(t, "an error", func() bool { return run.r.Healthy() != nil })
	if err := run.r.Healthy(); !strings.Contains(err.Error(), "needs 232 or newer") {
		t.Fatalf("Healthy: %v", err)
	}
}

// lastCursorOf is the cursor of dir's last entry.
func lastCursorOf(t *testing.T, dir string) string {
	t.Helper()
	r := New(Config{Input: dirInput(dir, "end")}, nil)
	c, err := r.lastCursor(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func lastPid(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(bytes.TrimSpace(b)))
	if len(f) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(f[len(f)-1])
	return pid
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%d: %q vs %q", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("%d (lengths %d, %d)", min(len(a), len(b)), len(a), len(b))
}

// TestSystemJournal reads the host's own journal where a journald runs: a
// line sent with systemd-cat after the start arrives.
func TestSystemJournal(t *testing.T) {
	if _, err := os.Stat("/run/systemd/journal/socket"); err != nil {
		t.Skip("no journald runs here (/run/systemd/journal/socket is missing); the directory tests cover the reader")
	}
	st := newMemStore()
	start(t, Config{Input: config.JournalInput{ReadFrom: "end"}}, st)
	waitFor(t, "a stored cursor", func() bool { return st.mark(MarkKey("")) != "" })
	tag := fmt.Sprintf("outboxd-test-%d", time.Now().UnixNano())
	cmd := exec.Command("systemd-cat", "-t", tag)
	cmd.Stdin = strings.NewReader("hello from " + tag + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-cat: %v: %s", err, out)
	}
	waitFor(t, "the line", func() bool { return slices.Contains(messages(st.records(t)), "hello from "+tag) })
	for _, r := range st.records(t) {
		if r["message"] == "hello from "+tag && r["app"] != tag {
			t.Errorf("app = %v, want %s", r["app"], tag)
		}
	}
}
