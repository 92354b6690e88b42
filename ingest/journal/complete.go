package journal

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
)

// An entry read while its writer is still writing it can come out of
// journalctl with a field missing: sd-journal skips a data object it cannot
// read yet ("Entry item N data object is bad, skipping over it", at debug
// level only), and prints the rest. systemd 249-252 do so under load
// (systemd/systemd#40263; the TestProof journal scenario lost about one
// MESSAGE in 25 runs to it). The entry's cursor carries the XOR of the
// Jenkins hashes of all its data fields (x=...), so the fields printed can
// be checked against it: an entry that does not add up is read again.

// complete says whether e's fields are all of the entry whose cursor is
// cursor (scratch: a buffer kept between calls). It answers true when the cursor carries no hash (nothing to check
// against). Fields named __* are journalctl's (cursor, timestamps, seqnum),
// not data; _BOOT_ID is printed from the entry's header and may or may not
// also be one of its data fields; a field stored twice with the same value
// is one data object whose two hashes cancel out in x.
func complete(e *Entry, cursor []byte, scratch *[]byte) bool {
	want, ok := cursorHash(cursor)
	if !ok {
		return true
	}
	var sum, boot uint64
	buf := *scratch
	defer func() { *scratch = buf[:0] }()
	for _, f := range e.Fields {
		if len(f.Name) >= 2 && f.Name[0] == '_' && f.Name[1] == '_' {
			continue
		}
		buf = append(append(append(buf[:0], f.Name...), '='), f.Value...)
		h := jenkinsHash64(buf)
		if f.Name == "_BOOT_ID" {
			boot = h
			continue
		}
		sum ^= h
	}
	if sum == want || sum^boot == want {
		return true
	}
	// One field given twice with the same value: stored once, hashed twice.
	for _, f := range e.Fields {
		if len(f.Name) >= 2 && f.Name[0] == '_' && f.Name[1] == '_' || f.Name == "_BOOT_ID" {
			continue
		}
		buf = append(append(append(buf[:0], f.Name...), '='), f.Value...)
		h := jenkinsHash64(buf)
		if sum^h == want || sum^h^boot == want {
			return true
		}
	}
	return false
}

// cursorHash is the x= part of a cursor ("s=...;i=...;...;x=hex").
func cursorHash(cursor []byte) (uint64, bool) {
	for part := range bytes.SplitSeq(cursor, []byte(";")) {
		if v, ok := bytes.CutPrefix(part, []byte("x=")); ok {
			x, err := strconv.ParseUint(string(v), 16, 64)
			return x, err == nil
		}
	}
	return 0, false
}

// jenkinsHash64 is systemd's jenkins_hash64: Bob Jenkins' lookup3
// hashlittle2 with both seeds 0, the primary result in the high half.
func jenkinsHash64(k []byte) uint64 {
	c, b := hashlittle2(k)
	return uint64(c)<<32 | uint64(b)
}

// hashlittle2 is lookup3.c's hashlittle2(k, len, &c, &b) with c = b = 0,
// read byte-wise (the same result as its aligned paths on little-endian).
func hashlittle2(k []byte) (c, b uint32) {
	a := 0xdeadbeef + uint32(len(k))
	b, c = a, a
	for len(k) > 12 {
		a += binary.LittleEndian.Uint32(k)
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a, b, c = mix(a, b, c)
		k = k[12:]
	}
	if len(k) == 0 {
		return c, b
	}
	var tail [12]byte
	copy(tail[:], k)
	a += binary.LittleEndian.Uint32(tail[:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	a, b, c = final(a, b, c)
	return c, b
}

func mix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func final(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}
