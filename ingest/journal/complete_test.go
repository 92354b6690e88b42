package journal

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// lookup3.c's own driver prints these for hashlittle2 with c = b = 0.
func TestHashlittle2(t *testing.T) {
	for _, tc := range []struct {
		in   string
		c, b uint32
	}{
		{"", 0xdeadbeef, 0xdeadbeef},
		{"Four score and seven years ago", 0x17770551, 0xce7226e6},
	} {
		if c, b := hashlittle2([]byte(tc.in)); c != tc.c || b != tc.b {
			t.Errorf("hashlittle2(%q) = %08x %08x, want %08x %08x", tc.in, c, b, tc.c, tc.b)
		}
	}
}

// Every entry journalctl prints of a real journal adds up to its cursor's
// hash, and none does with a field left out: what the reader relies on to
// tell an entry read while it was being written.
func TestCompleteAgainstRealCursors(t *testing.T) {
	needJournal(t)
	dir := t.TempDir()
	long := strings.Repeat("0123456789abcdef", 100<<10/16)
	es := []*Entry{
		entry(boot1, 0, Field{"MESSAGE", []byte("first\nsecond \xff\x00 end")}, Field{"BIN", []byte("a\xffb")}),
		entry(boot1, 1, Field{"MESSAGE", []byte(long)}, Field{"LONG", []byte(long)}),
		entry(boot1, 2, Field{"FOO", []byte("1")}, Field{"FOO", []byte("2")}),
		entry(boot1, 3, Field{"SAME", []byte("x")}, Field{"SAME", []byte("x")}), // stored once
		entry(boot2, 4, Field{"MESSAGE", []byte("")}),
	}
	es = append(es, entries(boot2, 5, 300)...)
	appendJournal(t, dir, es)
	out, err := exec.Command("journalctl", "--directory="+dir, "--merge", "-o", "export").Output()
	if err != nil {
		t.Fatal(err)
	}
	x := newExportReader(bytes.NewReader(out), 64<<10)
	n := 0
	for {
		e, err := x.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		c, _ := e.Get("__CURSOR")
		if !complete(e, c, new([]byte)) {
			t.Errorf("entry %d does not add up to its cursor %s: %q", n, c, e.Fields)
			continue
		}
		for i, f := range e.Fields {
			if strings.HasPrefix(f.Name, "__") || f.Name == "_BOOT_ID" || f.Name == "SAME" {
				continue // SAME's two hashes cancel out: the cursor cannot tell it is there
			}
			part := &Entry{Fields: slices.Delete(slices.Clone(e.Fields), i, i+1)}
			if complete(part, c, new([]byte)) {
				t.Errorf("entry %d without %s still adds up to its cursor", n, f.Name)
			}
		}
	}
	if n != len(es) {
		t.Errorf("journalctl printed %d entries, want %d", n, len(es))
	}
}

