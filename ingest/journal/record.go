package journal

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/outboxd/outboxd/ingest"
)

// Source is the records' source name, which routes name.
const Source = "journal"

// The fields the envelope takes to its top level; every other field goes
// under "journal" by its own name.
const (
	fMessage = 1 << iota
	fRealtime
	fHostname
	fPriority
	fFacility
	fIdentifier
	fPID
)

func topField(name string) int {
	switch name {
	case "MESSAGE":
		return fMessage
	case "__REALTIME_TIMESTAMP":
		return fRealtime
	case "_HOSTNAME":
		return fHostname
	case "PRIORITY":
		return fPriority
	case "SYSLOG_FACILITY":
		return fFacility
	case "SYSLOG_IDENTIFIER":
		return fIdentifier
	case "_PID":
		return fPID
	}
	return 0
}

// severityJSON and facilityJSON are the names, JSON-encoded once.
var severityJSON, facilityJSON = names(8, ingest.SeverityName), names(24, ingest.FacilityName)

func names(n int, name func(int) string) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = ingest.AppendJSONString(nil, name(i))
	}
	return out
}

// encoder builds records. It keeps one Stamp per host for one batch, and
// scratch buffers that each record's bytes are copied out of.
type encoder struct {
	host     string // when an entry has no _HOSTNAME
	fields   ingest.AddFields
	received time.Time
	stamps   map[string]ingest.Stamp
	taken    []bool
	obj, b64 []byte
	app, pid []byte
	// By name id (Entry.ids): the name as a JSON key, and the last round
	// (entry) it was seen in.
	keys  [][]byte
	gen   []uint32
	round uint32
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
	sev, fac := -1, -1
	seen := 0
	x.taken = append(x.taken[:0], make([]bool, len(e.Fields))...)
	x.app, x.pid = x.app[:0], x.pid[:0]
	for i, f := range e.Fields {
		bit := topField(f.Name)
		if bit == 0 || seen&bit != 0 {
			continue
		}
		ok := true
		switch bit {
		case fMessage:
			msg = f.Value
		case fRealtime:
			us, err := strconv.ParseInt(str(f.Value), 10, 64)
			if ok = err == nil; ok {
				ts = time.UnixMicro(us).UTC()
			}
		case fHostname:
			if ok = len(f.Value) > 0 && utf8.Valid(f.Value); ok {
				host = str(f.Value) // used before e's buffer is reused
			}
		case fPriority:
			sev = small(f.Value, len(severityJSON))
			ok = sev >= 0
		case fFacility:
			fac = small(f.Value, len(facilityJSON))
			ok = fac >= 0
		case fIdentifier:
			if ok = utf8.Valid(f.Value); ok {
				x.app = ingest.AppendJSONString(x.app, str(f.Value))
			}
		case fPID:
			if ok = utf8.Valid(f.Value); ok {
				x.pid = ingest.AppendJSONString(x.pid, str(f.Value))
			}
		}
		if ok {
			seen |= bit
			x.taken[i] = true
		}
	}
	var fields [6]ingest.Field
	nf := 0
	add := func(key string, json []byte) {
		fields[nf] = ingest.Field{Key: key, JSON: json}
		nf++
	}
	if sev >= 0 {
		add("severity", severityJSON[sev])
	}
	if fac >= 0 {
		add("facility", facilityJSON[fac])
	}
	if len(x.app) > 0 {
		add("app", x.app)
	}
	if len(x.pid) > 0 {
		add("procid", x.pid)
	}
	if x.rest(e) {
		add("journal", x.obj)
		if len(x.b64) > 0 {
			add("journal_base64", x.b64)
		}
	}
	st, ok := x.stamps[host]
	if !ok {
		host = strings.Clone(host) // it was in e's buffer
		st = ingest.NewStamp(x.received, host, Source).WithFields(x.fields)
		x.stamps[host] = st
	}
	if ts.IsZero() {
		ts = x.received
	}
	return st.Line(msg, false, ts, fields[:nf]...)
}

// small parses a number below n, -1 otherwise.
func small(b []byte, n int) int {
	v, err := strconv.Atoi(str(b))
	if err != nil || v < 0 || v >= n {
		return -1
	}
	return v
}

