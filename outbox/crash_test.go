package outbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The crash tests run this test binary again as a child process, which works
// on a queue and prints what it was told is durable; the parent kills it with
// SIGKILL mid-stream, reopens the queue and checks the child's every claim.
const childEnv = "OUTBOX_CRASH_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Getenv("OUTBOX_CRASH_PATH")))
	}
	os.Exit(m.Run())
}

// runChild never returns on its own: the parent kills it.
func runChild(role, path string) int {
	ctx := context.Background()
	d, err := ParseDurability(os.Getenv("OUTBOX_CRASH_DURABILITY"))
	if err != nil {
		d = DurabilityFull
	}
	q, err := Open(ctx, path, "events", Options[int]{Durability: d})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		mu.Unlock()
	}
	switch role {
	case "dump":
		// Print every record in the queue, for a parent that must not open
		// the file itself (it serves the FUSE mount the file is on).
		l, err := q.claimNow(ctx, 1<<30, 0)
		if err != nil {
			say("error %v", err)
			return 1
		}
		ids := []string{"have"}
		if l != nil {
			for _, v := range l.Items() {
				ids = append(ids, strconv.Itoa(v))
			}
			l.Release(ctx)
		}
		say("%s", strings.Join(ids, " "))
		if err := q.Close(); err != nil {
			say("error %v", err)
			return 1
		}
		return 0
	case "send":
		// 8 senders, each with its own numbers; a number is printed only
		// after Send returned for it.
		base, _ := strconv.Atoi(os.Getenv("OUTBOX_CRASH_BASE")) // numbers unique across runs
		var wg sync.WaitGroup
		for s := range 8 {
			wg.Go(func() {
				for i := base + s; ; i += 8 {
					if err := q.Send(ctx, i); err != nil {
						say("error %v", err)
						return
					}
					say("acked %d", i)
				}
			})
		}
		if os.Getenv("OUTBOX_CRASH_CONSUME") != "" {
			// A consumer acks while the senders send, so that relaxed ack
			// commits interleave with synced sends.
			wg.Go(func() {
				for {
					l, err := q.Claim(ctx, 100)
					if err != nil {
						say("error %v", err)
						return
					}
					// Said before the ack: from here on, these records may
					// be gone after a crash, and rightly so.
					ids := []string{"consumed"}
					for _, v := range l.Items() {
						ids = append(ids, strconv.Itoa(v))
					}
					say("%s", strings.Join(ids, " "))
					if err := l.Ack(ctx); err != nil {
						say("error %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
	case "marked":
		return runMarkedChild(ctx, q, say)
	case "consume":
		// Two leases are out at any time: the kill always catches records
		// that are claimed and not acked.
		for {
			l, err := q.Claim(ctx, 50)
			if err != nil {
				say("error %v", err)
				return 1
			}
			held, err := q.Claim(ctx, 50)
			if err != nil {
				say("error %v", err)
				return 1
			}
			if err := l.Ack(ctx); err != nil {
				say("error %v", err)
				return 1
			}
			if err := held.Release(ctx); err != nil {
				say("error %v", err)
				return 1
			}
			ids := make([]string, len(l.Items()))
			for i, v := range l.Items() {
				ids[i] = strconv.Itoa(v)
			}
			say("acked %s", strings.Join(ids, " "))
		}
	}
	return 1
}

// startChild runs role against path and returns its output lines as they come.
func startChild(t *testing.T, role, path string, env ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "OUTBOX_CRASH_PATH="+path)
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 64<<20) // a dump is one long line
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, lines
}

// killAfter reads "acked ..." lines until n numbers were reported, then
// kills the child and reads what it had already written.
func killAfter(t *testing.T, cmd *exec.Cmd, lines <-chan string, n int) map[int]bool {
	t.Helper()
	acked, _ := killAfterConsumed(t, cmd, lines, n)
	return acked
}

// killAfterConsumed is killAfter that also returns the numbers the child
// reported consumed ("consumed ..." lines).
func killAfterConsumed(t *testing.T, cmd *exec.Cmd, lines <-chan string, n int) (acked, consumed map[int]bool) {
	t.Helper()
	acked, consumed = map[int]bool{}, map[int]bool{}
	timeout := time.After(60 * time.Second)
	record := func(line string) {
		if strings.HasPrefix(line, "error") {
			t.Fatalf("child: %s", line)
		}
		f := strings.Fields(line)
		if len(f) == 0 || (f[0] != "acked" && f[0] != "consumed") {
			return
		}
		into := acked
		if f[0] == "consumed" {
			into = consumed
		}
		for _, s := range f[1:] {
			v, _ := strconv.Atoi(s)
			into[v] = true
		}
	}
	for len(acked) < n {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("child exited early after %d records", len(acked))
			}
			record(line)
		case <-timeout:
			t.Fatalf("child reported only %d records in 60s", len(acked))
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	for line := range lines {
		record(line)
	}
	cmd.Wait()
	return acked, consumed
}

func TestCrash(t *testing.T) {
	t.Run("every record whose Send returned survives kill -9", func(t *testing.T) {
		path := tempDB(t)
		cmd, lines := startChild(t, "send", path)
		acked := killAfter(t, cmd, lines, 3000)

		q := mustOpen(t, path, "events", Options[int]{})
		got := map[int]int{}
		for _, v := range drain(t, q) {
			got[v]++
		}
		for v := range acked {
			if got[v] == 0 {
				t.Errorf("record %d was acknowledged and is lost", v)
			}
		}
		for v, n := range got {
			if n > 1 {
				t.Errorf("record %d stored %d times", v, n)
			}
		}
		t.Logf("%d acknowledged before the kill, %d found after restart", len(acked), len(got))
	})

	t.Run("claimed records that were not acked are delivered after kill -9, acked ones are not", func(t *testing.T) {
		ctx := testCtx(t)
		path := tempDB(t)
		const total = 20_000
		q, _ := Open(ctx, path, "events", Options[int]{})
		for i := 0; i < total; i += 1000 {
			q.SendBatch(ctx, seq(i, 1000))
		}
		q.Close()

		cmd, lines := startChild(t, "consume", path)
		acked := killAfter(t, cmd, lines, 5000)

		q = mustOpen(t, path, "events", Options[int]{})
		left := drain(t, q)
		inQueue := map[int]bool{}
		for _, v := range left {
			inQueue[v] = true
			if acked[v] {
				t.Errorf("record %d was acked and came back", v)
			}
		}
		for v := range total {
			if !acked[v] && !inQueue[v] {
				t.Errorf("record %d is neither acked nor in the queue: lost", v)
			}
		}
		for i := 1; i < len(left); i++ {
			if left[i] <= left[i-1] {
				t.Fatalf("order broken after restart: %d then %d", left[i-1], left[i])
			}
		}
		t.Logf("%d acked before the kill, %d left after restart", len(acked), len(left))
	})
}
