package outbox

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// smallFS mounts a tmpfs of size bytes for the test, or skips when this
// machine does not allow it (not root, no mount).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func TestDiskFull(t *testing.T) {
	t.Run("a full disk refuses new records, keeps draining, and takes records again once drained", func(t *testing.T) {
		ctx := testCtx(t)
		path := filepath.Join(smallFS(t, "24m"), "q.db")
		q := mustOpen(t, path, "events", Options[[]byte]{})
		if _, err := os.Stat(path + "-reserve"); err != nil {
			t.Fatalf("no reserve file: %v", err)
		}
		batch := make([][]byte, 100)
		for i := range batch {
			batch[i] = make([]byte, 1024)
			batch[i][0] = byte(i)
		}
		accepted := 0
		var err error
		for range 10_000 {
			if err = q.SendBatch(ctx, batch); err != nil {
				break
			}
			accepted += len(batch)
		}
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("after %d records: err = %v, want ErrDiskFull", accepted, err)
		}
		if n := mustLen(t, q); n != accepted {
			t.Fatalf("Len = %d, want the %d accepted records", n, accepted)
		}
		if err := q.Writable(); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("Writable on the full disk: %v", err)
		}
		if err := q.Send(ctx, batch[0]); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("a send on the full disk: %v", err)
		}
		t.Logf("disk full after %d records of 1 KiB", accepted)

		// Draining works on the full disk: the reserve gave the deletes room.
		for drained := 0; drained < accepted; {
			l, err := q.Claim(ctx, 500)
			if err != nil {
				t.Fatalf("claim on a full disk: %v", err)
			}
			for i, r := range l.Items() {
				if len(r) != 1024 || r[0] != byte((drained+i)%len(batch)) {
					t.Fatalf("record %d is damaged", drained+i)
				}
			}
			if err := l.Ack(ctx); err != nil {
				t.Fatalf("ack on a full disk after %d drained: %v", drained, err)
			}
			drained += l.Len()
		}

		// Drained, the outbox gives the space back and takes records again.
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := q.SendBatch(ctx, batch)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrDiskFull) || time.Now().After(deadline) {
				t.Fatalf("send after draining: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := mustLen(t, q); n != len(batch) {
			t.Fatalf("Len = %d, want %d", n, len(batch))
		}
		if err := q.Writable(); err != nil {
			t.Fatalf("Writable after recovery: %v", err)
		}
	})
}

// An idle outbox whose backlog drained takes records again with no write to
// notice it: Writable (what /readyz reports) clears by itself.
func TestDiskFullRecoversIdle(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(smallFS(t, "24m"), "q.db")
	q := mustOpen(t, path, "events", Options[[]byte]{})
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = make([]byte, 1024)
	}
	for range 10_000 {
		if err := q.SendBatch(ctx, batch); err != nil {
			if !errors.Is(err, ErrDiskFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if !errors.Is(q.Writable(), ErrDiskFull) {
		t.Fatal("the disk did not fill")
	}
	for mustLen(t, q) > 0 {
		l, err := q.Claim(ctx, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// No write from here: only the committer's own recheck can notice.
	deadline := time.Now().Add(15 * time.Second)
	for q.Writable() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still refusing 15 s after the backlog drained, with no write: %v", q.Writable())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
