package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

// The crash test runs this test binary again as a child that serves the
// HTTP endpoint over a real outbox; the parent posts records, remembers which
// got 202, kills the child with SIGKILL and counts them in the outbox.
func TestMain(m *testing.M) {
	if path := os.Getenv("INGEST_CRASH_PATH"); path != "" {
		os.Exit(serveChild(path))
	}
	os.Exit(m.Run())
}

func serveChild(path string) int {
	q, err := outbox.Open(context.Background(), path, "main", outbox.Options[[]byte]{})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	srv := NewHTTPServer("", NewHTTP(HTTPConfig{Host: "child"}, QueueAppender{Queue: q}))
	srv.Serve(ln)
	return 1
}

func TestCrashAfterAccepted(t *testing.T) {
	t.Run("every record answered 202 survives kill -9", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "in.db")
		cmd := exec.Command(os.Args[0], "-test.run", "^$")
		cmd.Env = append(os.Environ(), "INGEST_CRASH_PATH="+path)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		sc := bufio.NewScanner(out)
		if !sc.Scan() || strings.HasPrefix(sc.Text(), "error") {
			t.Fatalf("child: %q", sc.Text())
		}
		url := "http://" + sc.Text() + "/v1/logs"

		var mu sync.Mutex
		accepted := map[string]bool{}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		client := &http.Client{Timeout: 5 * time.Second}
		for c := range 8 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					var body strings.Builder
					for j := range 10 {
						fmt.Fprintf(&body, "{\"n\":\"%d-%d-%d\"}\n", c, i, j)
					}
					resp, err := client.Post(url, "application/x-ndjson", strings.NewReader(body.String()))
					if err != nil {
						return // the child is gone
					}
					resp.Body.Close()
					if resp.StatusCode == 202 {
						mu.Lock()
						for j := range 10 {
							accepted[fmt.Sprintf("%d-%d-%d", c, i, j)] = true
						}
						mu.Unlock()
					}
				}
			})
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(accepted)
			mu.Unlock()
			if n >= 5000 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Kill() // SIGKILL, with requests in flight
		stop()
		wg.Wait()
		cmd.Wait()

		q, err := outbox.Open(context.Background(), path, "main", outbox.Options[[]byte]{})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		found := map[string]bool{}
		for _, r := range stored(t, q) {
			found[r["n"].(string)] = true
		}
		lost := 0
		for n := range accepted {
			if !found[n] {
				lost++
			}
		}
		if lost > 0 || len(accepted) == 0 {
			t.Fatalf("%d of %d accepted records lost", lost, len(accepted))
		}
		t.Logf("%d records answered 202, all found after kill -9 (%d stored in all)", len(accepted), len(found))
	})
}

func TestDiskFull(t *testing.T) {
	t.Run("a full disk answers 507 and stores nothing of the request", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a small tmpfs here: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
		q, err := outbox.Open(context.Background(), filepath.Join(dir, "in.db"), "main", outbox.Options[[]byte]{})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		_, url := endpoint(t, HTTPConfig{}, q)
		body := []byte(strings.Repeat(`{"message":"`+strings.Repeat("x", 1000)+`"}`+"\n", 50))
		var last reply
		for range 100 {
			if last = post(t, url, "application/x-ndjson", body); last.status != 202 {
				break
			}
		}
		if last.status != 507 {
			t.Fatalf("last answer %d %+v, want 507", last.status, last.body)
		}
		n, _ := q.Len(context.Background())
		if n%50 != 0 {
			t.Fatalf("Len = %d: part of a refused request was stored", n)
		}
		if !errors.Is(q.SendBatch(context.Background(), [][]byte{body}), outbox.ErrDiskFull) {
			t.Fatal("the disk is not full after 507")
		}
	})
}
