package files

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// want is the messages of numbered lines, in order.
func want(prefix string, from, n int) []string {
	return strings.Split(strings.TrimSuffix(numbered(prefix, from, n), "\n"), "\n")
}

func TestRotation(t *testing.T) {
	t.Run("rename and create: the old file is read to its end, the new one from 0", func(t *testing.T) {
		h := newHarness(t, entry("DIR/app.log"))
		h.write("app.log", numbered("line", 0, 10))
		h.start()
		h.wait(10)
		// The writer still has the old file open: it writes on after the
		// rename, until it reopens.
		w, err := os.OpenFile(h.path("app.log"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(h.path("app.log"), h.path("app.log.1")); err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(w, numbered("line", 10, 5)+"no newline")
		w.Close()
		h.write("app.log", numbered("line", 15, 5))
		h.wait(21)
		got := h.messages()
		if !slices.Equal(got[:10], want("line", 0, 10)) {
			t.Fatalf("messages: %v", got)
		}
		rest := slices.Clone(got[10:])
		slices.Sort(rest)
		exp := append(want("line", 10, 10), "no newline")
		slices.Sort(exp)
		if !slices.Equal(rest, exp) {
			t.Fatalf("after the rotation: %v", got[10:])
		}
		for _, r := range h.got[10:] {
			if r["message"] == "no newline" && r["path"] != h.path("app.log.1") {
				t.Fatalf("the rotated file's records name %v, want its new path", r["path"])
			}
		}
		if m := h.marks(); len(m) != 1 {
			t.Fatalf("the rotated file was not forgotten: %v", m)
		}
	})

	t.Run("a renamed file that still matches the glob is not read again", func(t *testing.T) {
		h := newHarness(t, entry("DIR/app.log*"))
		h.write("app.log", numbered("line", 0, 10))
		h.start()
		h.wait(10)
		os.Rename(h.path("app.log"), h.path("app.log.1"))
		h.write("app.log", numbered("line", 10, 10))
		h.write("app.log.1", numbered("line", 20, 1)) // still written through an old handle
		h.wait(21)
		h.stop()
		h.start() // and not after a restart either
		h.wait(21)
	})

	t.Run("copytruncate: read from 0 after the truncation; the copy is read only where the original was left", func(t *testing.T) {
		h := newHarness(t, entry("DIR/app.log*"))
		h.write("app.log", numbered("line", 0, 50))
		h.start()
		h.wait(50)
		h.write("app.log", numbered("line", 50, 5)) // perhaps not read before the copy
		copyFile(t, h.path("app.log"), h.path("app.log.1"))
		if err := os.Truncate(h.path("app.log"), 0); err != nil {
			t.Fatal(err)
		}
		h.write("app.log", numbered("line", 55, 5))
		h.wait(60)
		if got := h.sortedMessages(); !slices.Equal(got, sorted(want("line", 0, 60))) {
			t.Fatalf("messages: %v", got)
		}
		h.stop()
		h.start()
		h.wait(60)
	})

	t.Run("copytruncate seen before the copy: the copy waits for the truncation", func(t *testing.T) {
		e := entry("DIR/app.log*")
		e.RotateWait = 2 * time.Second
		h := newHarness(t, e)
		h.write("app.log", numbered("line", 0, 50))
		h.start()
		h.wait(50)
		copyFile(t, h.path("app.log"), h.path("app.log.1"))
		time.Sleep(300 * time.Millisecond) // scans see the copy first
		os.Truncate(h.path("app.log"), 0)
		h.write("app.log", numbered("line", 50, 3))
		h.wait(53)
	})

	t.Run("a file deleted while open is read to its end, then closed", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		h.write("gone.log", numbered("line", 0, 5))
		h.start()
		h.wait(5)
		w, _ := os.OpenFile(h.path("gone.log"), os.O_WRONLY|os.O_APPEND, 0)
		os.Remove(h.path("gone.log"))
		fmt.Fprint(w, numbered("line", 5, 5)+"tail")
		w.Close()
		h.wait(11)
		deadline := time.Now().Add(5 * time.Second)
		for len(openDeleted(t)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("still open: %v", openDeleted(t))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if m := h.marks(); len(m) != 0 {
			t.Fatalf("marks left: %v", m)
		}
	})

	t.Run("a mark whose inode now holds other bytes is a new file, read from 0", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		h.write("a.log", numbered("old", 0, 20))
		h.start()
		h.wait(20)
		h.stop()
		// The same inode with other content, longer than the old offset: as
		// when a deleted file's inode is reused by a new file.
		f, _ := os.OpenFile(h.path("a.log"), os.O_WRONLY, 0)
		fmt.Fprint(f, numbered("new", 0, 30))
		f.Close()
		h.start()
		h.wait(50)
		if got := h.messages()[20:]; !slices.Equal(got, want("new", 0, 30)) {
			t.Fatalf("messages: %v", got)
		}
	})

	t.Run("a file emptied and refilled past its old offset while running is read from 0", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		h.write("a.log", numbered("old", 0, 5))
		h.start()
		h.wait(5)
		f, _ := os.OpenFile(h.path("a.log"), os.O_WRONLY|os.O_TRUNC, 0)
		fmt.Fprint(f, numbered("new", 0, 10))
		f.Close()
		h.wait(15)
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestLogrotate drives real logrotate, in create and copytruncate modes,
// while a writer appends numbered lines: every line arrives once.
func TestLogrotate(t *testing.T) {
	bin, err := exec.LookPath("logrotate")
	if err != nil {
		t.Skip("logrotate is not installed (apt-get install logrotate)")
	}
	for _, mode := range []string{"create", "copytruncate"} {
		t.Run(mode, func(t *testing.T) {
			e := entry("DIR/app.log*")
			// A copy waits for its original's truncation at most this long:
			// on a loaded machine the truncation may be seen late.
			e.RotateWait = 2 * time.Second
			h := newHarness(t, e)
			conf := h.path("../logrotate.conf")
			os.WriteFile(conf, []byte(fmt.Sprintf("%s {\n  rotate 3\n  %s\n  missingok\n}\n", h.path("app.log"), mode)), 0o644)
			h.write("app.log", "")
			h.start()
			ctx, cancel := context.WithCancel(context.Background())
			written := make(chan int, 1)
			go func() { written <- appendLines(ctx, h.path("app.log"), mode == "create") }()
			for range 3 {
				time.Sleep(150 * time.Millisecond)
				out, err := exec.Command(bin, "-f", "-s", h.path("../logrotate.state"), conf).CombinedOutput()
				if err != nil {
					t.Fatalf("logrotate: %v: %s", err, out)
				}
			}
			time.Sleep(150 * time.Millisecond)
			cancel()
			n := <-written
			deadline := time.Now().Add(10 * time.Second)
			for len(h.records()) < n && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			seen := map[string]int{}
			for _, m := range h.messages() {
				seen[m]++
			}
			var lost, dup []string
			for _, m := range want("line", 0, n) {
				if seen[m] == 0 {
					lost = append(lost, m)
				}
				if seen[m] > 1 {
					dup = append(dup, m)
				}
			}
			t.Logf("%s: %d lines written, %d records, %d lost, %d duplicated", mode, n, len(h.got), len(lost), len(dup))
			if len(dup) > 0 {
				t.Errorf("duplicated: %v", dup)
			}
			// copytruncate loses, by design, what is written between the
			// copy and the truncation: at most one run of consecutive lines
			// per rotation. create loses nothing.
			if runs := countRuns(lost); mode == "create" && len(lost) > 0 || runs > 3 {
				t.Errorf("lost, in %d runs: %v", runs, lost)
			}
		})
	}
}

// countRuns counts the runs of consecutive numbers in lost ("line N").
func countRuns(lost []string) int {
	runs, last := 0, -2
	for _, m := range lost {
		var n int
		fmt.Sscanf(m, "line %d", &n)
		if n != last+1 {
			runs++
		}
		last = n
	}
	return runs
}

// appendLines writes numbered lines to path until ctx ends and returns how
// many. With reopen it reopens the path once logrotate created it anew (as a
// program told by logrotate's postrotate would); otherwise it writes through
// its O_APPEND handle, which copytruncate truncates under it. It writes a
// line every 200 µs or so.
func appendLines(ctx context.Context, path string, reopen bool) int {
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	n := 0
	for ctx.Err() == nil {
		if reopen { // once logrotate made the new file, as a program told by postrotate would
			if cur, err := os.Stat(path); err == nil {
				if mine, _ := f.Stat(); !os.SameFile(cur, mine) {
					if g, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err == nil {
						f.Close()
						f = g
					}
				}
			}
		}
		fmt.Fprintf(f, "line %d\n", n)
		n++
		time.Sleep(200 * time.Microsecond)
	}
	f.Close()
	return n
}

// TestInodeReuse deletes a file that was read and makes another, which the
// file system gives the same inode (ext4 and tmpfs do at once): the new
// file is read from 0, while outboxd was stopped and while it runs.
func TestInodeReuse(t *testing.T) {
	inode := func(path string) uint64 {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return idOf(info).ino
	}
	t.Run("while stopped", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		h.write("a.log", numbered("old", 0, 20))
		h.start()
		h.wait(20)
		h.stop()
		was := inode(h.path("a.log"))
		os.Remove(h.path("a.log"))
		h.write("b.log", numbered("new", 0, 30)) // longer than the old offset
		if inode(h.path("b.log")) != was {
			t.Skip("this file system did not reuse the inode")
		}
		h.start()
		h.wait(50)
		if got := h.messages()[20:]; !slices.Equal(got, want("new", 0, 30)) {
			t.Fatalf("messages: %v", got)
		}
	})
	t.Run("while running", func(t *testing.T) {
		h := newHarness(t, entry("DIR/*.log"))
		h.write("a.log", numbered("old", 0, 20))
		h.start()
		h.wait(20)
		was := inode(h.path("a.log"))
		os.Remove(h.path("a.log"))
		waitFor(t, "the deleted file closed", func() bool { return len(openDeleted(t)) == 0 })
		h.write("b.log", numbered("new", 0, 5))
		if inode(h.path("b.log")) != was {
			t.Skip("this file system did not reuse the inode")
		}
		h.wait(25)
		if got := h.messages()[20:]; !slices.Equal(got, want("new", 0, 5)) {
			t.Fatalf("messages: %v", got)
		}
	})
}