// dropMessage writes a journalctl wrapper that leaves the field line out
// of what the real journalctl prints for its first runs without --follow
// (times < 0: every run): an entry read while it was being written looks
// so (systemd/systemd#40263).
func dropMessage(t *testing.T, line string, times int) string {
	t.Helper()
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	script := fmt.Sprintf(`#!/bin/sh
case "$*" in *--output=export*) ;; *) exec journalctl "$@";; esac
case "$*" in *--follow*) exec journalctl "$@";; esac
n=$(cat %[1]s 2>/dev/null || echo 0); echo $((n+1)) > %[1]s
if [ %[2]d -lt 0 ] || [ "$n" -lt %[2]d ]; then journalctl "$@" | grep -vx '%[3]s'; exit 0; fi
exec journalctl "$@"
`, count, times, line)
	wrapper := filepath.Join(dir, "journalctl")
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

func TestIncompleteEntry(t *testing.T) {
	needJournal(t)
	t.Run("an entry printed without a field is read again until it is whole", func(t *testing.T) {
		dir := t.TempDir()
		appendJournal(t, dir, entries(boot1, 0, 20))
		st := newMemStore()
		run := start(t, Config{Input: dirInput(dir, "beginning"), Journalctl: dropMessage(t, "MESSAGE=line 5", 2)}, st)
		waitFor(t, "20 records", func() bool { return st.count() >= 20 })
		time.Sleep(100 * time.Millisecond)
		run.stop()
		if got := messages(st.records(t)); !slices.Equal(got, lines(0, 20)) {
			t.Fatalf("messages %q, want %q", got, lines(0, 20))
		}
		if s := run.r.Stats(); s.Rereads.Load() != 2 || s.Partial.Load() != 0 {
			t.Errorf("%d rereads, %d partial; want 2 and 0", s.Rereads.Load(), s.Partial.Load())
		}
	})
	t.Run("an entry that never adds up is stored as read after a few reads", func(t *testing.T) {
		dir := t.TempDir()
		appendJournal(t, dir, entries(boot1, 0, 20))
		st := newMemStore()
		run := start(t, Config{Input: dirInput(dir, "beginning"), Journalctl: dropMessage(t, "MESSAGE=line 5", -1)}, st)
		waitFor(t, "20 records", func() bool { return st.count() >= 20 })
		time.Sleep(100 * time.Millisecond)
		run.stop()
		want := lines(0, 20)
		want[5] = ""
		if got := messages(st.records(t)); !slices.Equal(got, want) {
			t.Fatalf("messages %q, want %q", got, want)
		}
		if s := run.r.Stats(); s.Rereads.Load() != maxRereads || s.Partial.Load() != 1 {
			t.Errorf("%d rereads, %d partial; want %d and 1", s.Rereads.Load(), s.Partial.Load(), maxRereads)
		}
	})
}

// An entry as journalctl 252 printed it while systemd-journal-remote was
// appending it (2026-12-02): MESSAGE missing. Its cursor's hash tells.
func TestCompleteCaughtInTheAct(t *testing.T) {
	cursor := []byte("s=393d052adbe641939a2717c053e875d7;i=b009c;b=00000000000000000000000000000091;m=1a42db;t=60a241829409b;x=e3d63defdf85d045")
	e := &Entry{Fields: []Field{
		{"__CURSOR", cursor},
		{"__REALTIME_TIMESTAMP", []byte("1700000000721051")},
		{"__MONOTONIC_TIMESTAMP", []byte("1721051")},
		{"_BOOT_ID", []byte("00000000000000000000000000000091")},
		{"_HOSTNAME", []byte("proof")},
		{"SYSLOG_IDENTIFIER", []byte("proof")},
		{"PRIORITY", []byte("6")},
	}}
	if complete(e, cursor, new([]byte)) {
		t.Error("the entry without its MESSAGE adds up")
	}
	e.Fields = append(e.Fields, Field{"MESSAGE", []byte("n=721051")})
	if !complete(e, cursor, new([]byte)) {
		t.Error("the whole entry does not add up")
	}
}

// The check's cost per entry of a service's shape (18 fields, a message of
// about 120 bytes): go test -run '^$' -bench Complete ./ingest/journal/
func BenchmarkComplete(b *testing.B) {
	e := entry(boot1, 1, Field{"MESSAGE", []byte(strings.Repeat("m", 120))})
	for _, f := range []string{"PRIORITY=6", "SYSLOG_FACILITY=3", "SYSLOG_IDENTIFIER=nginx", "_PID=4242", "_UID=33", "_GID=33",
		"_COMM=nginx", "_EXE=/usr/sbin/nginx", "_CMDLINE=nginx: worker process", "_CAP_EFFECTIVE=0", "_SELINUX_CONTEXT=unconfined",
		"_SYSTEMD_CGROUP=/system.slice/nginx.service", "_SYSTEMD_UNIT=nginx.service", "_SYSTEMD_SLICE=system.slice", "_TRANSPORT=stdout"} {
		name, value, _ := strings.Cut(f, "=")
		e.Fields = append(e.Fields, Field{name, []byte(value)})
	}
	var sum uint64
	var buf []byte
	for _, f := range e.Fields {
		if !strings.HasPrefix(f.Name, "__") {
			buf = append(append(append(buf[:0], f.Name...), '='), f.Value...)
			sum ^= jenkinsHash64(buf)
		}
	}
	cursor := fmt.Appendf(nil, "s=0;i=1;b=%s;m=1;t=1;x=%x", boot1, sum)
	scratch := new([]byte)
	if !complete(e, cursor, scratch) {
		b.Fatal("the entry does not add up")
	}
	b.ReportAllocs()
	for b.Loop() {
		complete(e, cursor, scratch)
	}
}
