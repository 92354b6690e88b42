// Package otlp is the OpenTelemetry logs receiver: OTLP/HTTP (POST /v1/logs,
// protobuf or JSON). It stores one record per LogRecord and answers only
// after the records are committed to the outbox.
package otlp

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/outboxd/outboxd/ingest"
)

// Source is the records' source name, as routes name it.
const Source = "otlp"

// builder turns decoded logs into stored records.
type builder struct {
	received  time.Time
	host      string // this host: records whose resource has no host.name
	maxRecord int
	client    []byte // tls_client's JSON: the sender's verified certificate; nil without one
	fields    ingest.AddFields

	records  [][]byte
	bytes    int64
	rejected int // records over maxRecord, left out
}

// build makes one record of each LogRecord in ld.
func (b *builder) build(ld plog.Logs) {
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		res := rl.Resource().Attributes()
		host := b.host
		if v, ok := res.Get("host.name"); ok && v.Type() == pcommon.ValueTypeStr && v.Str() != "" {
			host = v.Str()
		}
		st := ingest.NewStamp(b.received, host, Source).WithClient(b.client).WithFields(b.fields)
		resJSON := appendMap(nil, res)
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			sl := sls.At(j)
			scope := []byte(`{"name":`)
			scope = ingest.AppendJSONString(scope, sl.Scope().Name())
			scope = append(scope, `,"version":`...)
			scope = ingest.AppendJSONString(scope, sl.Scope().Version())
			scope = append(scope, '}')
			lrs := sl.LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				rec := record(st, lrs.At(k), resJSON, scope)
				if b.maxRecord > 0 && len(rec) > b.maxRecord {
					b.rejected++
					continue
				}
				b.records = append(b.records, rec)
				b.bytes += int64(len(rec))
			}
		}
	}
}

// record is the stored record of one LogRecord.
func record(st ingest.Stamp, lr plog.LogRecord, resource, scope []byte) []byte {
	ts := lr.Timestamp()
	if ts == 0 {
		ts = lr.ObservedTimestamp()
	}
	var t time.Time // zero: the stamp's receive time
	if ts != 0 {
		t = ts.AsTime().UTC()
	}
	o := make([]byte, 0, 128+len(resource)+len(scope))
	o = append(o, `{"attributes":`...)
	o = appendMap(o, lr.Attributes())
	o = append(o, `,"resource":`...)
	o = append(o, resource...)
	o = append(o, `,"scope":`...)
	o = append(o, scope...)
	if id := lr.TraceID(); !id.IsEmpty() {
		o = append(o, `,"trace_id":"`...)
		o = hex.AppendEncode(o, id[:])
		o = append(o, '"')
	}
	if id := lr.SpanID(); !id.IsEmpty() {
		o = append(o, `,"span_id":"`...)
		o = hex.AppendEncode(o, id[:])
		o = append(o, '"')
	}
	o = append(o, `,"flags":`...)
	o = strconv.AppendUint(o, uint64(lr.Flags()), 10)
	if n := lr.EventName(); n != "" {
		o = append(o, `,"event_name":`...)
		o = ingest.AppendJSONString(o, n)
	}
	o = append(o, '}')
	return st.Line(message(lr.Body()), false, t,
		ingest.Int("severity_number", int64(lr.SeverityNumber())),
		ingest.String("severity_text", lr.SeverityText()),
		ingest.Field{Key: "otel", JSON: o})
}

// message is the record's message: a string body as it is, bytes as
// base64, any other kind as compact JSON text, an empty body as "".
func message(v pcommon.Value) []byte {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return []byte(v.Str())
	case pcommon.ValueTypeEmpty:
		return nil
	case pcommon.ValueTypeBytes:
		return base64.StdEncoding.AppendEncode(nil, v.Bytes().AsRaw())
	}
	return appendValue(nil, v)
}

// appendValue appends v as JSON: maps keep their order, bytes are base64,
// a double that JSON cannot hold (NaN, infinities) is a string.
func appendValue(b []byte, v pcommon.Value) []byte {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return ingest.AppendJSONString(b, v.Str())
	case pcommon.ValueTypeInt:
		return strconv.AppendInt(b, v.Int(), 10)
	case pcommon.ValueTypeDouble:
		f := v.Double()
		switch {
		case math.IsNaN(f):
			return append(b, `"NaN"`...)
		case math.IsInf(f, 1):
			return append(b, `"Infinity"`...)
		case math.IsInf(f, -1):
			return append(b, `"-Infinity"`...)
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(b, v.Bool())
	case pcommon.ValueTypeBytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes().AsRaw())
		return append(b, '"')
	case pcommon.ValueTypeMap:
		return appendMap(b, v.Map())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		b = append(b, '[')
		for i := 0; i < s.Len(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, s.At(i))
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

// appendMap appends m as a JSON object, in m's order. A key that comes
// twice (OTLP forbids it, a client may still send it) is written twice:
// JSON readers keep the last.
func appendMap(b []byte, m pcommon.Map) []byte {
	b = append(b, '{')
	first := true
	for k, v := range m.All() {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = ingest.AppendJSONString(b, k)
		b = append(b, ':')
		b = appendValue(b, v)
	}
	return append(b, '}')
}
