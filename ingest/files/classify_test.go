package files

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outboxd/outboxd/config"
)

// A file that starts like a tracked file that a worker holds is not taken
// for a file of its own when rotate_wait passes: whether the tracked file
// was truncated (the new one its copy) is known only once the worker lets
// go. (Deciding early read a copytruncate copy from 0 again, on a loaded
// machine in the power-cut proof.)
func TestCopyWaitsForABusyOriginal(t *testing.T) {
	dir := t.TempDir()
	content := strings.Repeat("a line of the original\n", 100)
	orig := filepath.Join(dir, "app.log")
	os.WriteFile(orig, []byte(content), 0o644)
	of, err := os.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	fp, n, short, _, err := fingerprints(of)
	if err != nil {
		t.Fatal(err)
	}
	in := &input{conf: config.FileInput{RotateWait: time.Second}}
	oinfo, _ := of.Stat()
	o := &tracked{id: idOf(oinfo), in: in, f: of, path: orig, busy: true,
		pos: position{FP: fp, FPLen: n, Short: short, Offset: int64(len(content))}}
	tl := &Tailer{files: map[fileID]*tracked{o.id: o}}
	// copytruncate: the copy, then the original truncated and written on.
	cp := filepath.Join(dir, "app.log.1")
	os.WriteFile(cp, []byte(content), 0o644)
	os.WriteFile(orig, []byte("new\n"), 0o644)
	cf, err := os.Open(cp)
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	cinfo, _ := cf.Stat()
	m := found{path: cp, in: in, info: cinfo, id: idOf(cinfo)}
	now := time.Now()
	cw := &copyWait{path: cp, in: in, seenAt: now.Add(-2 * time.Second), size: cinfo.Size()} // rotate_wait passed
	if _, decided := tl.classify(cf, m, cw, now); decided {
		t.Fatal("decided while the original's worker holds it")
	}
	o.busy = false // the worker let go: the truncation shows, and the copy is read from where the original was left
	if from, decided := tl.classify(cf, m, cw, now); !decided || from != int64(len(content)) {
		t.Fatalf("after the worker: from %d, decided %v; want %d, true", from, decided, len(content))
	}
	o.busy = true // a worker that never lets go: decided after busyWaitFactor rotate_waits
	cw.seenAt = now.Add(-busyWaitFactor * time.Second)
	if _, decided := tl.classify(cf, m, cw, now); !decided {
		t.Fatal("still waiting past the bound")
	}
}
