// Package powerfs is a pass-through FUSE file system that can simulate a
// power cut, for tests of what "durable" really means.
//
// Every write goes through to a backing directory, but powerfs remembers,
// per file, what each write overwrote and how long the file was at its last
// fsync. Cut puts the overwritten bytes back and truncates each file to its
// last synced size: everything that was never fsynced is gone, the harshest
// disk a program may meet. Directory entries are not modelled (a file that
// was created stays).
//
// A cut is meant to be used as: kill -9 the program, Unmount, Cut, Mount
// again, start the program. Mounting needs root and /dev/fuse.
package powerfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FS is a power-cut file system over a backing directory.
type FS struct {
	backing    string
	mountpoint string
	server     *fuse.Server

	mu    sync.Mutex
	files map[string]*fileLog // by path relative to the root
}

// fileLog is what a power cut would undo in one file.
type fileLog struct {
	syncedSize int64
	undo       []undoRecord // in write order
}

type undoRecord struct {
	off int64
	old []byte // the bytes that were there; shorter than the write past EOF
}

// New returns an FS over backing. Mount it before use.
func New(backing, mountpoint string) *FS {
	return &FS{backing: backing, mountpoint: mountpoint, files: map[string]*fileLog{}}
}

// Mount mounts the file system at the mountpoint.
func (p *FS) Mount() error {
	root := &fs.LoopbackRoot{Path: p.backing}
	var st syscall.Stat_t
	if err := syscall.Stat(p.backing, &st); err != nil {
		return fmt.Errorf("powerfs: stat %s: %w", p.backing, err)
	}
	root.Dev = uint64(st.Dev)
	// Every node below the root is wrapped by the root's WrapChild.
	root.RootNode = &node{LoopbackNode: &fs.LoopbackNode{RootData: root}, pfs: p}
	zero := time.Duration(0)
	server, err := fs.Mount(p.mountpoint, root.RootNode, &fs.Options{
		// No kernel caching of names and attributes: after a cut the sizes
		// change under the kernel's feet.
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "powerfs", Name: "powerfs"},
	})
	if err != nil {
		return fmt.Errorf("powerfs: mount %s: %w", p.mountpoint, err)
	}
	p.server = server
	return nil
}

// Unmount unmounts the file system; its users must have closed their files.
func (p *FS) Unmount() error {
	if p.server == nil {
		return nil
	}
	var err error
	for range 50 { // a killed process's files may take a moment to be released
		if err = p.server.Unmount(); err == nil {
			p.server.Wait()
			p.server = nil
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("powerfs: unmount %s: %w", p.mountpoint, err)
}

// CutStats says what a cut threw away.
type CutStats struct {
	Files        int   // files that had unsynced changes
	BytesUndone  int64 // overwritten bytes put back
	BytesTrimmed int64 // bytes cut off past the last synced size
}

// PowerCut is a whole power cut as the processes using the file system see
// it: the mount goes away, every write not fsynced is undone, and the file
// system comes back. Kill the processes first.
func (p *FS) PowerCut() (CutStats, error) {
	if err := p.Unmount(); err != nil {
		return CutStats{}, err
	}
	st, err := p.Cut()
	if err != nil {
		return st, err
	}
	return st, p.Mount()
}

// Cut simulates the power cut on the backing files. Call it unmounted.
func (p *FS) Cut() (CutStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var st CutStats
	for rel, fl := range p.files {
		if len(fl.undo) == 0 {
			continue
		}
		if err := fl.revert(filepath.Join(p.backing, rel), &st); err != nil {
			return st, err
		}
		st.Files++
	}
	p.files = map[string]*fileLog{}
	return st, nil
}

func (fl *fileLog) revert(path string, st *CutStats) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: cut %s: %w", path, err)
	}
	defer f.Close()
	for _, u := range slices.Backward(fl.undo) {
		if _, err := f.WriteAt(u.old, u.off); err != nil {
			return fmt.Errorf("powerfs: cut %s: %w", path, err)
		}
		st.BytesUndone += int64(len(u.old))
	}
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("powerfs: cut %s: %w", path, err)
	}
	if info.Size() > fl.syncedSize {
		st.BytesTrimmed += info.Size() - fl.syncedSize
	}
	if err := f.Truncate(fl.syncedSize); err != nil {
		return fmt.Errorf("powerfs: cut %s: %w", path, err)
	}
	return f.Sync()
}

