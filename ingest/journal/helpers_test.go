package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

const remoteBin = "/lib/systemd/systemd-journal-remote"

// needJournal skips a test that needs real journal files when
// systemd-journal-remote (which writes them) or journalctl is missing.
func needJournal(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(remoteBin); err != nil {
		t.Skip("systemd-journal-remote is not installed (apt-get install systemd-journal-remote): it writes the real journal files these tests read")
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skip("journalctl is not installed")
	}
}

// Boot ids of the tests' journals.
const (
	boot1 = "11111111111111111111111111111111"
	boot2 = "22222222222222222222222222222222"
	boot3 = "33333333333333333333333333333333"
	boot4 = "44444444444444444444444444444444"
)

// entry n of boot: realtime and monotonic timestamps grow with n, MESSAGE is
// "line n" unless fields name one.
func entry(boot string, n int, fields ...Field) *Entry {
	e := &Entry{Fields: []Field{
		{"__REALTIME_TIMESTAMP", fmt.Appendf(nil, "%d", 1_700_000_000_000_000+int64(n)*1000)},
		{"__MONOTONIC_TIMESTAMP", fmt.Appendf(nil, "%d", 1_000_000+int64(n)*1000)},
		{"_BOOT_ID", []byte(boot)},
	}}
	hasMsg := false
	for _, f := range fields {
		hasMsg = hasMsg || f.Name == "MESSAGE"
	}
	if !hasMsg {
		e.Fields = append(e.Fields, Field{"MESSAGE", fmt.Appendf(nil, "line %d", n)})
	}
	e.Fields = append(e.Fields, Field{"_HOSTNAME", []byte("h1")})
	e.Fields = append(e.Fields, fields...)
	return e
}

func entries(boot string, from, to int, fields ...Field) []*Entry {
	var es []*Entry
	for n := from; n < to; n++ {
		es = append(es, entry(boot, n, fields...))
	}
	return es
}

// appendJournal appends es to dir/x.journal, a real journal file, through
// systemd-journal-remote.
func appendJournal(t testing.TB, dir string, es []*Entry) {
	t.Helper()
	var in []byte
	for _, e := range es {
		in = appendExport(in, e)
	}
	cmd := exec.Command(remoteBin, "-o", filepath.Join(dir, "x.journal"), "-")
	cmd.Stdin = bytes.NewReader(in)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v: %s", err, out)
	}
}

// memStore is an in-memory Committer: records and marks committed
// together, as the outbox does. full makes commits wait; fail makes them
// fail.
type memStore struct {
	mu      sync.Mutex
	recs    [][]byte
	marks   map[string][]byte
	commits int
	gate    chan struct{} // non-nil: each commit waits for a receive
	fail    error
	most    int // > 0: batches of more records fail as a queue of max_records most does
}

func newMemStore() *memStore { return &memStore{marks: map[string][]byte{}} }

func (m *memStore) AppendMarked(ctx context.Context, source string, records [][]byte, marks []outbox.Mark) error {
	if source != Source {
		return fmt.Errorf("source %q", source)
	}
	m.mu.Lock()
	gate, fail := m.gate, m.fail
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	if m.most > 0 && len(records) > m.most {
		return fmt.Errorf("%w: batch of %d records exceeds MaxSize %d", outbox.ErrQueueFull, len(records), m.most)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range records {
		m.recs = append(m.recs, append([]byte(nil), r...))
	}
	for _, mk := range marks {
		if mk.Value == nil {
			delete(m.marks, mk.Key)
		} else {
			m.marks[mk.Key] = append([]byte(nil), mk.Value...)
		}
	}
	m.commits++
	return nil
}

func (m *memStore) Marks(ctx context.Context, prefix string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.marks {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out, nil
}

// records decodes what was committed.
func (m *memStore) records(t testing.TB) []map[string]any {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]map[string]any, len(m.recs))
	for i, r := range m.recs {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatalf("record %d is not JSON: %v: %s", i, err, r)
		}
	}
	return out
}

func (m *memStore) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

func (m *memStore) mark(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.marks[key])
}

// running is a reader running in the background.
type running struct {
	r    *Reader
	stop func()
}

func start(t testing.TB, cfg Config, c Committer) *running {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 10 * time.Millisecond
		cfg.MaxBackoff = 200 * time.Millisecond
	}
	r := New(cfg, c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	run := &running{r: r}
	var once sync.Once
	run.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(run.stop)
	return run
}

// waitFor polls cond for up to 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// messages lists the records' messages.
func messages(recs []map[string]any) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i], _ = r["message"].(string)
	}
	return out
}

// lines are "line from" .. "line to-1".
func lines(from, to int) []string {
	var out []string
	for n := from; n < to; n++ {
		out = append(out, fmt.Sprintf("line %d", n))
	}
	return out
}

// testLogger logs into the test's output, at debug level with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}
