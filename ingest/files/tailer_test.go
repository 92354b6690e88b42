package files

import (
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outboxd/outboxd/config"
)

func TestTail(t *testing.T) {
	t.Run("each line is a record with its path and offset; a partial line waits for its newline", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		h.write("a.log", "first\n\nsecond\npart")
		h.start()
		recs := h.wait(2)
		if recs[0]["message"] != "first" || recs[0]["offset"] != 0.0 || recs[0]["path"] != h.path("a.log") ||
			recs[0]["source"] != "file" || recs[0]["host"] != "testhost" || recs[1]["message"] != "second" || recs[1]["offset"] != 7.0 {
			t.Fatalf("records: %v", recs)
		}
		h.write("a.log", "ial\n")
		recs = h.wait(3)
		if recs[2]["message"] != "partial" || recs[2]["offset"] != 14.0 {
			t.Fatalf("the completed line: %v", recs[2])
		}
		if m := h.marks(); len(m) != 1 {
			t.Fatalf("marks: %v", m)
		}
		for _, p := range h.marks() {
			if p.Offset != 22 || p.Path != h.path("a.log") {
				t.Fatalf("mark: %+v, want offset 22", p)
			}
		}
	})

	t.Run("a restart goes on exactly where the last commit left", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		h.write("a.log", numbered("line", 0, 100))
		h.start()
		h.wait(100)
		h.stop()
		h.write("a.log", numbered("line", 100, 50)+"half")
		h.start()
		h.wait(150)
		h.stop()
		h.write("a.log", " done\n")
		h.start()
		recs := h.wait(151)
		if recs[150]["message"] != "half done" {
			t.Fatalf("last record: %v", recs[150])
		}
		want := strings.Split(numbered("line", 0, 150), "\n")
		if got := h.messages()[:150]; !slices.Equal(got, want[:150]) {
			t.Fatalf("messages differ")
		}
	})

	t.Run("a line over max_line_bytes is cut and reading goes on after it", func(t *testing.T) {
		e := entry("DIR/*.log")
		e.MaxLineBytes = 100
		h := newHarness(t, e)
		long := strings.Repeat("x", 1000)
		h.write("a.log", "short\n"+long+"\nafter\n"+strings.Repeat("é", 80)+"\n")
		h.start()
		recs := h.wait(4)
		if recs[1]["message"] != long[:100] || recs[1]["truncated"] != true || recs[2]["message"] != "after" || recs[2]["offset"] != 1007.0 {
			t.Fatalf("records: %v", recs)
		}
		if m := recs[3]["message"].(string); m != strings.Repeat("é", 50) || recs[3]["message_base64"] != nil {
			t.Fatalf("a cut inside a character: %q (%v)", m, recs[3]["message_base64"])
		}
	})

	t.Run("a long line whose newline comes in later reads is cut once", func(t *testing.T) {
		e := entry("DIR/*.log")
		e.MaxLineBytes = 1000
		h := newHarness(t, e)
		h.write("a.log", strings.Repeat("y", 300_000)) // many chunks, no newline yet
		h.start()
		time.Sleep(300 * time.Millisecond)
		h.stop() // a restart in the middle of it
		h.start()
		h.write("a.log", strings.Repeat("y", 100_000)+"\nnext\n")
		recs := h.wait(2)
		if recs[0]["message"] != strings.Repeat("y", 1000) || recs[0]["truncated"] != true || recs[1]["offset"] != 400_001.0 {
			t.Fatalf("records: %.80v", recs)
		}
	})

	t.Run("bytes that are not UTF-8 are kept exactly", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		raw := "caf\xe9 \x00\x01 ok"
		h.write("a.log", raw+"\n")
		h.start()
		recs := h.wait(1)
		b, _ := base64.StdEncoding.DecodeString(recs[0]["message_base64"].(string))
		if string(b) != raw || !strings.Contains(recs[0]["message"].(string), "\uFFFD") {
			t.Fatalf("record: %v", recs[0])
		}
	})

	t.Run("globs with ** and exclude", func(t *testing.T) {
		e := entry("DIR/**/*.log", "DIR/top.txt")
		e.Exclude = []string{"*.gz.log", "DIR/skip/**"}
		h := newHarness(t, e)
		for _, d := range []string{"a/b/c", "skip"} {
			os.MkdirAll(h.path(d), 0o755)
		}
		h.write("a/b/c/deep.log", "deep\n")
		h.write("x.log", "top level\n")
		h.write("top.txt", "named\n")
		h.write("old.gz.log", "excluded\n")
		h.write("skip/s.log", "excluded dir\n")
		h.write("other.txt", "not matched\n")
		h.start()
		h.wait(3)
		if got := h.sortedMessages(); !slices.Equal(got, []string{"deep", "named", "top level"}) {
			t.Fatalf("messages: %v", got)
		}
		os.MkdirAll(h.path("new/dir"), 0o755) // a directory made after the start
		h.write("new/dir/late.log", "late\n")
		h.wait(4)
	})

	t.Run("a file two entries match is read once", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"), entry("DIR/a.*"))
		h.write("a.log", "once\n")
		h.start()
		h.wait(1)
	})

	t.Run("two files with the same first bytes are two files", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		header := "# header of every file\n"
		h.write("a.log", header+"a1\n")
		h.write("b.log", header)
		h.start()
		h.wait(3)
		h.write("b.log", "b1\n")
		h.write("c.log", header+"a1\n") // byte for byte a.log, a file of its own
		h.wait(6)
		if got := h.sortedMessages(); !slices.Equal(got, []string{header[:len(header)-1], header[:len(header)-1], header[:len(header)-1], "a1", "a1", "b1"}) {
			t.Fatalf("messages: %v", got)
		}
	})

	t.Run("many files", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		for i := range 300 {
			h.write(fmt.Sprintf("f%03d.log", i), numbered(fmt.Sprintf("f%03d", i), 0, 10))
		}
		h.start()
		h.wait(3000)
		if len(h.marks()) != 300 {
			t.Fatalf("%d marks, want 300", len(h.marks()))
		}
	})

	t.Run("read_from end applies to the files present at the very first start only", func(t *testing.T) {
		e := entry("DIR/*.log")
		e.ReadFrom = "end"
		h := newHarness(t, e)
		h.write("old.log", "before the first start\n")
		h.start()
		time.Sleep(200 * time.Millisecond)
		h.write("old.log", "after\n")
		h.write("new.log", "a new file, from its start\n")
		h.wait(2)
		h.stop()
		h.write("later.log", "made while stopped\n")
		h.start()
		h.wait(3)
		if got := h.sortedMessages(); !slices.Equal(got, []string{"a new file, from its start", "after", "made while stopped"}) {
			t.Fatalf("messages: %v", got)
		}
	})
}

