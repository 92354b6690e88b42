package forwarders

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

// The crash test runs this test binary again as a child that forwards a queue
// to the parent's collector; the parent kills it with SIGKILL mid-stream.
const childEnv = "FORWARDERS_CRASH_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
	case "drain":
		os.Exit(runDrainChild())
	default:
		os.Exit(runForwardChild(os.Getenv("FORWARDERS_PATH"), os.Getenv("FORWARDERS_URL")))
	}
	os.Exit(m.Run())
}

func runForwardChild(path, url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	q, err := outbox.Open(ctx, path, "sink", outbox.Options[[]byte]{})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer q.Close()
	sink, err := NewHTTP(HTTPConfig{URL: url})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	w := NewWorker(Config{Name: "crash", Batching: Batching{MaxRecords: 200, Linger: -1}, Retry: fastRetry, Logger: quietLog}, q, sink)
	fmt.Println("running")
	if err := w.Run(ctx); err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

func startForwarder(t *testing.T, path, url string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "FORWARDERS_PATH="+path, "FORWARDERS_URL="+url)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "running" {
		t.Fatalf("child did not start: %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
			t.Logf("child: %s", sc.Text())
		}
	}()
	return cmd
}

func TestCrashWhileForwarding(t *testing.T) {
	t.Run("kill -9 in the middle of forwarding loses nothing and duplicates at most the two batches in flight", func(t *testing.T) {
		const total = 20_000
		path := filepath.Join(t.TempDir(), "out.db")
		q, err := outbox.Open(context.Background(), path, "sink", outbox.Options[[]byte]{})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, q, 0, total)
		q.Close()
		c := newCollector(t)
		c.setAnswer(func(int, []byte) int { time.Sleep(2 * time.Millisecond); return 200 })

		cmd := startForwarder(t, path, c.URL)
		waitFor(t, "5,000 records at the collector", 30*time.Second, func() bool { return len(c.records()) >= 5000 })
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		atKill := len(c.records())

		cmd = startForwarder(t, path, c.URL)
		waitFor(t, "every record", 60*time.Second, func() bool {
			seen := map[int]bool{}
			for _, r := range c.records() {
				seen[numberOf(t, r)] = true
			}
			return len(seen) == total
		})
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child after SIGTERM: %v", err)
		}
		dups := checkDelivered(t, c.records(), total)
		// One batch may be delivered with its ack not yet committed, the next
		// one on its way: two batches of 200.
		if dups > 400 {
			t.Fatalf("%d duplicates: more than the two batches of 200 in flight at the kill", dups)
		}
		t.Logf("killed with %d delivered; %d duplicates after restart", atKill, dups)
	})
}

func TestIsolation(t *testing.T) {
	t.Run("a sink that is down does not slow a healthy one on the same file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "out.db")
		open := func(table string) *outbox.Queue[[]byte] {
			q, err := outbox.Open(context.Background(), path, table, outbox.Options[[]byte]{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			return q
		}
		healthyQ, deadQ := open("healthy"), open("dead")
		healthy, dead := newCollector(t), newCollector(t)
		dead.setAnswer(func(int, []byte) int { return 503 })
		wh := httpWorker(t, healthyQ, HTTPConfig{URL: healthy.URL}, Config{Name: "healthy", Batching: Batching{Linger: -1}})
		wd := httpWorker(t, deadQ, HTTPConfig{URL: dead.URL}, Config{Name: "dead", Batching: Batching{Linger: -1}})
		runWorker(t, wh)
		runWorker(t, wd)
		for i := 0; i < 10_000; i += 1000 {
			fill(t, deadQ, i, 1000)
			fill(t, healthyQ, i, 1000)
		}
		waitFor(t, "the healthy sink to get everything", 20*time.Second, func() bool { return len(healthy.records()) >= 10_000 })
		checkDelivered(t, healthy.records(), 10_000)
		if n, _ := deadQ.Len(context.Background()); n != 10_000 {
			t.Fatalf("the dead sink's queue holds %d, want all 10,000", n)
		}
		snap, err := wd.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if snap.ConsecutiveFailures == 0 || snap.FailingSince.IsZero() || snap.QueueDepth != 10_000 || snap.LastError == "" {
			t.Fatalf("dead sink snapshot = %+v", snap)
		}
	})
}
