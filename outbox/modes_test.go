//go:build unix

package outbox

import (
	"os"
	"syscall"
	"testing"
)

// umask0 clears the process's umask for the test, so that only what the
// code asks for decides a new file's mode.
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
	t.Run("the database, its WAL and shm, and the dead-letter files are 0600 under umask 0", func(t *testing.T) {
		umask0(t)
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "q", Options[int]{})
		if err := q.SendBatch(ctx, []int{1, 2}); err != nil {
			t.Fatal(err)
		}
		l, err := q.Claim(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.DeadLetter(ctx, map[int]string{0: "refused"}); err != nil {
			t.Fatal(err)
		}
		dlq := DLQPath(path)
		wantMode(t, 0o600, path, path+"-wal", path+"-shm", path+"-reserve", dlq, dlq+"-wal", dlq+"-shm")
	})

	t.Run("an existing database that others could read is restricted to its owner", func(t *testing.T) {
		umask0(t)
		ctx := testCtx(t)
		path := tempDB(t)
		q := mustOpen(t, path, "q", Options[int]{})
		if err := q.Send(ctx, 1); err != nil {
			t.Fatal(err)
		}
		q.Close()
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		q = mustOpen(t, path, "q", Options[int]{})
		if err := q.Send(ctx, 2); err != nil {
			t.Fatal(err)
		}
		wantMode(t, 0o600, path, path+"-wal", path+"-shm")
		if n := mustLen(t, q); n != 2 {
			t.Fatalf("Len = %d after the reopen", n)
		}
	})
}
