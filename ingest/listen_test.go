package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

func startSyslog(t *testing.T, listen string, q *outbox.Queue[[]byte]) (*Syslog, net.Addr) {
	t.Helper()
	return startSyslogConfig(t, SyslogConfig{Listen: listen}, q)
}

func startSyslogConfig(t *testing.T, cfg SyslogConfig, q *outbox.Queue[[]byte]) (*Syslog, net.Addr) {
	t.Helper()
	s, err := NewSyslog(cfg, QueueAppender{Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, addr
}

func waitRecords(t *testing.T, q *outbox.Queue[[]byte], n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := q.Len(context.Background()); got >= n {
			return stored(t, q)
		}
		if time.Now().After(deadline) {
			got, _ := q.Len(context.Background())
			t.Fatalf("%d of %d records arrived", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runLogger(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("logger"); err != nil {
		t.Skip("util-linux logger is not installed")
	}
	if out, err := exec.Command("logger", args...).CombinedOutput(); err != nil {
		t.Fatalf("logger %v: %v: %s", args, err, out)
	}
}

func TestSyslogWithLogger(t *testing.T) {
	for _, c := range []struct {
		name, network string
		args          []string
		format        string
	}{
		{"TCP, RFC 5424, newline framing", "tcp", []string{"--tcp", "--rfc5424", "--msgid", "TX1", "--sd-id", "shop@1", "--sd-param", `till="3"`}, FormatRFC5424},
		{"TCP, RFC 5424, octet counting", "tcp", []string{"--tcp", "--rfc5424", "--octet-count"}, FormatRFC5424},
		{"TCP, RFC 3164", "tcp", []string{"--tcp", "--rfc3164"}, FormatRFC3164},
		{"UDP, RFC 5424", "udp", []string{"--udp", "--rfc5424"}, FormatRFC5424},
		{"UDP, RFC 3164", "udp", []string{"--udp", "--rfc3164"}, FormatRFC3164},
	} {
		t.Run("logger over "+c.name, func(t *testing.T) {
			q := openQueue(t, 0)
			_, addr := startSyslog(t, c.network+"://127.0.0.1:0", q)
			port := addr.(interface{ String() string }).String()
			port = port[strings.LastIndex(port, ":")+1:]
			args := append([]string{"--server", "127.0.0.1", "--port", port, "--tag", "pos", "--id=4242", "-p", "local3.warning"}, c.args...)
			runLogger(t, append(args, "drawer opened")...)
			recs := waitRecords(t, q, 1)
			r := recs[0]
			if r["message"] != "drawer opened" || r["app"] != "pos" || r["procid"] != "4242" ||
				r["facility"] != "local3" || r["severity"] != "warning" || r["syslog_format"] != c.format || r["source"] != "syslog" {
				b, _ := json.Marshal(r)
				t.Fatalf("record %s", b)
			}
			if c.name == "TCP, RFC 5424, newline framing" {
				sd, _ := r["structured_data"].(map[string]any)
				if r["msgid"] != "TX1" || sd["shop@1"] == nil {
					t.Fatalf("msgid %v, structured data %v", r["msgid"], r["structured_data"])
				}
			}
		})
	}

	t.Run("logger to a Unix datagram socket", func(t *testing.T) {
		q := openQueue(t, 0)
		sock := filepath.Join(t.TempDir(), "syslog.sock")
		startSyslog(t, "unix://"+sock, q)
		runLogger(t, "--socket", sock, "--tag", "cron", "job done")
		r := waitRecords(t, q, 1)[0]
		if r["message"] != "job done" || r["app"] != "cron" {
			b, _ := json.Marshal(r)
			t.Fatalf("record %s", b)
		}
	})
}

func TestSyslogTCPStream(t *testing.T) {
	t.Run("a stream of 20,000 messages in both framings arrives whole and in order", func(t *testing.T) {
		q := openQueue(t, 0)
		s, addr := startSyslog(t, "tcp://127.0.0.1:0", q)
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(conn)
		for i := range 20_000 {
			if i%2 == 0 {
				fmt.Fprintf(w, "<14>1 - h app - - - n=%d\n", i)
			} else {
				m := fmt.Sprintf("<14>1 - h app - - - n=%d", i)
				fmt.Fprintf(w, "%d %s", len(m), m) // octet counting, mixed in
			}
		}
		w.Flush()
		conn.Close()
		recs := waitRecords(t, q, 20_000)
		for i, r := range recs {
			if r["message"] != fmt.Sprintf("n=%d", i) {
				t.Fatalf("record %d: %v", i, r["message"])
			}
		}
		if s.Received.Load() != 20_000 {
			t.Fatalf("Received = %d", s.Received.Load())
		}
	})

	t.Run("a full outbox stops the reading instead of dropping", func(t *testing.T) {
		q := openQueue(t, 100)
		_, addr := startSyslog(t, "tcp://127.0.0.1:0", q)
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		go func() {
			for i := range 300 {
				fmt.Fprintf(conn, "<14>1 - h app - - - n=%d\n", i)
			}
		}()
		deadline := time.Now().Add(10 * time.Second)
		got := 0
		for got < 300 && time.Now().Before(deadline) {
			items, _ := q.RecvBatch(context.Background(), 50) // drain slowly, as a sink would
			for _, it := range items {
				var r map[string]any
				json.Unmarshal(it, &r)
				if r["message"] != fmt.Sprintf("n=%d", got) {
					t.Fatalf("record %d: %v", got, r["message"])
				}
				got++
			}
			if n, _ := q.Len(context.Background()); n > 100 {
				t.Fatalf("Len %d over MaxSize", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got != 300 {
			t.Fatalf("%d of 300 records came through a full outbox", got)
		}
	})
}

func TestReadFrame(t *testing.T) {
	t.Run("both framings; a line over the limit is cut, a line that starts with digits is a line", func(t *testing.T) {
		br := bufio.NewReader(strings.NewReader("5 hello3 abcline one\n8 eight bytwelve bytes\n9-to-5 job\n"))
		for _, want := range []struct {
			msg string
			cut bool
		}{{"hello", false}, {"abc", false}, {"line one\n", false}, {"eight by", false}, {"twelve b", true}, {"9-to-5 j", true}} {
			got, cut, err := readFrame(br, 8)
			if err != nil || string(got) != want.msg || cut != want.cut {
				t.Fatalf("frame = %q, cut %v, %v; want %q, cut %v", got, cut, err, want.msg, want.cut)
			}
		}
	})
	t.Run("an octet-counting length over the limit is an error, read no further than the limit's digits", func(t *testing.T) {
		for _, in := range []string{"9 123456789", "99999 x", "1000000 x", strings.Repeat("7", 1<<20)} {
			r := &countingReader{r: strings.NewReader(in)}
			br := bufio.NewReaderSize(r, 16)
			got, _, err := readFrame(br, 8)
			if !errors.Is(err, errFrameTooLong) || got != nil {
				t.Fatalf("%.20q: frame %q, %v; want errFrameTooLong", in, got, err)
			}
			if r.n > 16 {
				t.Fatalf("%.20q: read %d bytes to find the length too long", in, r.n)
			}
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadLine(t *testing.T) {
	t.Run("lines longer than the read buffer are gathered whole; lines over the limit are cut at it", func(t *testing.T) {
		long := strings.Repeat("y", 40)
		br := bufio.NewReaderSize(strings.NewReader("short\n"+long+"\n"+strings.Repeat("z", 70)+"\n"+strings.Repeat("w", 15)+"\nlast"), 16)
		for _, want := range []string{"short\n", long + "\n", strings.Repeat("z", 64), strings.Repeat("w", 12), "last"} {
			max := 64
			if strings.HasPrefix(want, "w") {
				max = 12 // a line inside the buffer, over the limit
			}
			got, cut, err := readLine(br, max)
			if string(got) != want {
				t.Fatalf("line = %q, want %q", got, want)
			}
			if wantCut := strings.HasPrefix(want, "z") || strings.HasPrefix(want, "w"); cut != wantCut {
				t.Fatalf("line %q: cut = %v, want %v", got, cut, wantCut)
			}
			if want == "last" && err != io.EOF {
				t.Fatalf("last line: err = %v, want EOF", err)
			}
		}
	})
}

func TestSyslogUDPDrops(t *testing.T) {
	t.Run("UDP cannot push back: what does not fit is dropped and counted, never half-stored", func(t *testing.T) {
		q := openQueue(t, 5)
		s, addr := startSyslog(t, "udp://127.0.0.1:0", q)
		conn, err := net.Dial("udp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := range 50 {
			fmt.Fprintf(conn, "<14>1 - h app - - - n=%d", i)
			time.Sleep(time.Millisecond)
		}
		deadline := time.Now().Add(10 * time.Second)
		for s.Received.Load()+s.Dropped.Load() < 50 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		n, _ := q.Len(context.Background())
		// Batches form as datagrams arrive, so how many fit before the
		// outbox filled varies; every datagram is either stored or counted.
		if s.Received.Load() != int64(n) || n > 5 || s.Dropped.Load() == 0 || s.Received.Load()+s.Dropped.Load() != 50 {
			t.Fatalf("received %d, dropped %d, stored %d of 50 (MaxSize 5)", s.Received.Load(), s.Dropped.Load(), n)
		}
	})
}

func TestDefaultListenIsLoopback(t *testing.T) {
	if srv := NewHTTPServer("", NewHTTP(HTTPConfig{}, nil)); !strings.HasPrefix(srv.Addr, "127.0.0.1:") {
		t.Fatalf("default listen address %q is not loopback", srv.Addr)
	}
}

func TestSyslogTruncated(t *testing.T) {
	for _, listen := range []string{"tcp://127.0.0.1:0", "udp://127.0.0.1:0"} {
		t.Run("a message over the limit is cut there, stored and counted over "+listen[:3], func(t *testing.T) {
			q := openQueue(t, 0)
			s, addr := startSyslogConfig(t, SyslogConfig{Listen: listen, MaxMessageBytes: 40}, q)
			conn, err := net.Dial(addr.Network(), addr.String())
			if err != nil {
				t.Fatal(err)
			}
			short := "<14>1 - h app - - - fits"
			long := "<14>1 - h app - - - " + strings.Repeat("y", 50)
			for _, m := range []string{short, long} {
				if _, err := conn.Write([]byte(m + "\n")); err != nil {
					t.Fatal(err)
				}
			}
			conn.Close()
			got := waitRecords(t, q, 2)
			if len(got) != 2 || got[0]["message"] != "fits" || got[1]["message"] != strings.Repeat("y", 40-len("<14>1 - h app - - - ")) {
				t.Fatalf("stored %v", got)
			}
			if n := s.Truncated.Load(); n != 1 {
				t.Fatalf("Truncated = %d, want 1", n)
			}
		})
	}
}
