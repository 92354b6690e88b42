package files

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"testing"
	"time"

	"github.com/outboxd/outboxd/config"
	"github.com/outboxd/outboxd/ingest/route"
	"github.com/outboxd/outboxd/outbox"
)

// harness is a tailer on a real outbox file, read back record by record.
type harness struct {
	t      *testing.T
	dir    string // where the test's log files go
	db     string
	inputs []config.FileInput
	q      *outbox.Queue[[]byte]
	router *route.Router
	maxRec int

	tl     *Tailer
	cancel context.CancelFunc
	done   chan error
	got    []map[string]any
}

// entry is a files entry with the defaults config applies, fast timings.
func entry(paths ...string) config.FileInput {
	return config.FileInput{Paths: paths, ReadFrom: "beginning", Format: "text", MaxLineBytes: config.DefaultMaxLineBytes,
		RotateWait: 300 * time.Millisecond, Rescan: 50 * time.Millisecond}
}

func newHarness(t *testing.T, inputs ...config.FileInput) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), db: filepath.Join(t.TempDir(), "outbox.db"), inputs: inputs}
	for i := range h.inputs {
		for j, p := range h.inputs[i].Paths {
			h.inputs[i].Paths[j] = strings.ReplaceAll(p, "DIR", h.dir)
		}
		for j, p := range h.inputs[i].Exclude {
			h.inputs[i].Exclude[j] = strings.ReplaceAll(p, "DIR", h.dir)
		}
	}
	h.open()
	t.Cleanup(func() {
		h.stop()
		h.q.Close()
	})
	return h
}

func (h *harness) open() {
	q, err := outbox.Open(context.Background(), h.db, "sink_main", outbox.Options[[]byte]{Durability: outbox.DurabilityNormal, MaxSize: h.maxRec})
	if err != nil {
		h.t.Fatal(err)
	}
	h.q = q
	h.router = route.New(nil)
	h.router.Install(nil, []route.Sink{{Name: "main", Queue: q}})
}

var testLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: testLevel}))

// start runs a new tailer, as a restart of outboxd would.
func (h *harness) start() {
	h.t.Helper()
	h.stop()
	tl, err := New(Config{Inputs: h.inputs, Host: "testhost", Logger: testLog, ChunkBytes: 64 << 10}, h.router)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.tl, h.cancel, h.done = tl, cancel, make(chan error, 1)
	go func() { h.done <- tl.Run(ctx) }()
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("tailer: %v", err)
	}
	h.cancel = nil
}

// path is a file in the test's directory.
func (h *harness) path(name string) string { return filepath.Join(h.dir, name) }

// write appends s to the file name, creating it.
func (h *harness) write(name, s string) {
	h.t.Helper()
	f, err := os.OpenFile(h.path(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		h.t.Fatal(err)
	}
}

// records takes every record stored so far, in order, and keeps them.
func (h *harness) records() []map[string]any {
	h.t.Helper()
	for {
		if n, _ := h.q.Len(context.Background()); n == 0 {
			return h.got
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := h.q.Claim(ctx, 10_000)
		cancel()
		if err != nil {
			h.t.Fatal(err)
		}
		for _, b := range l.Items() {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				h.t.Fatalf("a record is not JSON: %v: %s", err, b)
			}
			h.got = append(h.got, m)
		}
		if err := l.Ack(context.Background()); err != nil {
			h.t.Fatal(err)
		}
	}
}

// wait waits until n records were stored, and fails on more after a pause.
func (h *harness) wait(n int) []map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(h.records()) < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("%d records stored, want %d: %s", len(h.got), n, h.messages())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // anything more would be a duplicate
	if got := h.records(); len(got) != n {
		h.t.Fatalf("%d records stored, want exactly %d: %s", len(got), n, h.messages())
	}
	return h.got
}

// messages is every record's message so far, for failures and comparisons.
func (h *harness) messages() []string {
	var out []string
	for _, r := range h.got {
		out = append(out, fmt.Sprint(r["message"]))
	}
	return out
}

// sortedMessages is messages in order, for files read concurrently.
func (h *harness) sortedMessages() []string {
	m := h.messages()
	slices.Sort(m)
	return m
}

// marks is the stored file marks, decoded.
func (h *harness) marks() map[string]position {
	h.t.Helper()
	raw, err := h.q.Marks(context.Background(), markPrefix)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]position{}
	for k, v := range raw {
		p, err := decodePosition(v)
		if err != nil {
			h.t.Fatal(err)
		}
		out[k] = p
	}
	return out
}

// openDeleted lists this process's descriptors on deleted files.
func openDeleted(t *testing.T) []string {
	t.Helper()
	fds, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, fd := range fds {
		target, _ := os.Readlink("/proc/self/fd/" + fd.Name())
		if strings.HasSuffix(target, " (deleted)") {
			out = append(out, target)
		}
	}
	return out
}

func numbered(prefix string, from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "%s %d\n", prefix, i)
	}
	return b.String()
}

var testLevel = func() slog.Level {
	if os.Getenv("FILES_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}()
