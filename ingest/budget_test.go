package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestBudget(t *testing.T) {
	t.Run("waiters are served in order once bytes are released; a cancelled waiter takes nothing", func(t *testing.T) {
		b := NewBudget(100)
		if !b.TryAcquire(80) || b.TryAcquire(30) {
			t.Fatal("TryAcquire: 80 of 100 then 30 more")
		}
		ctx, cancel := context.WithCancel(context.Background())
		gave := make(chan error, 1)
		go func() { gave <- b.Acquire(ctx, 50) }()
		waitFor(t, "the waiter to queue", func() bool { return b.waiting() == 1 })
		if b.TryAcquire(10) {
			t.Fatal("TryAcquire jumped the queue")
		}
		cancel()
		if err := <-gave; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Acquire: %v", err)
		}
		got := make(chan error, 1)
		go func() { got <- b.Acquire(context.Background(), 60) }()
		waitFor(t, "the second waiter to queue", func() bool { return b.waiting() == 1 })
		b.Release(40)
		if err := <-got; err != nil || b.InUse() != 100 {
			t.Fatalf("Acquire after Release: %v, in use %d", err, b.InUse())
		}
		b.Release(100)
		if b.InUse() != 0 {
			t.Fatalf("in use %d after releasing all", b.InUse())
		}
	})
	t.Run("more than the whole budget is refused at once", func(t *testing.T) {
		if err := NewBudget(100).Acquire(context.Background(), 101); !errors.Is(err, ErrOverBudget) {
			t.Fatalf("Acquire(101) of 100: %v", err)
		}
	})
}

func (b *Budget) waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiters.Len()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStoredRecordLimit(t *testing.T) {
	t.Run("a syslog message of control bytes is cut so that its record fits, flagged and counted", func(t *testing.T) {
		for _, listen := range []string{"tcp://127.0.0.1:0", "udp://127.0.0.1:0"} {
			q := openQueue(t, 0)
			s, addr := startSyslogConfig(t, SyslogConfig{Listen: listen, MaxMessageBytes: 8 << 10}, q)
			conn, err := net.Dial(addr.Network(), addr.String())
			if err != nil {
				t.Fatal(err)
			}
			msg := "<14>1 - h app - - - " + strings.Repeat("\x01", 8<<10-20)
			if _, err := conn.Write([]byte(msg + "\n")); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			if r := waitRecords(t, q, 1)[0]; r["truncated"] != true {
				t.Fatalf("%s: the record does not say it was cut", listen)
			}
			if got := s.Bytes.Load(); got > 8<<10+envelopeRoom || got < 8<<10 {
				t.Fatalf("%s: stored record of %d bytes; limit %d", listen, got, 8<<10+envelopeRoom)
			}
			if s.Truncated.Load() != 1 {
				t.Fatalf("%s: Truncated = %d", listen, s.Truncated.Load())
			}
		}
	})
	t.Run("the record says it was cut, and a header of control bytes falls back to the raw message", func(t *testing.T) {
		s, _ := NewSyslog(SyslogConfig{Listen: "udp://127.0.0.1:0", MaxMessageBytes: 1000}, nil)
		sd := `[x@1 a="` + strings.Repeat("\x02", 990) + `"]`
		for _, msg := range []string{"<14>1 - h app - - - " + strings.Repeat("\x03", 980), "<14>1 - h app - - " + sd + " m"} {
			rec, truncated := s.envelope([]byte(msg), sender{host: "peer"}, false)
			var v map[string]any
			if err := json.Unmarshal(rec, &v); err != nil || len(rec) > 1000+envelopeRoom || !truncated || v["truncated"] != true {
				t.Fatalf("record of %d bytes (limit %d), truncated %v: %.200s", len(rec), 1000+envelopeRoom, truncated, rec)
			}
		}
	})
	t.Run("an HTTP text line of control bytes is cut so that its record fits, flagged and counted", func(t *testing.T) {
		q := openQueue(t, 0)
		h, url := endpoint(t, HTTPConfig{MaxRecordBytes: 10 << 10}, q)
		r := post(t, url, "text/plain", []byte("ok\n"+strings.Repeat("\x07", 10<<10)+"\n"))
		if r.status != 202 || r.body.Accepted != 2 {
			t.Fatalf("status %d %+v", r.status, r.body)
		}
		recs := stored(t, q)
		if h.Truncated.Load() != 1 || recs[1]["truncated"] != true || recs[0]["truncated"] != nil {
			t.Fatalf("Truncated %d, records %v", h.Truncated.Load(), recs[0])
		}
		if n := h.Bytes.Load(); n > 2*(10<<10+envelopeRoom) {
			t.Fatalf("stored %d bytes", n)
		}
	})
}

func TestHTTPBudget(t *testing.T) {
	t.Run("a taken budget answers 503 with Retry-After; a body that needs more than the whole budget 413", func(t *testing.T) {
		q := openQueue(t, 0)
		budget := NewBudget(1 << 20)
		_, url := endpoint(t, HTTPConfig{Budget: budget, BudgetWait: 20 * time.Millisecond}, q)
		if !budget.TryAcquire(1 << 20) {
			t.Fatal("TryAcquire the whole budget")
		}
		r := post(t, url, "application/x-ndjson", []byte(`{"a":1}`+"\n"))
		if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body.Error, "budget") {
			t.Fatalf("with the budget taken: %d %v %+v", r.status, r.header, r.body)
		}
		budget.Release(1 << 20)
		if r := post(t, url, "application/x-ndjson", []byte(`{"a":1}`+"\n")); r.status != 202 {
			t.Fatalf("with the budget free: %d %+v", r.status, r.body)
		}
		big := bytes.Repeat([]byte(`{"m":"`+strings.Repeat("x", 1000)+`"}`+"\n"), 2000) // 2 MB of records
		if r := post(t, url, "application/x-ndjson", big); r.status != 413 || !strings.Contains(r.body.Error, "budget") {
			t.Fatalf("a body over the budget: %d %+v", r.status, r.body)
		}
		if budget.InUse() != 0 {
			t.Fatalf("%d bytes still held after the requests", budget.InUse())
		}
	})
}

