package outbox

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
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
	t.Run("a full disk fails sends with ErrDiskFull, keeps what was stored, and recovers when space returns", func(t *testing.T) {
		ctx := testCtx(t)
		path := filepath.Join(smallFS(t, "4m"), "q.db")
		q := mustOpen(t, path, "events", Options[[]byte]{})
		batch := make([][]byte, 100)
		for i := range batch {
			batch[i] = make([]byte, 1024)
			batch[i][0] = byte(i)
		}
		accepted := 0
		var err error
		for range 1000 {
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
		t.Logf("disk full after %d records of 1 KiB", accepted)

		// Everything accepted is intact and readable on the full disk.
		l, err := q.Claim(ctx, accepted+1)
		if err != nil {
			t.Fatalf("claim on a full disk: %v", err)
		}
		if len(l.Items()) != accepted {
			t.Fatalf("claimed %d records, want %d", len(l.Items()), accepted)
		}
		for i, r := range l.Items() {
			if len(r) != 1024 || r[0] != byte(i%len(batch)) {
				t.Fatalf("record %d is damaged", i)
			}
		}

		// Room returns (the operator grows the file system): acks and sends
		// go through again without a restart.
		dir := filepath.Dir(path)
		if out, err := exec.Command("mount", "-o", "remount,size=16m", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot grow the tmpfs: %v: %s", err, out)
		}
		if err := l.Ack(ctx); err != nil {
			t.Fatalf("ack after space returned: %v", err)
		}
		if err := q.SendBatch(ctx, batch); err != nil {
			t.Fatalf("send after space returned: %v", err)
		}
		if n := mustLen(t, q); n != len(batch) {
			t.Fatalf("Len = %d, want %d", n, len(batch))
		}
	})
}
