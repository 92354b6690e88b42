package ingest

import (
	"regexp"
	"slices"
	"sync"
	"testing"
)

var ulidRE = regexp.MustCompile(`^[0-7][0-9A-HJKMNP-TV-Z]{25}$`)

func TestRecordIDs(t *testing.T) {
	t.Run("ids from many goroutines are unique, well formed and rise in each goroutine", func(t *testing.T) {
		const workers, each = 8, 20000
		got := make([][]string, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for range each {
					got[w] = append(got[w], NewRecordID())
				}
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for _, ids := range got {
			if !slices.IsSorted(ids) {
				t.Fatal("a goroutine's ids do not rise")
			}
			for _, id := range ids {
				if !ulidRE.MatchString(id) || seen[id] {
					t.Fatalf("id %q: malformed or repeated", id)
				}
				seen[id] = true
			}
		}
	})
	t.Run("the clock stepping back does not move ids back", func(t *testing.T) {
		var g idGen
		a := g.next()
		g.ms += 10_000 // as if the clock had been ten seconds ahead
		b, c := g.next(), g.next()
		if string(appendULID(nil, b)) <= string(appendULID(nil, a)) || string(appendULID(nil, c)) <= string(appendULID(nil, b)) {
			t.Fatal("ids went back")
		}
	})
	t.Run("the encoding is ULID's: the time in the first ten characters", func(t *testing.T) {
		id := appendULID(nil, [16]byte{0x01, 0x8f, 0x3a, 0x5b, 0x7c, 0x9d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		// 0x018f3a5b7c9d ms is 01HWX5PZ4X in Crockford base32; the random
		// bits all ones are ZZZZZZZZZZZZZZZZ.
		if string(id) != "01HWX5PZ4XZZZZZZZZZZZZZZZZ" {
			t.Fatalf("got %s", id)
		}
	})
}
