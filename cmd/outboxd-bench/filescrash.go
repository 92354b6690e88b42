package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The crash run of files-compare: writers that append numbered lines and
// rotate their files, and the kills and restarts of the shipper.

// crashResult is one shipper's crash run.
type crashResult struct {
	issues    []genIssue
	begin     time.Time
	killedAt  []time.Time
	counts    crashCounts
	kills     int
	selfExits int    // exits the run did not cause, each restarted
	firstExit string // the first one's status and the shipper's last words
	rotations [2]int // rename+create, copytruncate
	drainedIn time.Duration
	err       error
}

// copyWindow is how long a copytruncate rotation leaves between the copy
// and the truncate; lines written then are in neither file.
const copyWindow = 20 * time.Millisecond

// crashFile is one log file of the crash run. mu is held by every write and
// by the rotations, so the lines written between a copytruncate's copy and
// its truncate are known.
type crashFile struct {
	path      string
	mu        sync.Mutex
	f         *os.File
	seq       int   // the next line's number
	open      bool  // inside a copytruncate window
	window    []int // seqs written inside copytruncate windows
	genStart  int   // the first seq of the file as it is now
	gens      []generation
	rotations int
	buf       []byte
}

// fileLog is what was written to one file of the crash run: lines 0..n-1;
// window: the seqs written inside copytruncate windows, in neither file;
// gens: the files rotated away, oldest first.
type fileLog struct {
	n      int
	window []int
	gens   []generation
}

// generation is one file rotated away: lines [from, to) were written to it.
type generation struct {
	from, to int
	kind     int  // renamed, copytruncated, or (the file not rotated) current
	down     bool // it was rotated while the shipper was down
	name     string
	at       time.Time
}

const (
	renamed = iota
	copytruncated
	current
)

var kindNames = [3]string{"renamed", "copytruncated", "not rotated"}

// generation is the file line seq was written to.
func (w fileLog) generation(seq int) generation {
	i, found := slices.BinarySearchFunc(w.gens, seq, func(g generation, seq int) int {
		switch {
		case seq < g.from:
			return 1
		case seq >= g.to:
			return -1
		}
		return 0
	})
	if found {
		return w.gens[i]
	}
	return generation{kind: current}
}

func openCrashFile(logDir string, i int) (*crashFile, error) {
	path := filepath.Join(logDir, fmt.Sprintf("app%d.log", i))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &crashFile{path: path, f: f}, nil
}

// write appends n numbered lines in one write, as an application's logger
// flushes a buffer.
func (c *crashFile) write(file, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = c.buf[:0]
	for range n {
		c.buf = appendLine(c.buf, file, c.seq)
		if c.open {
			c.window = append(c.window, c.seq)
		}
		c.seq++
	}
	_, err := c.f.Write(c.buf)
	return err
}

// renameRotate renames the file to <path>.<k> and creates it anew, as
// logrotate's default does. down: the shipper is down.
func (c *crashFile) renameRotate(down bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotations++
	c.gens = append(c.gens, generation{from: c.genStart, to: c.seq, kind: renamed, down: down,
		name: fmt.Sprintf("%s.%d", filepath.Base(c.path), c.rotations), at: time.Now()})
	c.genStart = c.seq
	if err := os.Rename(c.path, fmt.Sprintf("%s.%d", c.path, c.rotations)); err != nil {
		return fmt.Errorf("rotate %s: %w", c.path, err)
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", c.path, err)
	}
	c.f.Close()
	c.f = f
	return nil
}

// copyTruncate copies the file to <path>.<k> and truncates it copyWindow
// later, as logrotate's copytruncate does; the writer goes on meanwhile.
// down: the shipper is down.
func (c *crashFile) copyTruncate(down bool) error {
	c.mu.Lock()
	c.rotations++
	c.gens = append(c.gens, generation{from: c.genStart, to: c.seq, kind: copytruncated, down: down,
		name: fmt.Sprintf("%s.%d", filepath.Base(c.path), c.rotations), at: time.Now()})
	err := copyFile(c.path, fmt.Sprintf("%s.%d", c.path, c.rotations))
	c.open = err == nil
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("copytruncate %s: %w", c.path, err)
	}
	time.Sleep(copyWindow)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = false
	c.genStart = c.seq
	if err := c.f.Truncate(0); err != nil {
		return fmt.Errorf("copytruncate %s: %w", c.path, err)
	}
	return nil
}

func (c *crashFile) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.f.Close()
}

func (c *crashFile) written() fileLog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fileLog{c.seq, slices.Clone(c.window), slices.Clone(c.gens)}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	return errors.Join(err, dst.Close())
}

