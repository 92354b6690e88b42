package ingest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"context"
	"path/filepath"

	"github.com/outboxd/outboxd/ingest/tlsconf"
	"github.com/outboxd/outboxd/ingest/tlsconf/tlstest"
	"github.com/outboxd/outboxd/outbox"
)

// The ingest benchmarks, at durability full (every 202 waited for its fsync):
//
//	go test -run '^$' -bench . -benchtime 3s -count 5 ./ingest/

func benchQueue(b *testing.B) *outbox.Queue[[]byte] {
	q, err := outbox.Open(context.Background(), filepath.Join(b.TempDir(), "in.db"), "main", outbox.Options[[]byte]{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

// ndjsonBody is n records of about 256 bytes.
func ndjsonBody(n int) []byte {
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, `{"level":"info","app":"pos","till":3,"seq":%d,"message":"%s"}`+"\n", i, strings.Repeat("x", 190))
	}
	return buf.Bytes()
}

// benchTLS is a server certificate and a client's, for the TLS variants:
// the client certificate is required, as on a site network.
func benchTLS(b *testing.B) (server *tls.Config, client *tls.Config) {
	ca := tlstest.NewCA(b, "bench-ca")
	srv := ca.Server(b, "bench-server", tlstest.Options{})
	cli := ca.Client(b, "bench-client", tlstest.Options{})
	s, err := tlsconf.New("bench.tls", tlsconf.Files{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.File})
	if err != nil {
		b.Fatal(err)
	}
	return s.Config("http/1.1"), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{cli.TLS}}
}

func BenchmarkHTTPIngest(b *testing.B) {
	for _, per := range []int{100, 1000} {
		for _, withTLS := range []bool{false, true} {
			b.Run(fmt.Sprintf("records=%d/clients=16/tls=%v", per, withTLS), func(b *testing.B) { benchHTTPIngest(b, per, withTLS) })
		}
	}
}

func benchHTTPIngest(b *testing.B, per int, withTLS bool) {
	q := benchQueue(b)
	srv := httptest.NewUnstartedServer(NewHTTP(HTTPConfig{Host: "bench"}, QueueAppender{Queue: q}))
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	var conns atomic.Int64 // connections opened: a handshake each under TLS
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	if withTLS {
		srv.TLS, transport.TLSClientConfig = benchTLS(b)
		srv.StartTLS()
	} else {
		srv.Start()
	}
	b.Cleanup(srv.Close)
	body := ndjsonBody(per)
	client := &http.Client{Transport: transport}
	var mu sync.Mutex
	var lat []time.Duration
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range work {
				start := time.Now()
				resp, err := client.Post(srv.URL+"/v1/logs", "application/x-ndjson", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body) // read to the end: the connection is reused
				resp.Body.Close()
				if resp.StatusCode != 202 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(conns.Load()), "conns")
}

// BenchmarkSyslogTCP is one connection streaming RFC 5424 lines, plain and
// over TLS (tls://, a client certificate required).
func BenchmarkSyslogTCP(b *testing.B) {
	for _, withTLS := range []bool{false, true} {
		b.Run(fmt.Sprintf("tls=%v", withTLS), func(b *testing.B) { benchSyslogTCP(b, withTLS) })
	}
}

func benchSyslogTCP(b *testing.B, withTLS bool) {
	q := benchQueue(b)
	cfg := SyslogConfig{Listen: "tcp://127.0.0.1:0"}
	var clientTLS *tls.Config
	if withTLS {
		cfg.Listen = "tls://127.0.0.1:0"
		cfg.TLS, clientTLS = benchTLS(b)
	}
	s, err := NewSyslog(cfg, QueueAppender{Queue: q})
	if err != nil {
		b.Fatal(err)
	}
	addr, err := s.Listen()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	var conn net.Conn
	if withTLS {
		conn, err = tls.Dial("tcp", addr.String(), clientTLS)
	} else {
		conn, err = net.Dial("tcp", addr.String())
	}
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	line := []byte("<134>1 2026-11-26T14:59:58.123456Z till-3 pos 4242 TX - " + strings.Repeat("x", 190) + "\n")
	w := bufio.NewWriterSize(conn, 256<<10)
	b.ResetTimer()
	for range b.N {
		w.Write(line)
	}
	w.Flush()
	for s.Received.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkSyslogEnvelope is the CPU a syslog line costs before the outbox:
// parse, envelope, JSON.
func BenchmarkSyslogEnvelope(b *testing.B) {
	line := []byte("<14>1 2026-11-26T00:00:00Z edge-host bench - - - bench-12345-1764115200000000000 " + strings.Repeat("x", 160))
	s := &Syslog{}
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		s.envelope(line, sender{host: "127.0.0.1"}, false)
	}
}
