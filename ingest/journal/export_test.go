package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestExportParser(t *testing.T) {
	t.Run("reads text, binary, multi-line and long fields byte-exact", func(t *testing.T) {
		long := strings.Repeat("x", 100<<10)
		in := &Entry{Fields: []Field{
			{"__CURSOR", []byte("s=1;i=1")},
			{"MESSAGE", []byte("a\nb\xff\x00c")},
			{"LONG", []byte(long)},
			{"EMPTY", []byte{}},
			{"EQ", []byte("a=b=c")},
			{"FOO", []byte("1")},
			{"FOO", []byte("2")},
		}}
		stream := appendExport(appendExport(nil, in), in)
		// One byte at a time: every read boundary lands somewhere.
		x := newExportReader(iotest.OneByteReader(bytes.NewReader(stream)), 16)
		for range 2 {
			got, err := x.Next()
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Fields) != len(in.Fields) {
				t.Fatalf("got %d fields, want %d", len(got.Fields), len(in.Fields))
			}
			for i, f := range got.Fields {
				if f.Name != in.Fields[i].Name || !bytes.Equal(f.Value, in.Fields[i].Value) {
					t.Fatalf("field %d: got %q=%.40q, want %q=%.40q", i, f.Name, f.Value, in.Fields[i].Name, in.Fields[i].Value)
				}
			}
		}
		if _, err := x.Next(); err != io.EOF {
			t.Fatalf("at the end: %v, want io.EOF", err)
		}
	})
	t.Run("an entry cut short is an unexpected EOF, not an entry", func(t *testing.T) {
		full := appendExport(nil, &Entry{Fields: []Field{{"A", []byte("1")}, {"B", []byte("x\ny")}}})
		for n := 1; n < len(full)-1; n++ {
			_, err := newExportReader(bytes.NewReader(full[:n]), 16).Next()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("cut at %d of %d: %v, want io.ErrUnexpectedEOF", n, len(full), err)
			}
		}
	})
	t.Run("a binary field's length past the limit is a format error", func(t *testing.T) {
		b := binary.LittleEndian.AppendUint64([]byte("A\n"), maxField+1)
		if _, err := newExportReader(bytes.NewReader(b), 16).Next(); !errors.Is(err, ErrFormat) {
			t.Fatalf("got %v, want ErrFormat", err)
		}
	})
}

// FuzzExport: the parser never panics, and what it parses is written back
// and parsed again to the same entries.
var recordID = regexp.MustCompile(`,"record_id":"[0-9A-Z]{26}"`)

func FuzzExport(f *testing.F) {
	f.Add([]byte("A=1\nB=2\n\nC=3\n\n"))
	f.Add(appendExport(nil, &Entry{Fields: []Field{{"MESSAGE", []byte("a\nb\xff")}, {"X", []byte("y")}}}))
	f.Add([]byte("A\n\x03\x00\x00\x00\x00\x00\x00\x00abc\n\n"))
	f.Add([]byte("A\n\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var got []*Entry
		x := newExportReader(bytes.NewReader(in), 16)
		fast, slow := newEncoder("h"), newEncoder("h")
		for {
			e, err := x.Next()
			if err != nil {
				break
			}
			// The encoder's shortcut for entries read (by name ids) makes
			// what it makes without them.
			c := clone(e)
			// (Each record has its own record_id.)
			a := recordID.ReplaceAll(fast.encode(e), nil)
			if b := recordID.ReplaceAll(slow.encode(c), nil); !bytes.Equal(a, b) {
				t.Fatalf("encoded with name ids:\n%s\nwithout:\n%s", a, b)
			}
			got = append(got, c)
		}
		var out []byte
		for _, e := range got {
			for _, f := range e.Fields {
				if f.Name == "" || strings.ContainsAny(f.Name, "=\n") {
					return // a name the writer cannot write back
				}
			}
			out = appendExport(out, e)
		}
		x = newExportReader(bytes.NewReader(out), 16)
		for i, want := range got {
			e, err := x.Next()
			if err != nil {
				t.Fatalf("entry %d written back does not parse: %v", i, err)
			}
			if !slices.EqualFunc(e.Fields, want.Fields, func(a, b Field) bool { return a.Name == b.Name && bytes.Equal(a.Value, b.Value) }) {
				t.Fatalf("entry %d changed: %q, want %q", i, e.Fields, want.Fields)
			}
		}
	})
}

// clone copies e out of the reader's buffers.
func clone(e *Entry) *Entry {
	c := &Entry{}
	for _, f := range e.Fields {
		c.Fields = append(c.Fields, Field{f.Name, bytes.Clone(f.Value)})
	}
	return c
}
