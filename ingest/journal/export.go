package journal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Field is one field of a journal entry, in the order journalctl printed it.
type Field struct {
	Name  string
	Value []byte
}

// Entry is one journal entry. Its values share one buffer per entry.
type Entry struct {
	Fields []Field
	ids    []int32 // the reader's ids of the names (-1: none), when it read the entry
}

// Get returns the first value of name, and whether there is one.
func (e *Entry) Get(name string) ([]byte, bool) {
	for _, f := range e.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return nil, false
}

// maxField bounds one binary field's declared length: journald itself
// refuses entries over 768 MiB (DATA_SIZE_MAX); a larger length is a broken
// stream, not an entry.
const maxField = 768 << 20

// ErrFormat is a stream that is not journalctl's export format.
var ErrFormat = errors.New("journal: not the export format")

// exportReader parses journalctl -o export: each field is NAME=value\n, or
// NAME\n, a 64-bit little-endian length, that many bytes and \n (binary or
// multi-line values); an empty line ends an entry. Lines have no length
// limit (a 100 KiB field is one line).
type exportReader struct {
	r     *bufio.Reader
	names map[string]int32 // interned field names and their ids: few distinct, many entries
	list  []string         // the interned names by id
	line  []byte           // a line longer than the buffer, gathered
	off   int64            // bytes consumed, for errors

	entry Entry // what Next returns, reused
	buf   []byte
	spans []span
}

func newExportReader(r io.Reader, size int) *exportReader {
	return &exportReader{r: bufio.NewReaderSize(r, size), names: map[string]int32{}}
}

// buffered says whether bytes are waiting in the reader: the next Next
// returns without reading the pipe only then.
func (x *exportReader) buffered() int { return x.r.Buffered() }

// readLine returns the next line without its \n; the bytes are valid until
// the next read. A stream that ends inside a line is io.ErrUnexpectedEOF.
func (x *exportReader) readLine() ([]byte, error) {
	l, err := x.r.ReadSlice('\n')
	if err == nil {
		x.off += int64(len(l))
		return l[:len(l)-1], nil
	}
	x.line = append(x.line[:0], l...)
	for errors.Is(err, bufio.ErrBufferFull) {
		if len(x.line) > maxField {
			return nil, fmt.Errorf("%w: a line of over %d bytes at byte %d", ErrFormat, maxField, x.off)
		}
		l, err = x.r.ReadSlice('\n')
		x.line = append(x.line, l...)
	}
	x.off += int64(len(x.line))
	if err != nil {
		if err == io.EOF && len(x.line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return x.line[:len(x.line)-1], nil
}

// Next reads one entry. The entry and its values are the reader's, valid
// until the next call: callers copy what they keep. At the end of the
// stream between entries it returns io.EOF; a stream cut inside an entry
// is io.ErrUnexpectedEOF (journalctl killed mid-entry: that entry is read
// again from the stored cursor).
func (x *exportReader) Next() (*Entry, error) {
	buf := x.buf[:0]
	spans := x.spans[:0]
	defer func() {
		if cap(buf) > 4<<20 {
			buf = nil // one huge entry does not pin its buffer for good
		}
		x.buf, x.spans = buf, spans
	}()
	for {
		l, err := x.readLine()
		if err != nil {
			if err == io.EOF && len(spans) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(l) == 0 {
			if len(spans) == 0 {
				continue // tolerate blank lines between entries
			}
			break
		}
		if i := bytes.IndexByte(l, '='); i >= 0 {
			name, id := x.intern(l[:i])
			start := len(buf)
			buf = append(buf, l[i+1:]...)
			spans = append(spans, span{name, id, start, len(buf)})
			continue
		}
		name, id := x.intern(l)
		var n [8]byte
		if _, err := io.ReadFull(x.r, n[:]); err != nil {
			return nil, unexpected(err)
		}
		size := binary.LittleEndian.Uint64(n[:])
		if size > maxField {
			return nil, fmt.Errorf("%w: field %q declares %d bytes at byte %d", ErrFormat, name, size, x.off)
		}
		start := len(buf)
		// Grown as the bytes come, so that a broken length does not
		// allocate hundreds of MiB before the stream ends.
		for left := int(size) + 1; left > 0; {
			step := min(left, 1<<20)
			at := len(buf)
			buf = slices.Grow(buf, step)[:at+step]
			if _, err := io.ReadFull(x.r, buf[at:]); err != nil {
				return nil, unexpected(err)
			}
			left -= step
		}
		x.off += 8 + int64(size) + 1
		if buf[len(buf)-1] != '\n' {
			return nil, fmt.Errorf("%w: binary field %q not followed by a newline at byte %d", ErrFormat, name, x.off)
		}
		buf = buf[:len(buf)-1]
		spans = append(spans, span{name, id, start, len(buf)})
	}
	e := &x.entry
	e.Fields, e.ids = e.Fields[:0], e.ids[:0]
	for _, s := range spans {
		e.Fields = append(e.Fields, Field{Name: s.name, Value: buf[s.start:s.end:s.end]})
		e.ids = append(e.ids, s.id)
	}
	return e, nil
}

// span is a field's name and id and where its value is in the entry's
// buffer.
type span struct {
	name       string
	id         int32
	start, end int
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// maxNames bounds the interned names: names are few, but a hostile
// journal could hold many.
const maxNames = 4096

// intern returns name as a string, one allocation per distinct name, and
// its id (-1 past maxNames).
func (x *exportReader) intern(b []byte) (string, int32) {
	if id, ok := x.names[string(b)]; ok {
		return x.list[id], id
	}
	s := string(b)
	if len(x.list) >= maxNames {
		return s, -1
	}
	id := int32(len(x.list))
	x.names[s] = id
	x.list = append(x.list, s)
	return s, id
}

// appendExport appends e in the export format (the tests' and the
// benchmark's writer; systemd-journal-remote reads it).
func appendExport(b []byte, e *Entry) []byte {
	for _, f := range e.Fields {
		if bytes.IndexByte(f.Value, '\n') < 0 && printable(f.Value) {
			b = append(b, f.Name...)
			b = append(b, '=')
			b = append(b, f.Value...)
			b = append(b, '\n')
			continue
		}
		b = append(b, f.Name...)
		b = append(b, '\n')
		b = binary.LittleEndian.AppendUint64(b, uint64(len(f.Value)))
		b = append(b, f.Value...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

func printable(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' {
			return false
		}
	}
	return true
}
