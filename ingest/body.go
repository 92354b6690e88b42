package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// BodyError says what is wrong with a request body and where.
type BodyError struct {
	Line   int    // 1-based line of an NDJSON or text body; 0 when not by line
	Index  int    // 0-based index in a JSON array; -1 when not in an array
	Reason string // what is wrong
	TooBig bool   // a record over the size limit (HTTP 413)
}

func (e *BodyError) Error() string {
	switch {
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	case e.Index >= 0:
		return fmt.Sprintf("record %d: %s", e.Index, e.Reason)
	}
	return e.Reason
}

// decoder turns a request body into records. charge accounts the memory
// the decoded body holds (the records kept, the buffers that grow): it fails
// when the ingest budget cannot give it, and decoding stops there.
type decoder struct {
	maxRecord int
	st        stamp
	charge    func(n int) error
	truncated int // text records whose message was cut to fit the record limit
}

// ndjson reads one JSON object per line; blank lines are skipped.
func (d *decoder) ndjson(r io.Reader) ([][]byte, error) {
	return d.byLine(r, func(line []byte) ([]byte, error) { return completeObject(line, d.st) })
}

// text makes one record of each non-empty line. Escaping can make a record
// up to six times its line; a record over the limit has its message cut.
func (d *decoder) text(r io.Reader) ([][]byte, error) {
	return d.byLine(r, func(line []byte) ([]byte, error) {
		line, precutDone := precut(line, d.maxRecord)
		rec, cut, _ := fitRecord(line, d.maxRecord+envelopeRoom, func(msg []byte, cut bool) []byte {
			return textRecord(msg, cut || precutDone, d.st)
		})
		if cut || precutDone {
			d.truncated++
		}
		return rec, nil
	})
}

func (d *decoder) byLine(r io.Reader, conv func([]byte) ([]byte, error)) ([][]byte, error) {
	// The scanner hands out the cut-off rest of a body whose read failed as
	// a last line; the read error, not that line, is the news.
	er := &errReader{r: r}
	initial := min(64<<10, d.maxRecord+1)
	sc := bufio.NewScanner(er)
	sc.Buffer(make([]byte, 0, initial), d.maxRecord+1)
	var out [][]byte
	line, buffer := 0, initial // buffer: what the scanner's buffer was charged as
	for sc.Scan() {
		line++
		b := bytes.TrimRight(sc.Bytes(), "\r")
		if len(b) > buffer { // the scanner grew its buffer for this line
			if err := d.charge(2 * (len(b) - buffer)); err != nil {
				return nil, err
			}
			buffer = len(b)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		rec, err := conv(b)
		if err != nil {
			if er.err != nil && er.err != io.EOF {
				return nil, er.err
			}
			return nil, &BodyError{Line: line, Index: -1, Reason: err.Error()}
		}
		if err := d.charge(cap(rec)); err != nil { // what the record holds of memory
			return nil, err
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &BodyError{Line: line + 1, Index: -1, Reason: fmt.Sprintf("record longer than %d bytes", d.maxRecord), TooBig: true}
		}
		return nil, err
	}
	return out, nil
}

// json reads one object or an array of objects. The decoder holds the whole
// value, and the array's items are copies: both are charged.
func (d *decoder) json(r io.Reader) ([][]byte, error) {
	dec := json.NewDecoder(&chargingReader{r: r, charge: d.charge})
	var top json.RawMessage
	if err := dec.Decode(&top); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &BodyError{Index: -1, Reason: "invalid JSON: " + err.Error()}
		}
		return nil, err // the body could not be read (too large, gzip, budget): the caller says which
	}
	if dec.More() {
		return nil, &BodyError{Index: -1, Reason: "more than one JSON value; send an array, or NDJSON"}
	}
	top = bytes.TrimSpace(top)
	if len(top) > 0 && top[0] == '[' {
		if err := d.charge(2 * len(top)); err != nil { // RawMessage's copy and the items
			return nil, err
		}
		var items []json.RawMessage
		if err := json.Unmarshal(top, &items); err != nil {
			return nil, &BodyError{Index: -1, Reason: "invalid JSON: " + err.Error()}
		}
		out := make([][]byte, 0, len(items))
		for i, it := range items {
			if len(it) > d.maxRecord {
				return nil, &BodyError{Index: i, Reason: fmt.Sprintf("record longer than %d bytes", d.maxRecord), TooBig: true}
			}
			rec, err := completeObject(it, d.st)
			if err != nil {
				return nil, &BodyError{Index: i, Reason: err.Error()}
			}
			if err := d.charge(len(rec)); err != nil {
				return nil, err
			}
			out = append(out, rec)
		}
		return out, nil
	}
	if len(top) > d.maxRecord {
		return nil, &BodyError{Index: -1, Reason: fmt.Sprintf("record longer than %d bytes", d.maxRecord), TooBig: true}
	}
	rec, err := completeObject(top, d.st)
	if err != nil {
		return nil, &BodyError{Index: -1, Reason: err.Error()}
	}
	if err := d.charge(len(rec)); err != nil {
		return nil, err
	}
	return [][]byte{rec}, nil
}

// chargingReader charges what it reads: the JSON decoder keeps it all.
type chargingReader struct {
	r      io.Reader
	charge func(int) error
}

func (c *chargingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if cerr := c.charge(n); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// errReader remembers the error its reader returned.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.err = err
	}
	return n, err
}