// logFor returns the log of rel, starting it with the file's current size,
// which is durable as far as this run knows. Called with p.mu held.
func (p *FS) logFor(rel string, fd int) *fileLog {
	fl, ok := p.files[rel]
	if !ok {
		var st unix.Stat_t
		_ = unix.Fstat(fd, &st)
		fl = &fileLog{syncedSize: st.Size}
		p.files[rel] = fl
	}
	return fl
}

// beforeChange records what [off, off+n) holds now. Called with p.mu held.
func (p *FS) beforeChange(rel string, fd int, off, n int64) {
	fl := p.logFor(rel, fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || off >= st.Size {
		fl.undo = append(fl.undo, undoRecord{off: off})
		return
	}
	n = min(n, st.Size-off)
	old := make([]byte, n)
	got, _ := unix.Pread(fd, old, off)
	fl.undo = append(fl.undo, undoRecord{off: off, old: old[:max(got, 0)]})
}

func (p *FS) synced(rel string, fd int) {
	fl := p.logFor(rel, fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil {
		fl.syncedSize = st.Size
	}
	fl.undo = nil
}

// node is a loopback node whose open files are tracked.
type node struct {
	*fs.LoopbackNode
	pfs *FS
}

var _ fs.NodeWrapChilder = (*node)(nil)

// WrapChild makes every node the loopback creates one of ours, so that its
// writes and syncs are logged.
func (n *node) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), pfs: n.pfs}
}

func (n *node) rel() string { return n.Path(n.Root()) }

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, ff, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.pfs.wrap(n.rel(), fh.(*fs.LoopbackFile)), ff, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, ff, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return in, n.pfs.wrap(filepath.Join(n.rel(), name), fh.(*fs.LoopbackFile)), ff, 0
}

// Setattr records a truncation before it happens.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if tf, ok := f.(*file); ok {
		f = tf.lf
	}
	if size, ok := in.GetSize(); ok {
		path := filepath.Join(n.pfs.backing, n.rel())
		fd, err := unix.Open(path, unix.O_RDONLY, 0)
		if err == nil {
			n.pfs.mu.Lock()
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil && int64(size) < st.Size {
				n.pfs.beforeChange(n.rel(), fd, int64(size), st.Size-int64(size))
			} else {
				n.pfs.logFor(n.rel(), fd)
			}
			n.pfs.mu.Unlock()
			unix.Close(fd)
		}
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

// file wraps a loopback file. It forwards each operation by name, on
// purpose not by embedding: an embedded LoopbackFile would also offer the
// kernel its passthrough fd and Writev, and writes would bypass the log.
type file struct {
	lf  *fs.LoopbackFile
	fd  int
	rel string
	pfs *FS
}

func (p *FS) wrap(rel string, lf *fs.LoopbackFile) *file {
	fd, _ := lf.PassthroughFd()
	return &file{lf: lf, fd: fd, rel: rel, pfs: p}
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileSetattrer = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
	_ fs.FileGetlker   = (*file)(nil)
	_ fs.FileSetlker   = (*file)(nil)
	_ fs.FileSetlkwer  = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
)

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.pfs.mu.Lock()
	defer f.pfs.mu.Unlock()
	f.pfs.beforeChange(f.rel, f.fd, off, int64(len(data)))
	return f.lf.Write(ctx, data, off)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f.pfs.mu.Lock()
	defer f.pfs.mu.Unlock()
	errno := f.lf.Fsync(ctx, flags)
	if errno == 0 {
		f.pfs.synced(f.rel, f.fd)
	}
	return errno
}

func (f *file) Flush(ctx context.Context) syscall.Errno   { return f.lf.Flush(ctx) }
func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Setattr(ctx, in, out)
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

func (f *file) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return f.lf.Getlk(ctx, owner, lk, flags, out)
}

func (f *file) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlk(ctx, owner, lk, flags)
}

func (f *file) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlkw(ctx, owner, lk, flags)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	f.pfs.mu.Lock()
	defer f.pfs.mu.Unlock()
	f.pfs.logFor(f.rel, f.fd)
	return f.lf.Allocate(ctx, off, size, mode)
}
