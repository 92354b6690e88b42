package files

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
)

// fpMax is how many of a file's first bytes its fingerprint covers at most.
const fpMax = 1024

// fileID is a file's device and inode.
type fileID struct{ dev, ino uint64 }

func (id fileID) key() string { return fmt.Sprintf("%s%d:%d", markPrefix, id.dev, id.ino) }

// markPrefix starts the key of every file's mark; startedKey is the mark
// that says the files input ran before (read_from: end applies only to the
// files present at the very first start).
const (
	markPrefix = "file/"
	startedKey = "file-input/started"
)

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}
}

// position is a file's mark: what was committed of it, and how to know it
// again. It is stored as JSON in the outbox, in the same transaction as the
// records read up to Offset.
type position struct {
	Path  string `json:"path"` // where it was when last read
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	FPLen int    `json:"fp_len"` // the fingerprint covers the first FPLen bytes
	FP    string `json:"fp"`     // hex SHA-256 of them, first 16 bytes
	// Short are the fingerprints of the first fpLadder[i] bytes, for each
	// length below FPLen: a copy shorter than FPLen is still known.
	Short  []string `json:"short,omitempty"`
	Offset int64    `json:"offset"` // end of the last record committed
	// Before is what the file held before its last truncations
	// (copytruncate), newest first: a new file whose first bytes match one
	// is its copy, and is read from that one's Offset on, not from 0.
	Before []copied `json:"before,omitempty"`
}

// keepCopies is how many truncations a file's mark remembers: copies found
// late (logrotate may rotate again before a scan) are still known.
const keepCopies = 4

// truncatedNow returns p as a file truncated now: read from 0, with what it
// held before among its Before.
func (p position) truncatedNow() position {
	old := copied{FPLen: p.FPLen, FP: p.FP, Offset: p.Offset, Short: p.Short}
	p.Before = append([]copied{old}, p.Before[:min(len(p.Before), keepCopies-1)]...)
	p.Offset, p.FPLen, p.FP, p.Short = 0, 0, fpOf(nil), nil
	return p
}

// copyOf returns the Before entry whose first bytes f (size long) holds, if
// any: all of its fingerprint, or, for a copy shorter than that (made before
// the original's last lines were written), the longest short one it covers.
func (p position) copyOf(f *os.File, size int64) (copied, bool) {
	for _, b := range p.Before {
		if b.FPLen > 0 && size >= int64(b.FPLen) && matches(f, b.FPLen, b.FP) {
			return b, true
		}
		for i := len(b.Short) - 1; i >= 0; i-- {
			if int64(fpLadder[i]) <= size {
				if matches(f, fpLadder[i], b.Short[i]) {
					return b, true
				}
				break
			}
		}
	}
	return copied{}, false
}

// partialCopy: f (size long) may be a copy of one of p's Before still
// being written: it is shorter than that copy will be, and its first bytes,
// as far as a fingerprint covers them, are that content's. A file that
// starts otherwise is not held back.
func (p position) partialCopy(f *os.File, size int64) bool {
	for _, b := range p.Before {
		if size >= max(int64(b.FPLen), b.Offset) {
			continue
		}
		switch {
		case len(b.Short) > 0 && size >= int64(fpLadder[0]):
			if matches(f, fpLadder[0], b.Short[0]) {
				return true
			}
		case b.FPLen > 0 && size >= int64(b.FPLen):
			if matches(f, b.FPLen, b.FP) {
				return true
			}
		default:
			return true // too short to tell yet
		}
	}
	return false
}

// copied is a truncated file's old content, as its copy is recognised.
type copied struct {
	FPLen  int      `json:"fp_len"`
	FP     string   `json:"fp"`
	Offset int64    `json:"offset"`
	Short  []string `json:"short,omitempty"`
}

// fpLadder are the lengths of a file's short fingerprints.
var fpLadder = []int{64, 128, 256, 512}

// fingerprints hashes the first bytes of f, up to fpMax, and each ladder
// length below what it read. first is what it read.
func fingerprints(f *os.File) (fp string, n int, short []string, first []byte, err error) {
	buf := make([]byte, fpMax)
	n, err = f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return "", 0, nil, nil, err
	}
	for _, l := range fpLadder {
		if l < n {
			short = append(short, fpOf(buf[:l]))
		}
	}
	return fpOf(buf[:n]), n, short, buf[:n], nil
}

func (p position) id() fileID { return fileID{p.Dev, p.Ino} }

// same reports whether p and q are equal (Before compared by content).
func (p position) same(q position) bool {
	return p.Path == q.Path && p.Dev == q.Dev && p.Ino == q.Ino && p.FPLen == q.FPLen && p.FP == q.FP &&
		p.Offset == q.Offset && slices.Equal(p.Short, q.Short) && slices.EqualFunc(p.Before, q.Before, func(a, b copied) bool {
		return a.FPLen == b.FPLen && a.FP == b.FP && a.Offset == b.Offset && slices.Equal(a.Short, b.Short)
	})
}

func (p position) encode() []byte {
	b, _ := json.Marshal(p)
	return b
}

func decodePosition(b []byte) (position, error) {
	var p position
	err := json.Unmarshal(b, &p)
	return p, err
}

// fingerprint hashes the first n bytes of f. It returns fewer when the
// file is shorter, with the length covered.
func fingerprint(f *os.File, n int) (string, int, error) {
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return "", 0, err
	}
	return fpOf(buf[:got]), got, nil
}

func fpOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// matches reports whether f's first fpLen bytes hash to fp: the file holds
// what was fingerprinted, at least.
func matches(f *os.File, fpLen int, fp string) bool {
	got, n, err := fingerprint(f, fpLen)
	return err == nil && n == fpLen && got == fp
}

// MarkPrefix starts the key of every file's mark in the outbox.
const MarkPrefix = markPrefix

// Stored lists the files whose positions marks (read from an outbox with
// that prefix) hold, by path, each with its committed offset and the size
// the file has now: -1 when the path is gone or now names another file.
func Stored(marks map[string][]byte) []FileState {
	var out []FileState
	for _, v := range marks {
		p, err := decodePosition(v)
		if err != nil {
			continue
		}
		size := int64(-1)
		if info, err := os.Stat(p.Path); err == nil && idOf(info) == p.id() {
			size = info.Size()
		}
		out = append(out, FileState{Path: p.Path, Offset: p.Offset, Size: size})
	}
	slices.SortFunc(out, func(a, b FileState) int { return strings.Compare(a.Path, b.Path) })
	return out
}
