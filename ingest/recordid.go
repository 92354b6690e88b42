package ingest

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// A record id is given to every record when it is accepted, before the
// commit, and stored in the record (record_id): every delivery of the record,
// to every sink, carries the same one, so a consumer can drop what
// at-least-once delivery repeats. It is a ULID: 48 bits of milliseconds,
// then 80 random bits drawn afresh each millisecond and counted up within
// it, written as 26 characters of Crockford's base32. Ids sort by time, are
// unique across restarts (the clock moves on, or the random bits differ) and
// across hosts (80 random bits a millisecond each).

// ids is the process's generator.
var ids idGen

type idGen struct {
	mu     sync.Mutex
	ms     uint64
	hi     uint16 // the random bits' top 16
	lo     uint64 // and the other 64
	random [10]byte
}

// next returns the next id: later than every id before it in this
// process, even when the clock steps back (the last millisecond is kept).
// It reads the clock itself: a record's receive time may be anything
// (a test's zero time) and must not move the ids.
func (g *idGen) next() [16]byte {
	ms := uint64(max(time.Now().UnixMilli(), 0))
	g.mu.Lock()
	if ms > g.ms {
		g.ms = ms
		rand.Read(g.random[:]) // never fails (crypto/rand panics rather)
		g.hi = binary.BigEndian.Uint16(g.random[:2])
		g.lo = binary.BigEndian.Uint64(g.random[2:])
	} else {
		g.lo++
		if g.lo == 0 {
			g.hi++
			if g.hi == 0 {
				g.ms++ // 2^80 ids in one millisecond: borrow the next
			}
		}
	}
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], g.ms<<16|uint64(g.hi))
	binary.BigEndian.PutUint64(id[8:], g.lo)
	g.mu.Unlock()
	return id
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// appendRecordID appends a new id, quoted, as a JSON string.
func appendRecordID(b []byte) []byte {
	id := ids.next()
	b = append(b, '"')
	b = appendULID(b, id)
	return append(b, '"')
}

// appendULID appends id's 26 base32 characters: 128 bits, read 5 at a time
// from the top (the first character holds only 3).
func appendULID(b []byte, id [16]byte) []byte {
	hi := binary.BigEndian.Uint64(id[:8])
	lo := binary.BigEndian.Uint64(id[8:])
	for i := 25; i >= 0; i-- {
		shift := uint(i * 5)
		var v uint64
		switch {
		case shift >= 64:
			v = hi >> (shift - 64)
		case shift > 59:
			v = lo>>shift | hi<<(64-shift)
		default:
			v = lo >> shift
		}
		b = append(b, crockford[v&31])
	}
	return b
}

// NewRecordID is a new record id, for inputs that build records without a
// Stamp.
func NewRecordID() string { return newRecordID() }

// newRecordID builds the id on the stack: one allocation, the string's.
func newRecordID() string {
	var b [26]byte
	return string(appendULID(b[:0], ids.next()))
}
