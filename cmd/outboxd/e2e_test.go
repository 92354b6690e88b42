package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests build the real binary and run it as a child process.
var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

func outboxdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outboxd-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "outboxd")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// freePort returns a port nothing listens on now and that no other call in
// this process returned: the kernel may hand a just-closed port out again,
// and two listeners of one config on the same port make it invalid.
func freePort(t *testing.T) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if _, taken := portsGiven.LoadOrStore(port, true); !taken {
			return port
		}
	}
}

var portsGiven sync.Map // int -> true

// collector keeps every NDJSON line posted to it.
type collector struct {
	mu    sync.Mutex
	lines []string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(400)
		return
	}
	c.mu.Lock()
	c.lines = append(c.lines, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	c.mu.Unlock()
}

func (c *collector) count(substr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return countContaining(c.lines, substr)
}

func TestEndToEnd(t *testing.T) {
	t.Run("records sent with HTTP and logger reach the collector; SIGTERM drains and exits 0", func(t *testing.T) {
		bin := outboxdBinary(t)
		coll := &collector{}
		srv := httptest.NewServer(coll)
		defer srv.Close()
		httpPort, syslogPort := freePort(t), freePort(t)
		cfg := fmt.Sprintf(`data_dir: %s
ingest:
  http:
    listen: 127.0.0.1:%d
  syslog:
    - listen: tcp://127.0.0.1:%d
sinks:
  collector:
    type: http
    url: %s
    linger: 10ms
routes:
  - sinks: [collector]
`, t.TempDir(), httpPort, syslogPort, srv.URL)
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(cfgPath, []byte(cfg), 0o600)

		cmd := exec.Command(bin, "run", "-config", cfgPath)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		url := fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort)
		waitUntil(t, "the daemon to listen", func() bool {
			resp, err := http.Get(url)
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		var body strings.Builder
		for i := range 100 {
			fmt.Fprintf(&body, "{\"message\":\"e2e-http %d\"}\n", i)
		}
		resp, err := http.Post(url, "application/x-ndjson", strings.NewReader(body.String()))
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("post: %v %v", err, resp)
		}
		resp.Body.Close()
		if out, err := exec.Command("logger", "--server", "127.0.0.1", "--port", fmt.Sprint(syslogPort), "--tcp", "--rfc5424", "e2e-syslog").CombinedOutput(); err != nil {
			t.Fatalf("logger: %v %s", err, out)
		}
		waitUntil(t, "every record at the collector", func() bool {
			return coll.count("e2e-http") == 100 && coll.count("e2e-syslog") == 1
		})
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no exit within 15s of SIGTERM\n%s", stderr.String())
		}
	})
}

func TestCheck(t *testing.T) {
	bin := outboxdBinary(t)
	good, _ := filepath.Glob("../../testdata/config/*.yaml")
	for _, f := range good {
		t.Run("check accepts "+filepath.Base(f), func(t *testing.T) {
			if out, err := exec.Command(bin, "check", "-config", f).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		})
	}
	t.Run("check refuses an invalid config with every problem on its own line, exit 1", func(t *testing.T) {
		out, err := exec.Command(bin, "check", "-config", "../../testdata/config/invalid/many-problems.yaml").CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v", err)
		}
		lines := 0
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "  ") {
				lines++
			}
		}
		if lines < 8 || !strings.Contains(string(out), `routes[0].sinks: no sink named "missing"`) {
			t.Fatalf("output:\n%s", out)
		}
	})
	invalid, _ := filepath.Glob("../../testdata/config/invalid/*.yaml")
	for _, f := range invalid {
		t.Run("check refuses "+filepath.Base(f)+" with the expected messages", func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".want")
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "check", "-config", f).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v\n%s", err, out)
			}
			for _, w := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	for _, args := range [][]string{{"-h"}, {"run", "-h"}, {"check", "-h"}, {"stats", "-h"}, {"dlq", "-h"},
		{"dlq", "list", "-h"}, {"dlq", "replay", "-h"}, {"dlq", "purge", "-h"}, {"version", "-h"}} {
		t.Run(strings.Join(args, " ")+" prints usage and exits 0", func(t *testing.T) {
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "usage: outboxd") {
				t.Fatalf("%v:\n%s", err, out)
			}
		})
	}
	t.Run("version prints a version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "outboxd ") {
			t.Fatalf("%v: %s", err, out)
		}
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }

// waitUntilOr is waitUntil that adds why() to the failure.
func waitUntilOr(t *testing.T, what string, cond func() bool, why func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s: %s", what, why())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