func TestFormats(t *testing.T) {
	t.Run("multiline: a line matching start begins a record; the last waits for the timeout", func(t *testing.T) {
		e := entry("DIR/*.log")
		e.Multiline = &config.Multiline{Start: `^\S`, Timeout: 300 * time.Millisecond}
		h := newHarness(t, e)
		h.write("a.log", "Exception: boom\n  at a()\n  at b()\nnext line\n  continued\n")
		h.start()
		recs := h.wait(1)
		if recs[0]["message"] != "Exception: boom\n  at a()\n  at b()" || recs[0]["offset"] != 0.0 {
			t.Fatalf("first record: %v", recs[0])
		}
		time.Sleep(200 * time.Millisecond)
		recs = h.wait(2)
		if recs[1]["message"] != "next line\n  continued" {
			t.Fatalf("second record: %v", recs[1])
		}
	})

	t.Run("multiline: a record in progress at a stop is read again whole", func(t *testing.T) {
		e := entry("DIR/*.log")
		e.Multiline = &config.Multiline{Start: `^\S`, Timeout: time.Hour}
		h := newHarness(t, e)
		h.write("a.log", "one\ntwo\n  two more\n")
		h.start()
		h.wait(1)
		h.stop()
		h.write("a.log", "  and more\nthree\n")
		h.start()
		recs := h.wait(2)
		if recs[1]["message"] != "two\n  two more\n  and more" || recs[1]["offset"] != 4.0 {
			t.Fatalf("record: %v", recs[1])
		}
	})

	t.Run("json: objects merged as HTTP merges them; other lines kept with parse_error", func(t *testing.T) {
		e := entry("DIR/*.log")
		e.Format = "json"
		h := newHarness(t, e)
		h.write("a.log", `{"level":"warn","msg":"disk","host":"own"}`+"\nnot json\n[1]\n")
		h.start()
		recs := h.wait(3)
		if recs[0]["level"] != "warn" || recs[0]["host"] != "own" || recs[0]["source"] != "file" || recs[0]["path"] != h.path("a.log") || recs[0]["offset"] != 0.0 {
			t.Fatalf("object: %v", recs[0])
		}
		if recs[1]["message"] != "not json" || recs[1]["parse_error"] != true || recs[2]["parse_error"] != true {
			t.Fatalf("others: %v", recs[1:])
		}
	})

	t.Run("cri: the runtime's time and stream, split messages joined", func(t *testing.T) {
		e := entry("DIR/*.log")
		e.Format = "cri"
		h := newHarness(t, e)
		h.write("a.log", "2026-12-02T10:00:00.123456789Z stdout F hello\n"+
			"2026-12-02T10:00:01Z stderr P part one, \n2026-12-02T10:00:02Z stderr F part two\n"+
			"garbage line\n2026-12-02T10:00:03Z stdout P waits\n")
		h.start()
		recs := h.wait(3)
		if recs[0]["message"] != "hello" || recs[0]["stream"] != "stdout" || recs[0]["ts"] != "2026-12-02T10:00:00.123456789Z" {
			t.Fatalf("first: %v", recs[0])
		}
		if recs[1]["message"] != "part one, part two" || recs[1]["stream"] != "stderr" || recs[1]["ts"] != "2026-12-02T10:00:01Z" {
			t.Fatalf("joined: %v", recs[1])
		}
		if recs[2]["message"] != "garbage line" || recs[2]["parse_error"] != true {
			t.Fatalf("not cri: %v", recs[2])
		}
		h.write("a.log", "2026-12-02T10:00:04Z stdout F  done\n")
		recs = h.wait(4)
		if recs[3]["message"] != "waits done" || recs[3]["offset"] != float64(len("2026-12-02T10:00:00.123456789Z stdout F hello\n"+
			"2026-12-02T10:00:01Z stderr P part one, \n2026-12-02T10:00:02Z stderr F part two\ngarbage line\n")) {
			t.Fatalf("last: %v", recs[3])
		}
	})
}
