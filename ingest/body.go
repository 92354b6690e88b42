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

// decodeNDJSON reads one JSON object per line; blank lines are skipped.
func decodeNDJSON(r io.Reader, maxRecord int, st stamp) ([][]byte, error) {
	return byLine(r, maxRecord, func(line []byte) ([]byte, error) { return completeObject(line, st) })
}

// decodeText makes one record of each non-empty line.
func decodeText(r io.Reader, maxRecord int, st stamp) ([][]byte, error) {
	return byLine(r, maxRecord, func(line []byte) ([]byte, error) { return textRecord(line, st) })
}

func byLine(r io.Reader, maxRecord int, conv func([]byte) ([]byte, error)) ([][]byte, error) {
	// The scanner hands out the cut-off rest of a body whose read failed as
	// a last line; the read error, not that line, is the news.
	er := &errReader{r: r}
	sc := bufio.NewScanner(er)
	sc.Buffer(make([]byte, 0, min(64<<10, maxRecord+1)), maxRecord+1)
	var out [][]byte
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimRight(sc.Bytes(), "\r")
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
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &BodyError{Line: line + 1, Index: -1, Reason: fmt.Sprintf("record longer than %d bytes", maxRecord), TooBig: true}
		}
		return nil, err
	}
	return out, nil
}

// decodeJSON reads one object or an array of objects.
func decodeJSON(r io.Reader, maxRecord int, st stamp) ([][]byte, error) {
	dec := json.NewDecoder(r)
	var top json.RawMessage
	if err := dec.Decode(&top); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &BodyError{Index: -1, Reason: "invalid JSON: " + err.Error()}
		}
		return nil, err // the body could not be read (too large, gzip): the caller says which
	}
	if dec.More() {
		return nil, &BodyError{Index: -1, Reason: "more than one JSON value; send an array, or NDJSON"}
	}
	top = bytes.TrimSpace(top)
	if len(top) > 0 && top[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(top, &items); err != nil {
			return nil, &BodyError{Index: -1, Reason: "invalid JSON: " + err.Error()}
		}
		out := make([][]byte, 0, len(items))
		for i, it := range items {
			if len(it) > maxRecord {
				return nil, &BodyError{Index: i, Reason: fmt.Sprintf("record longer than %d bytes", maxRecord), TooBig: true}
			}
			rec, err := completeObject(it, st)
			if err != nil {
				return nil, &BodyError{Index: i, Reason: err.Error()}
			}
			out = append(out, rec)
		}
		return out, nil
	}
	if len(top) > maxRecord {
		return nil, &BodyError{Index: -1, Reason: fmt.Sprintf("record longer than %d bytes", maxRecord), TooBig: true}
	}
	rec, err := completeObject(top, st)
	if err != nil {
		return nil, &BodyError{Index: -1, Reason: err.Error()}
	}
	return [][]byte{rec}, nil
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
