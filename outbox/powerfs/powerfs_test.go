package powerfs

import (
	"os"
	"path/filepath"
	"testing"
)

// MountForTest mounts an FS over a fresh backing directory, or skips the test
// where this machine cannot mount FUSE (no root, no /dev/fuse).
func mountForTest(t *testing.T) (*FS, string) {
	t.Helper()
	backing, mnt := t.TempDir(), t.TempDir()
	p := New(backing, mnt)
	if err := p.Mount(); err != nil {
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	t.Cleanup(func() { p.Unmount() })
	return p, mnt
}

func TestCut(t *testing.T) {
	t.Run("a cut keeps what was fsynced and loses everything after it", func(t *testing.T) {
		p, mnt := mountForTest(t)
		path := filepath.Join(mnt, "f")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("hello world"), 0)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("HELLO"), 0)      // overwrite, not synced
		f.WriteAt([]byte(" and more"), 11) // append, not synced
		f.Close()
		if got, _ := os.ReadFile(path); string(got) != "HELLO world and more" {
			t.Fatalf("before the cut: %q", got)
		}
		st, err := p.PowerCut()
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != "hello world" {
			t.Fatalf("after the cut: %q, want %q", got, "hello world")
		}
		if st.Files != 1 || st.BytesTrimmed != 9 {
			t.Fatalf("stats = %+v", st)
		}
	})

	t.Run("a file never synced is cut to the size it had when first touched", func(t *testing.T) {
		p, mnt := mountForTest(t)
		path := filepath.Join(mnt, "g")
		os.WriteFile(path, []byte("unsynced"), 0o600)
		p.Unmount()
		p.Cut()
		p.Mount()
		if got, err := os.ReadFile(path); err != nil || len(got) != 0 {
			t.Fatalf("after the cut: %q, %v", got, err)
		}
	})

	t.Run("a truncation that was not synced is undone", func(t *testing.T) {
		p, mnt := mountForTest(t)
		path := filepath.Join(mnt, "h")
		f, _ := os.Create(path)
		f.Write([]byte("0123456789"))
		f.Sync()
		f.Truncate(4)
		f.Close()
		p.Unmount()
		p.Cut()
		p.Mount()
		if got, _ := os.ReadFile(path); string(got) != "0123456789" {
			t.Fatalf("after the cut: %q", got)
		}
	})
}
