package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildOutboxd builds the daemon as a release is built (static, stripped)
// for goarch ("arm" means GOARM=7) into dir, and returns the binary's path.
func buildOutboxd(ctx context.Context, dir, goarch string) (string, error) {
	path := filepath.Join(dir, "outboxd_"+goarch)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, "./cmd/outboxd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM=7")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build outboxd for %s: %w\n%s", goarch, err, out)
	}
	return path, nil
}

// daemon is a running outboxd child process.
type daemon struct {
	cmd  *exec.Cmd
	dir  string
	mu   sync.Mutex
	log  bytes.Buffer
	done chan error
}

func (d *daemon) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.Write(b)
}

func (d *daemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// startDaemon writes cfg to dir/config.yaml, runs bin on it with dir as the
// working directory and extra flags of `run` after the config's, and waits
// until it says it is ready.
func startDaemon(bin, dir, cfg string, extra ...string) (*daemon, error) {
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	d := &daemon{dir: dir, done: make(chan error, 1)}
	d.cmd = exec.Command(bin, append([]string{"run", "-config", path}, extra...)...)
	d.cmd.Dir, d.cmd.Stderr = dir, d
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.logText(), "outboxd ready") {
		select {
		case err := <-d.done:
			return nil, fmt.Errorf("outboxd exited (%v):\n%s", err, d.logText())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.cmd.Process.Kill()
			return nil, fmt.Errorf("outboxd not ready after 30s:\n%s", d.logText())
		}
	}
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM and waits for the exit.
func (d *daemon) stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		return err
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		return fmt.Errorf("outboxd did not stop within 60s of SIGTERM")
	}
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
