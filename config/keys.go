package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// unknownKeys returns a problem for every key of raw (the parsed YAML and
// environment, nested maps) that no field of t's koanf tags takes, each
// naming its key path and, when one is close, the key meant: a typo should
// read "data_dri: unknown key; did you mean data_dir?", not name a Go type,
// and must not hide the configuration's other problems.
func unknownKeys(path string, t reflect.Type, raw any) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return nil // a value of the wrong kind: decoding says so
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			if tag := t.Field(i).Tag.Get("koanf"); tag != "" && tag != "-" {
				fields[strings.ToLower(tag)] = t.Field(i).Type
			}
		}
		var errs []error
		for _, key := range sortedKeys(m) {
			ft, ok := fields[strings.ToLower(key)] // as decoding matches: any case
			if !ok {
				errs = append(errs, unknownKey(join(path, key), key, fields))
				continue
			}
			errs = append(errs, unknownKeys(join(path, key), ft, m[key])...)
		}
		return errs
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			return nil
		}
		var errs []error
		for _, key := range sortedKeys(m) {
			errs = append(errs, unknownKeys(join(path, key), t.Elem(), m[key])...)
		}
		return errs
	case reflect.Slice:
		s, ok := raw.([]any)
		if !ok {
			return nil
		}
		var errs []error
		for i, v := range s {
			errs = append(errs, unknownKeys(fmt.Sprintf("%s[%d]", path, i), t.Elem(), v)...)
		}
		return errs
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// unknownKey is the problem of key at path, with the nearest known key
// when it is within a third of the key's length in edits (at least 1).
func unknownKey(path, key string, known map[string]reflect.Type) error {
	best, bestDist := "", len(key)/3+1
	for k := range known {
		if d := editDistance(key, k); d < bestDist || d == bestDist && best != "" && k < best {
			best, bestDist = k, d
		}
	}
	if best == "" {
		names := make([]string, 0, len(known))
		for k := range known {
			names = append(names, k)
		}
		sort.Strings(names)
		return problem(path, "unknown key (known here: %s)", strings.Join(names, ", "))
	}
	return problem(path, "unknown key; did you mean %s?", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
