//go:build unix

package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/outboxd/outboxd/outbox"
)

// umask0 clears the umask of the test process and the daemons it starts.
func umask0(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
}

func wantMode(t *testing.T, want os.FileMode, files ...string) {
	t.Helper()
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			t.Errorf("stat %s: %v", f, err)
			continue
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", f, got, want)
		}
	}
}

func TestFileModes(t *testing.T) {
	t.Run("the daemon's outbox, WAL, shm, dead-letter file and lock are 0600 under umask 0", func(t *testing.T) {
		umask0(t)
		refuser := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "schema mismatch", 400) })
		srv := newServer(refuser)
		defer srv.Close()
		port := freePort(t)
		dataDir := filepath.Join(t.TempDir(), "data")
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, fmt.Appendf(nil, "data_dir: %s\ningest:\n  http:\n    listen: 127.0.0.1:%d\nsinks:\n  picky:\n    type: http\n    url: %s\n    linger: 10ms\n",
			dataDir, port, srv.URL), 0o600)
		startDaemon(t, cfgPath)
		postLines(t, port, "refused-%d", 3)
		db := filepath.Join(dataDir, "outbox.db")
		dlq := outbox.DLQPath(db)
		waitUntil(t, "the dead-letter file", func() bool { _, err := os.Stat(dlq + "-wal"); return err == nil })
		wantMode(t, 0o600, db, db+"-wal", db+"-shm", dlq, dlq+"-wal", dlq+"-shm", filepath.Join(dataDir, lockName))
		wantMode(t, 0o700, dataDir) // run creates it so; check warns when it is not
	})

	t.Run("a lock file left readable by others is restricted when taken", func(t *testing.T) {
		umask0(t)
		dir := t.TempDir()
		lock := filepath.Join(dir, lockName)
		if err := os.WriteFile(lock, []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		unlock, err := lockDataDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		wantMode(t, 0o600, lock)
	})
}
