package ingest

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/outboxd/outboxd/ingest/tlsconf"
	"github.com/outboxd/outboxd/ingest/tlsconf/tlstest"
)

// TestSyslogTLSHandshakeBound: a tls:// connection that never completes its
// handshake is closed at the bound (here the idle timeout, shorter than
// tlsconf.HandshakeTimeout) and counted, and takes no records; a real
// client on the same listener is served meanwhile.
func TestSyslogTLSHandshakeBound(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	srv := ca.Server(t, "server", tlstest.Options{})
	cli := ca.Client(t, "client", tlstest.Options{})
	c, err := tlsconf.New("t.tls", tlsconf.Files{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	q := openQueue(t, 0)
	s, addr := startSyslogConfig(t, SyslogConfig{Listen: "tls://127.0.0.1:0", TLS: c.Config(), IdleTimeout: 300 * time.Millisecond}, q)
	idle, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start := time.Now()
	// A real client gets through while the idle one waits.
	conn, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{cli.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "<13>1 2026-12-02T12:00:00Z h app - - - over tls\n")
	conn.CloseWrite()
	io.Copy(io.Discard, conn)
	conn.Close()
	// The idle one is closed by the server at the bound.
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = idle.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("a connection that never shook hands was not closed within 5 s")
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the bound", took)
	}
	waitFor(t, "the failed handshake counted and the record stored", func() bool { return s.HandshakeErrors.Load() == 1 && s.Received.Load() == 1 })
}