func TestHTTPDefaultBudget(t *testing.T) {
	t.Run("a 4.75 MiB NDJSON body of 256-byte records fits the default budget", func(t *testing.T) {
		q := openQueue(t, 0)
		_, url := endpoint(t, HTTPConfig{}, q)
		body := ndjsonBody(19 << 18 / 256) // 4.75 MiB
		if r := post(t, url, "application/x-ndjson", body); r.status != 202 {
			t.Fatalf("%d bytes: %d %+v", len(body), r.status, r.body)
		}
	})
}

func TestSyslogBudget(t *testing.T) {
	t.Run("TCP stops reading while the budget is taken and goes on when it is free; UDP drops and counts", func(t *testing.T) {
		budget := NewBudget(1 << 20)
		q := openQueue(t, 0)
		tcp, tcpAddr := startSyslogConfig(t, SyslogConfig{Listen: "tcp://127.0.0.1:0", Budget: budget}, q)
		udp, udpAddr := startSyslogConfig(t, SyslogConfig{Listen: "udp://127.0.0.1:0", Budget: budget}, q)
		if !budget.TryAcquire(1 << 20) {
			t.Fatal("TryAcquire the whole budget")
		}
		conn, err := net.Dial("tcp", tcpAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "<14>1 - h app - - - while taken\n")
		uconn, err := net.Dial("udp", udpAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer uconn.Close()
		fmt.Fprintf(uconn, "<14>1 - h app - - - datagram")
		waitFor(t, "the datagram to be dropped", func() bool { return udp.Dropped.Load() == 1 })
		time.Sleep(100 * time.Millisecond)
		if n := tcp.Received.Load(); n != 0 {
			t.Fatalf("TCP stored %d records while the budget was taken", n)
		}
		budget.Release(1 << 20)
		waitFor(t, "the TCP record once the budget is free", func() bool { return tcp.Received.Load() == 1 })
		waitFor(t, "the connection's reserve to come back", func() bool { return budget.InUse() == 0 })
	})
}

func TestSyslogConnections(t *testing.T) {
	t.Run("connections over the limit are closed and counted; an idle one is closed after the timeout", func(t *testing.T) {
		q := openQueue(t, 0)
		s, addr := startSyslogConfig(t, SyslogConfig{Listen: "tcp://127.0.0.1:0", MaxConnections: 2, IdleTimeout: 300 * time.Millisecond}, q)
		var conns []net.Conn
		for range 3 {
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns = append(conns, c)
		}
		waitFor(t, "the third connection to be refused", func() bool { return s.RefusedConns.Load() == 1 })
		start := time.Now()
		var wg sync.WaitGroup
		for i, c := range conns[:2] {
			wg.Go(func() {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := c.Read(make([]byte, 1))
				var ne net.Error
				if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
					t.Errorf("connection %d: read %v; want the server's close", i, err)
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
			t.Fatalf("idle connections closed after %v; IdleTimeout 300ms", d)
		}
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "<14>1 - h app - - - served again\n")
		if r := waitRecords(t, q, 1)[0]; r["message"] != "served again" {
			t.Fatalf("record %v", r)
		}
	})
}

func TestSyslogFramingError(t *testing.T) {
	t.Run("an octet-counting length over the limit closes the connection, counted; what came before is stored", func(t *testing.T) {
		q := openQueue(t, 0)
		s, addr := startSyslog(t, "tcp://127.0.0.1:0", q)
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "<14>1 - h app - - - before\n")
		go conn.Write(bytes.Repeat([]byte("9"), 4<<20)) // fails once the server closes
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var ne net.Error
		if _, err := conn.Read(make([]byte, 1)); err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("read %v; want the server's close", err)
		}
		if r := waitRecords(t, q, 1)[0]; r["message"] != "before" || s.FramingErrors.Load() != 1 {
			t.Fatalf("record %v, FramingErrors %d", r, s.FramingErrors.Load())
		}
	})
}

func TestJSONPrefix(t *testing.T) {
	t.Run("the prefix's escaped length is within the limit, and one more character would not be", func(t *testing.T) {
		for _, in := range []string{"plain text", "\x01\x02\"\\\n<>&", "é😀\u2028x\xff\xfey", strings.Repeat("\x00a", 50)} {
			for limit := range 40 {
				n := jsonPrefix([]byte(in), limit)
				got := len(appendJSONString(nil, in[:n])) - 2
				if got > limit {
					t.Fatalf("%q limit %d: prefix %d escapes to %d", in, limit, n, got)
				}
				if n < len(in) {
					_, size := utf8.DecodeRuneInString(in[n:])
					if longer := len(appendJSONString(nil, in[:n+size])) - 2; longer <= limit {
						t.Fatalf("%q limit %d: prefix %d stops short (%d would fit)", in, limit, n, n+size)
					}
				}
			}
		}
	})
}