// rest encodes the fields not taken to the top level into x.obj, the
// "journal" object, and the exact bytes of those that are not valid UTF-8
// into x.b64, the "journal_base64" object (empty when none). It says
// whether there was any.
func (x *encoder) rest(e *Entry) bool {
	x.obj = append(x.obj[:0], '{')
	x.b64 = x.b64[:0]
	if x.unique(e) {
		for i, f := range e.Fields {
			if x.taken[i] {
				continue
			}
			if len(x.obj) > 1 {
				x.obj = append(x.obj, ',')
			}
			x.obj = append(x.obj, x.key(e, i)...)
			x.obj = ingest.AppendJSONString(x.obj, str(f.Value))
			if !utf8.Valid(f.Value) {
				x.b64 = x.openB64(e, i)
				x.b64 = x.values(x.b64, e, i, 1, true)
			}
		}
	} else {
		x.restRepeated(e)
	}
	x.obj = append(x.obj, '}')
	if len(x.b64) > 0 {
		x.b64 = append(x.b64, '}')
	}
	return len(x.obj) > 2
}

// unique says whether no name comes twice among the fields not taken, by
// the reader's name ids: one look per field (false without ids).
func (x *encoder) unique(e *Entry) bool {
	if len(e.ids) != len(e.Fields) {
		return false
	}
	x.round++
	for i, id := range e.ids {
		if x.taken[i] {
			continue
		}
		if id < 0 {
			return false
		}
		for int(id) >= len(x.gen) {
			x.gen = append(x.gen, 0)
		}
		if x.gen[id] == x.round {
			return false
		}
		x.gen[id] = x.round
	}
	return true
}

// key is field i's name as a JSON key with its colon, encoded once per name.
func (x *encoder) key(e *Entry, i int) []byte {
	id := int32(-1)
	if len(e.ids) == len(e.Fields) {
		id = e.ids[i]
	}
	if id < 0 {
		return append(ingest.AppendJSONString(nil, e.Fields[i].Name), ':')
	}
	for int(id) >= len(x.keys) {
		x.keys = append(x.keys, nil)
	}
	if x.keys[id] == nil {
		x.keys[id] = append(ingest.AppendJSONString(nil, e.Fields[i].Name), ':')
	}
	return x.keys[id]
}

// openB64 starts the next member of the journal_base64 object: field i's key.
func (x *encoder) openB64(e *Entry, i int) []byte {
	if len(x.b64) == 0 {
		x.b64 = append(x.b64, '{')
	} else {
		x.b64 = append(x.b64, ',')
	}
	return append(x.b64, x.key(e, i)...)
}

// restRepeated is rest for an entry with a name given twice or more: each
// name once, its values a list in order.
func (x *encoder) restRepeated(e *Entry) {
	for i, f := range e.Fields {
		if x.taken[i] || x.before(e, i) {
			continue
		}
		n, invalid := 0, false
		for k := i; k < len(e.Fields); k++ {
			if g := e.Fields[k]; !x.taken[k] && g.Name == f.Name {
				n++
				invalid = invalid || !utf8.Valid(g.Value)
			}
		}
		if len(x.obj) > 1 {
			x.obj = append(x.obj, ',')
		}
		x.obj = append(x.obj, x.key(e, i)...)
		x.obj = x.values(x.obj, e, i, n, false)
		if invalid {
			x.b64 = x.openB64(e, i)
			x.b64 = x.values(x.b64, e, i, n, true)
		}
	}
}

// before says whether a field before i not taken has i's name: then i's
// values were written with it.
func (x *encoder) before(e *Entry, i int) bool {
	for k := range i {
		if !x.taken[k] && e.Fields[k].Name == e.Fields[i].Name {
			return true
		}
	}
	return false
}

// values appends the n values of the field named as e.Fields[from]: one
// string, or a list when n > 1; base64 of the bytes when asBase64.
func (x *encoder) values(b []byte, e *Entry, from, n int, asBase64 bool) []byte {
	name := e.Fields[from].Name
	if n > 1 {
		b = append(b, '[')
	}
	first := true
	for k := from; k < len(e.Fields); k++ {
		g := e.Fields[k]
		if g.Name != name || x.taken[k] {
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
