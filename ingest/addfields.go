package ingest

import "sort"

// AddFields are the static fields an input adds to each of its records
// (ingest.<input>.add_fields: site, env, ...): a record's own field of the
// same name wins. Built once per input, in key order.
type AddFields []Field

// NewAddFields encodes m's values as JSON strings, sorted by key; nil for
// an empty m.
func NewAddFields(m map[string]string) AddFields {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f := make(AddFields, len(keys))
	for i, k := range keys {
		f[i] = String(k, m[k])
	}
	return f
}

// size is what the fields add to a record: ,"key":value each.
func (f AddFields) size() int {
	n := 0
	for _, x := range f {
		n += len(x.Key) + len(x.JSON) + 4
	}
	return n
}

// appendTo appends ,"key":value for each field.
func (f AddFields) appendTo(b []byte) []byte {
	for _, x := range f {
		b = append(b, ',', '"')
		b = append(b, x.Key...)
		b = append(b, '"', ':')
		b = append(b, x.JSON...)
	}
	return b
}