// filesCrash writes numbered lines at a steady rate to a few files, rotates
// them, kills the shipper f.kills times and restarts it, then lets it drain
// and counts what arrived.
func filesCrash(ctx context.Context, s fileShipper, dir string, f filesFlags) crashResult {
	var res crashResult
	r, err := newFileRun(ctx, s, dir, f.pattern())
	if err != nil {
		res.err = err
		return res
	}
	defer r.close()

	files := make([]*crashFile, f.crashFiles)
	for i := range files {
		if files[i], err = openCrashFile(r.logDir, i); err != nil {
			res.err = err
			return res
		}
		defer files[i].close()
	}

	// The writers and the rotator run until stopWriting; this goroutine
	// kills and restarts the shipper meanwhile, then waits for them.
	wctx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	var wg sync.WaitGroup
	var werrMu sync.Mutex
	var werr error
	fail := func(err error) {
		werrMu.Lock()
		defer werrMu.Unlock()
		werr = errors.Join(werr, err)
	}
	var down atomic.Bool // the shipper is down: between a kill or an exit and the restart
	perFile := f.crashRate / float64(len(files))
	// Each writer writes every 10/perFile seconds what is due since it
	// began: 10 lines, or more after it was kept off the CPU, so the rate
	// holds on a busy machine (a timer a line cannot keep up).
	const burst = 10
	for i, cf := range files {
		wg.Go(func() {
			t := time.NewTicker(time.Duration(float64(time.Second) * burst / perFile))
			defer t.Stop()
			start, done := time.Now(), 0
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
				}
				due := int(perFile*time.Since(start).Seconds()) - done
				if due <= 0 {
					continue
				}
				if err := cf.write(i, due); err != nil {
					fail(err)
					return
				}
				done += due
			}
		})
	}
	wg.Go(func() {
		t := time.NewTicker(f.rotateEvery)
		defer t.Stop()
		for k := 0; ; k++ {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			cf := files[k%len(files)]
			var err error
			if k%2 == 0 {
				err = cf.renameRotate(down.Load())
				res.rotations[0]++
			} else {
				err = cf.copyTruncate(down.Load())
				res.rotations[1]++
			}
			if err != nil {
				fail(err)
				return
			}
		}
	})

	// A shipper that exits on its own is restarted a second later, as
	// systemd's Restart=always would; each such exit is counted and the
	// first one's last words kept. After 20 the run gives up.
	supervise := func() error {
		if !r.p.exited() {
			return nil
		}
		res.selfExits++
		if res.firstExit == "" {
			res.firstExit = fmt.Sprintf("%v:\n%s", r.p.cmd.ProcessState, r.p.tail())
		}
		if res.selfExits > 20 {
			return fmt.Errorf("the shipper exited on its own %d times; the first: %s", res.selfExits, res.firstExit)
		}
		down.Store(true)
		defer down.Store(false)
		time.Sleep(time.Second)
		return r.restart()
	}
	// sleepUntil waits until t, supervising.
	sleepUntil := func(t time.Time) error {
		for time.Now().Before(t) {
			if err := supervise(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(min(100*time.Millisecond, time.Until(t))):
			}
		}
		return supervise()
	}

	// Kills at even intervals, jittered, so they fall at every point of
	// the writers' and the rotator's cycles; each restart follows after a
	// short, random time down.
	rng := rand.New(rand.NewPCG(1, 2))
	interval := f.crashFor / time.Duration(f.kills+1)
	begin := time.Now()
	res.begin = begin
	for k := range f.kills {
		at := begin.Add(interval*time.Duration(k+1) + time.Duration((rng.Float64()-0.5)*float64(interval)/2))
		if res.err = sleepUntil(at); res.err != nil {
			break
		}
		down.Store(true)
		r.p.kill()
		res.kills++
		res.killedAt = append(res.killedAt, time.Now())
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		res.err = r.restart()
		down.Store(false)
		if res.err != nil {
			break // p is the killed process: the deferred stop is a no-op
		}
	}
	if res.err == nil {
		res.err = sleepUntil(begin.Add(f.crashFor))
	}
	stopWriting()
	wg.Wait()
	if werr != nil {
		res.err = errors.Join(res.err, fmt.Errorf("writer: %w", werr))
	}

	written := make([]fileLog, len(files))
	total := 0
	for i, cf := range files {
		written[i] = cf.written()
		total += written[i].n
	}
	// Drained: every line arrived, or nothing new for f.drainQuiet.
	drainStart := time.Now()
	lastChange, lastAll := time.Now(), -1
	drained := func() bool {
		d, all := r.lc.arrived()
		if all != lastAll {
			lastAll, lastChange = all, time.Now()
		}
		return d >= total || time.Since(lastChange) >= f.drainQuiet
	}
	for res.err == nil && !drained() {
		if time.Since(drainStart) > 10*time.Minute {
			res.err = errors.New("not drained after 10 minutes")
		} else {
			res.err = sleepUntil(time.Now().Add(50 * time.Millisecond))
		}
	}
	res.drainedIn = time.Since(drainStart)
	res.counts = r.lc.tally(written)
	res.issues = r.lc.byGeneration(written)
	return res
}
