package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockName is the file in data_dir that one process at a time holds a lock
// on. The outbox keeps counts and leases in memory, so two processes writing
// one outbox would hand out the same records twice.
const lockName = "outboxd.lock"

// errLocked says the data directory is in use.
var errLocked = errors.New("data directory in use")

// lockDataDir takes the lock of dir, or fails with errLocked naming the pid
// that holds it. The lock is flock(2): the kernel drops it when the process
// dies, kill -9 included, so there is never a stale lock to clean up.
func lockDataDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The file says who runs outboxd: for its user alone, like the
	// outbox's files, also when an older version left it 0644.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: restrict to its owner: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by outboxd pid %s", errLocked, path, strings.TrimSpace(string(b[:n])))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
