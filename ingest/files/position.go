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
	Path   string `json:"path"` // where it was when last read
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	FPLen  int    `json:"fp_len"` // the fingerprint covers the first FPLen bytes
	FP     string `json:"fp"`     // hex SHA-256 of them, first 16 bytes
	Offset int64  `json:"offset"` // end of the last record committed
	// Before is what the file held before it was last truncated
	// (copytruncate): a new file whose first bytes match it is the copy, and
	// is read from Before.Offset on, not from 0.
	Before *copied `json:"before,omitempty"`
}

// copied is a truncated file's old content, as its copy is recognised.
type copied struct {
	FPLen  int    `json:"fp_len"`
	FP     string `json:"fp"`
	Offset int64  `json:"offset"`
}

func (p position) id() fileID { return fileID{p.Dev, p.Ino} }

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
