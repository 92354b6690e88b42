package main

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The numbered lines of files-compare, and their count at Kafka.

// lineSize is the length of every numbered line, newline included.
const lineSize = 256

// appendLine appends "file=<file> seq=<seq> xxx...\n", lineSize bytes.
func appendLine(b []byte, file, seq int) []byte {
	start := len(b)
	b = append(b, "file="...)
	b = strconv.AppendInt(b, int64(file), 10)
	b = append(b, " seq="...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, ' ')
	for len(b)-start < lineSize-1 {
		b = append(b, 'x')
	}
	return append(b, '\n')
}

// lineCounter reads the topic and counts how often each numbered line
// arrived. A message is matched by its "file=<i> seq=<n>" anywhere in it,
// so it works on the raw line (rsyslog) and on a JSON record (outboxd).
type lineCounter struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	counts   [][]uint8 // [file][seq]: arrivals, saturating at 255
	distinct int
	extra    int // arrivals after the first
	other    int // messages without a line number: the probe, or a torn line
	probe    bool
	last     time.Time // of the last first arrival
}

func newLineCounter(broker *kfake.Cluster, topic string) (*lineCounter, error) {
	c := &lineCounter{}
	var err error
	c.cl, c.cancel, c.done, err = pollTopic(broker, topic, c.add)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *lineCounter) close() { c.cancel(); <-c.done; c.cl.Close() }

var (
	fileTag  = []byte("file=")
	seqTag   = []byte(" seq=")
	probeTag = []byte("probe-ready")
)

func (c *lineCounter) add(v []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	file, seq, ok := parseLine(v)
	if !ok {
		c.other++
		if bytes.Contains(v, probeTag) {
			c.probe = true
		}
		return
	}
	for file >= len(c.counts) {
		c.counts = append(c.counts, nil)
	}
	n := c.counts[file]
	if seq >= len(n) {
		n = append(n, make([]uint8, seq+1-len(n)+len(n)/2)...)
		c.counts[file] = n
	}
	switch n[seq] {
	case 0:
		c.distinct++
		c.last = now
	default:
		c.extra++
	}
	if n[seq] < 255 {
		n[seq]++
	}
}

// parseLine finds "file=<i> seq=<n>" in a message.
func parseLine(v []byte) (file, seq int, ok bool) {
	i := bytes.Index(v, fileTag)
	if i < 0 {
		return 0, 0, false
	}
	file, rest, ok := leadingInt(v[i+len(fileTag):])
	if !ok || !bytes.HasPrefix(rest, seqTag) {
		return 0, 0, false
	}
	seq, _, ok = leadingInt(rest[len(seqTag):])
	return file, seq, ok
}

// arrived is how many distinct lines and how many arrivals in all.
func (c *lineCounter) arrived() (distinct, all int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.distinct, c.distinct + c.extra
}

func (c *lineCounter) sawProbe() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probe
}

func (c *lineCounter) lastAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// tally counts, against what was written to each file, the lines that
// never arrived (inside a copytruncate window, or outside and of those how
// many were in a file rotated away while the shipper was down), the lines
// that arrived more than once and the extra copies.
func (c *lineCounter) tally(written []fileLog) crashCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	var r crashCounts
	for file, w := range written {
		var got []uint8
		if file < len(c.counts) {
			got = c.counts[file]
		}
		inWindow := make(map[int]bool, len(w.window))
		for _, s := range w.window {
			inWindow[s] = true
		}
		r.written += w.n
		r.window += len(w.window)
		for seq := range w.n {
			k := 0
			if seq < len(got) {
				k = int(got[seq])
			}
			switch {
			case k == 0 && inWindow[seq]:
				r.lostWindow++
			case k == 0:
				r.lostOutside++
				g := w.generation(seq)
				r.lostIn[g.kind]++
				if g.down {
					r.lostRotatedDown++
				}
			case k > 1:
				r.dupLines++
				r.dupExtra += k - 1
				g := w.generation(seq)
				r.dupIn[g.kind]++
				if g.down {
					r.dupRotatedDown++
				}
			}
		}
		for seq := w.n; seq < len(got); seq++ {
			if got[seq] > 0 {
				r.unknown++ // a line this run never wrote: the count is wrong
			}
		}
	}
	for file := len(written); file < len(c.counts); file++ {
		for _, k := range c.counts[file] {
			if k > 0 {
				r.unknown++
			}
		}
	}
	r.other = c.other
	return r
}

// genIssue is a rotated file some of whose lines were lost or duplicated.
type genIssue struct {
	generation
	lost, dup int
}

// byGeneration lists the rotated files with lost or duplicated lines.
func (c *lineCounter) byGeneration(written []fileLog) []genIssue {
	c.mu.Lock()
	defer c.mu.Unlock()
	var issues []genIssue
	for file, w := range written {
		var got []uint8
		if file < len(c.counts) {
			got = c.counts[file]
		}
		for _, g := range w.gens {
			is := genIssue{generation: g}
			for seq := g.from; seq < g.to; seq++ {
				switch {
				case seq >= len(got) || got[seq] == 0:
					is.lost++
				case got[seq] > 1:
					is.dup++
				}
			}
			if is.lost+is.dup > 0 {
				issues = append(issues, is)
			}
		}
	}
	slices.SortFunc(issues, func(a, b genIssue) int { return a.at.Compare(b.at) })
	return issues
}

// crashCounts is what a crash run found at Kafka.
type crashCounts struct {
	written, window         int
	lostWindow, lostOutside int
	lostRotatedDown         int // of lostOutside
	dupRotatedDown          int // of dupLines
	// By the file the line was in: see generation.kind.
	lostIn, dupIn      [3]int
	dupLines, dupExtra int
	unknown, other     int
}
