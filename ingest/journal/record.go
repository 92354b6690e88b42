package journal

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/outboxd/outboxd/ingest"
)

// Source is the records' source name, which routes name.
const Source = "journal"

// top are the fields the envelope takes to its top level; every other
// field goes under "journal" by its own name.
var top = map[string]bool{
	"MESSAGE": true, "__REALTIME_TIMESTAMP": true, "_HOSTNAME": true, "PRIORITY": true,
	"SYSLOG_FACILITY": true, "SYSLOG_IDENTIFIER": true, "_PID": true,
}

// encoder builds records; it keeps one Stamp per host for one batch.
type encoder struct {
	host     string // when an entry has no _HOSTNAME
	received time.Time
	stamps   map[string]ingest.Stamp
	obj      []byte // scratch for the journal object
}

func newEncoder(host string) *encoder {
	return &encoder{host: host, stamps: map[string]ingest.Stamp{}}
}

// reset starts a batch received at now.
func (x *encoder) reset(now time.Time) {
	x.received = now
	clear(x.stamps)
}

func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// encode makes the envelope of e: ts from __REALTIME_TIMESTAMP, host from
// _HOSTNAME, severity and facility by name from PRIORITY and
// SYSLOG_FACILITY, app from SYSLOG_IDENTIFIER, procid from _PID, message
// from MESSAGE (not valid UTF-8: U+FFFD in message, the exact bytes in
// message_base64), and every other field under "journal" by its name: a
// field given twice is a list, in order. A value that is not valid UTF-8
// has U+FFFD there too, and its exact bytes under "journal_base64" by the
// same name and in the same shape. A top-level field that does not parse
// (PRIORITY=x) or is given twice keeps its other values under "journal".
func (x *encoder) encode(e *Entry) []byte {
	var msg []byte
	var ts time.Time
	host := x.host
	var fields [6]ingest.Field
	nf := 0
	var sev, fac, app, pid []byte
	seen := 0 // bitmask of the top-level fields taken
	taken := make([]bool, len(e.Fields))
	for i, f := range e.Fields {
		if !top[f.Name] {
			continue
		}
		bit := 0
		ok := true
		switch f.Name {
		case "MESSAGE":
			bit, msg = 1, f.Value
		case "__REALTIME_TIMESTAMP":
			bit = 2
			us, err := strconv.ParseInt(str(f.Value), 10, 64)
			if ok = err == nil; ok {
				ts = time.UnixMicro(us).UTC()
			}
		case "_HOSTNAME":
			bit = 4
			if ok = utf8.Valid(f.Value) && len(f.Value) > 0; ok {
				host = string(f.Value)
			}
		case "PRIORITY":
			bit, sev = 8, f.Value
			ok = ingest.SeverityName(small(f.Value)) != ""
		case "SYSLOG_FACILITY":
			bit, fac = 16, f.Value
			ok = ingest.FacilityName(small(f.Value)) != ""
		case "SYSLOG_IDENTIFIER":
			bit, app = 32, f.Value
			ok = utf8.Valid(app)
		case "_PID":
			bit, pid = 64, f.Value
			ok = utf8.Valid(pid)
		}
		if seen&bit != 0 || !ok {
			continue
		}
		seen |= bit
		taken[i] = true
	}
	if seen&8 != 0 {
		fields[nf] = ingest.String("severity", ingest.SeverityName(small(sev)))
		nf++
	}
	if seen&16 != 0 {
		fields[nf] = ingest.String("facility", ingest.FacilityName(small(fac)))
		nf++
	}
	if seen&32 != 0 {
		fields[nf] = ingest.String("app", string(app))
		nf++
	}
	if seen&64 != 0 {
		fields[nf] = ingest.String("procid", string(pid))
		nf++
	}
	if seen&1 == 0 {
		msg = nil
	}
	j, b64 := x.rest(e, taken)
	if j != nil {
		fields[nf] = ingest.Field{Key: "journal", JSON: j}
		nf++
	}
	if b64 != nil {
		fields[nf] = ingest.Field{Key: "journal_base64", JSON: b64}
		nf++
	}
	st, ok := x.stamps[host]
	if !ok {
		st = ingest.NewStamp(x.received, host, Source)
		x.stamps[host] = st
	}
	if ts.IsZero() {
		ts = x.received
	}
	return st.Line(msg, false, ts, fields[:nf]...)
}

// small parses a one-digit or two-digit number, -1 otherwise.
func small(b []byte) int {
	n, err := strconv.Atoi(str(b))
	if err != nil || n < 0 || n > 99 {
		return -1
	}
	return n
}

// rest encodes the fields not taken to the top level as the "journal"
// object, and the exact bytes of those that are not valid UTF-8 as the
// "journal_base64" object (nil when none).
func (x *encoder) rest(e *Entry, taken []bool) (obj, b64 []byte) {
	b := x.obj[:0]
	b = append(b, '{')
	var bad map[string]bool
	done := map[string]bool{}
	for i, f := range e.Fields {
		if taken[i] || done[f.Name] {
			continue
		}
		done[f.Name] = true
		n, invalid := 0, false
		for k := i; k < len(e.Fields); k++ {
			if g := e.Fields[k]; g.Name == f.Name && !taken[k] {
				n++
				invalid = invalid || !utf8.Valid(g.Value)
			}
		}
		if invalid {
			if bad == nil {
				bad = map[string]bool{}
			}
			bad[f.Name] = true
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = ingest.AppendJSONString(b, f.Name)
		b = append(b, ':')
		b = x.values(b, e, taken, i, n, false)
	}
	b = append(b, '}')
	x.obj = b
	if len(b) > 2 {
		obj = append([]byte(nil), b...)
	}
	if bad == nil {
		return obj, nil
	}
	b64 = []byte{'{'}
	for i, f := range e.Fields {
		if !bad[f.Name] {
			continue
		}
		n := 0
		for k := i; k < len(e.Fields); k++ {
			if e.Fields[k].Name == f.Name && !taken[k] {
				n++
			}
		}
		delete(bad, f.Name)
		if len(b64) > 1 {
			b64 = append(b64, ',')
		}
		b64 = ingest.AppendJSONString(b64, f.Name)
		b64 = append(b64, ':')
		b64 = x.values(b64, e, taken, i, n, true)
	}
	return obj, append(b64, '}')
}

// values appends the n values of the field named as e.Fields[from]: one
// string, or a list when n > 1; base64 of the bytes when asBase64.
func (x *encoder) values(b []byte, e *Entry, taken []bool, from, n int, asBase64 bool) []byte {
	name := e.Fields[from].Name
	if n > 1 {
		b = append(b, '[')
	}
	first := true
	for k := from; k < len(e.Fields); k++ {
		g := e.Fields[k]
		if g.Name != name || taken[k] {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		if asBase64 {
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, g.Value)
			b = append(b, '"')
		} else {
			b = ingest.AppendJSONString(b, str(g.Value))
		}
	}
	if n > 1 {
		b = append(b, ']')
	}
	return b
}
