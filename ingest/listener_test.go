package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// noRoute refuses every record as the daemon's router does when no route
// takes their source.
type noRoute struct{ calls atomic.Int64 }

func (n *noRoute) Append(_ context.Context, source string, _ [][]byte) error {
	n.calls.Add(1)
	return fmt.Errorf("%w from %s", ErrNoRoute, source)
}

// syncBuffer is a log destination tests read while listeners write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func serveSyslog(t *testing.T, s *Syslog) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func TestNoRoute(t *testing.T) {
	for _, network := range []string{"tcp", "udp", "unixgram"} {
		t.Run("syslog over "+network+": unrouted records are discarded at once, counted, logged once, and reading goes on", func(t *testing.T) {
			listen := network + "://127.0.0.1:0"
			if network == "unixgram" {
				listen = "unix://" + filepath.Join(t.TempDir(), "log.sock")
			}
			var logs syncBuffer
			app := &noRoute{}
			s, err := NewSyslog(SyslogConfig{Listen: listen, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, app)
			if err != nil {
				t.Fatal(err)
			}
			addr, err := s.Listen()
			if err != nil {
				t.Fatal(err)
			}
			serveSyslog(t, s)
			conn, err := net.Dial(addr.Network(), addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for i := range 3 {
				fmt.Fprintf(conn, "<14>1 - h app - - - n=%d\n", i)
				// One at a time: each must be refused before the next is read.
				waitFor(t, fmt.Sprintf("record %d to be discarded", i), func() bool { return s.Unrouted.Load() == int64(i+1) })
			}
			if app.calls.Load() != 3 || s.Dropped.Load() != 0 || s.Received.Load() != 0 {
				t.Fatalf("appends %d, dropped %d, received %d", app.calls.Load(), s.Dropped.Load(), s.Received.Load())
			}
			if n := strings.Count(logs.String(), "no route takes source syslog"); n != 1 {
				t.Fatalf("logged %d times:\n%s", n, logs.String())
			}
		})
	}

	t.Run("HTTP: 422 that says no route takes the records", func(t *testing.T) {
		h := NewHTTP(HTTPConfig{Host: "h"}, &noRoute{})
		srv := httptest.NewServer(h)
		defer srv.Close()
		r := post(t, srv.URL+"/v1/logs", "application/x-ndjson", []byte(`{"a":1}`+"\n"))
		if r.status != 422 || !strings.Contains(r.body.Error, "no route takes records from source http") {
			t.Fatalf("%d %+v", r.status, r.body)
		}
	})
}

// flakyListener fails its first Accepts with the scripted errors.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // as long as a real failing accept takes to come back
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

func TestAcceptErrors(t *testing.T) {
	t.Run("out of file descriptors: Accept is retried with backoff, Healthy says so meanwhile, then recovers", func(t *testing.T) {
		q := openQueue(t, 0)
		s, err := NewSyslog(SyslogConfig{Listen: "tcp://127.0.0.1:0"}, QueueAppender{Queue: q})
		if err != nil {
			t.Fatal(err)
		}
		addr, err := s.Listen()
		if err != nil {
			t.Fatal(err)
		}
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		fl := &flakyListener{Listener: s.ln.(net.Listener), errs: []error{emfile, emfile, emfile, emfile, emfile, emfile}}
		s.ln = fl
		serveSyslog(t, s)
		waitFor(t, "Healthy to report the failure", func() bool { return s.Healthy() != nil })
		if err := s.Healthy(); !errors.Is(err, syscall.EMFILE) || !strings.Contains(err.Error(), "accept on tcp://") {
			t.Fatalf("Healthy() = %v", err)
		}
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "<14>1 - h app - - - after EMFILE\n")
		if r := waitRecords(t, q, 1)[0]; r["message"] != "after EMFILE" {
			t.Fatalf("record %v", r)
		}
		if err := s.Healthy(); err != nil {
			t.Fatalf("Healthy() after recovery = %v", err)
		}
	})

	t.Run("a listener closed under it ends Serve with an error, and Healthy keeps it", func(t *testing.T) {
		s, err := NewSyslog(SyslogConfig{Listen: "tcp://127.0.0.1:0"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		s.ln.Close()
		if err := s.Serve(context.Background()); err == nil || s.Healthy() == nil {
			t.Fatalf("Serve = %v, Healthy = %v", err, s.Healthy())
		}
	})
}

func TestSocketMode(t *testing.T) {
	old := syscall.Umask(0o077) // the systemd unit's UMask
	defer syscall.Umask(old)
	for _, c := range []struct {
		mode, want os.FileMode
	}{{0, 0o666}, {0o620, 0o620}} {
		t.Run(fmt.Sprintf("socket_mode %#o gives the socket file %#o under umask 077", c.mode, c.want), func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "log.sock")
			s, err := NewSyslog(SyslogConfig{Listen: "unix://" + sock, SocketMode: c.mode}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Listen(); err != nil {
				t.Fatal(err)
			}
			defer s.close()
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != c.want {
				t.Fatalf("socket file mode %v, want %v", fi.Mode(), c.want)
			}
		})
	}
}
