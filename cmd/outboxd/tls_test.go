package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"google.golang.org/grpc/credentials"

	"github.com/outboxd/outboxd/ingest/tlsconf/tlstest"
	"github.com/outboxd/outboxd/internal/otlptest"
)

// tlsDaemon is a daemon whose HTTP and syslog inputs serve TLS and require
// a client certificate of ca.
type tlsDaemon struct {
	d                    *daemonProc
	c                    *collector
	ca                   *tlstest.CA
	server, client       tlstest.Pair
	httpPort, syslogPort int
	adminPort            int
	cfgPath              string
	certFile, keyFile    string // the server's, where the configuration names them
	httpsURL, syslogAddr string
}

func startTLSDaemon(t *testing.T) *tlsDaemon {
	t.Helper()
	td := &tlsDaemon{c: &collector{}, ca: tlstest.NewCA(t, "site-ca")}
	srv := newServer(td.c)
	t.Cleanup(srv.Close)
	td.server = td.ca.Server(t, "outboxd-1", tlstest.Options{})
	td.client = td.ca.Client(t, "plc-7", tlstest.Options{DNS: []string{"plc-7.site.example"}})
	// The daemon reads its certificate from files of its own, so that a
	// test can replace them as a renewal does.
	dir := t.TempDir()
	td.certFile, td.keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	copyTestFile(t, td.server.CertFile, td.certFile)
	copyTestFile(t, td.server.KeyFile, td.keyFile)
	td.httpPort, td.syslogPort, td.adminPort = freePort(t), freePort(t), freePort(t)
	tlsBlock := fmt.Sprintf("{cert_file: %s, key_file: %s, client_ca_file: %s}", td.certFile, td.keyFile, td.ca.File)
	td.cfgPath = writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(`data_dir: %s
ingest:
  http:
    listen: 127.0.0.1:%d
    path: /ingest
    tls: %s
  syslog:
    - listen: tls://127.0.0.1:%d
      tls: %s
admin:
  listen: 127.0.0.1:%d
sinks:
  collector: {type: http, url: %s, linger: 10ms}
routes:
  - sinks: [collector]
`, t.TempDir(), td.httpPort, tlsBlock, td.syslogPort, tlsBlock, td.adminPort, srv.URL))
	td.d = startDaemon(t, td.cfgPath)
	td.httpsURL = fmt.Sprintf("https://127.0.0.1:%d/ingest", td.httpPort)
	td.syslogAddr = fmt.Sprintf("127.0.0.1:%d", td.syslogPort)
	return td
}

func copyTestFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Written whole, then renamed: the daemon never reads half a file.
	if err := os.WriteFile(to+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".new", to); err != nil {
		t.Fatal(err)
	}
}

// record finds the one record at the collector whose line contains substr.
func (td *tlsDaemon) record(t *testing.T, substr string) map[string]any {
	t.Helper()
	return td.c.record(t, substr)
}

// record waits for the one record at c whose line contains substr.
func (c *collector) record(t *testing.T, substr string) map[string]any {
	t.Helper()
	waitUntil(t, substr+" at the collector", func() bool { return c.count(substr) == 1 })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l, substr) {
			var r map[string]any
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			return r
		}
	}
	return nil
}

func wantClient(t *testing.T, r map[string]any, cn string) {
	t.Helper()
	c, _ := r["tls_client"].(map[string]any)
	if c == nil || c["cn"] != cn {
		t.Fatalf("tls_client = %v, want cn %s; record %v", r["tls_client"], cn, r)
	}
}

func TestTLSInputs(t *testing.T) {
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install %s)", tool, tool)
		}
	}
	td := startTLSDaemon(t)
	curl := func(args ...string) (string, error) {
		out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10", "--cacert", td.ca.File,
			"-H", "Content-Type: application/x-ndjson", "-o", "-", "-w", " %{http_code}"}, args...)...).CombinedOutput()
		return string(out), err
	}

	t.Run("curl with a client certificate: 202, and the record names the client", func(t *testing.T) {
		out, err := curl("--cert", td.client.CertFile, "--key", td.client.KeyFile, "--data", `{"m":"curl-1"}`, td.httpsURL)
		if err != nil || !strings.HasSuffix(out, " 202") {
			t.Fatalf("curl: %v: %s", err, out)
		}
		r := td.record(t, `"m":"curl-1"`)
		wantClient(t, r, "plc-7")
		if dns, _ := r["tls_client"].(map[string]any)["dns"].([]any); len(dns) != 1 || dns[0] != "plc-7.site.example" {
			t.Errorf("tls_client.dns = %v", dns)
		}
	})
	t.Run("curl without a client certificate is refused at the handshake", func(t *testing.T) {
		out, err := curl("--data", `{"m":"curl-anonymous"}`, td.httpsURL)
		if err == nil {
			t.Fatalf("curl succeeded: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
		if td.c.count("curl-anonymous") != 0 {
			t.Fatal("the record of a client without a certificate was stored")
		}
	})
	t.Run("plain HTTP to the TLS listener is refused", func(t *testing.T) {
		out, _ := curl("--data", `{"m":"plain"}`, strings.Replace(td.httpsURL, "https", "http", 1))
		if strings.HasSuffix(out, " 202") {
			t.Fatalf("plain HTTP was accepted: %s", out)
		}
	})
	t.Run("a record that names its own tls_client is refused (400), nothing of it stored", func(t *testing.T) {
		out, err := curl("--cert", td.client.CertFile, "--key", td.client.KeyFile,
			"--data", `{"m":"forged","tls_client":{"cn":"admin"}}`, td.httpsURL)
		if err != nil || !strings.HasSuffix(out, " 400") || !strings.Contains(out, "tls_client") {
			t.Fatalf("curl: %v: %s", err, out)
		}
	})
	sclient := func(version string, msg string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		// -no_ign_eof: the end of stdin ends the session (-quiet alone
		// would wait for the server to close).
		cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", td.syslogAddr, version, "-quiet", "-no_ign_eof",
			"-CAfile", td.ca.File, "-cert", td.client.CertFile, "-key", td.client.KeyFile, "-cipher", "DEFAULT@SECLEVEL=0")
		cmd.Stdin = strings.NewReader(msg)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, v := range []string{"-tls1_2", "-tls1_3"} {
		t.Run("openssl s_client "+v+" sends an RFC 5425 message", func(t *testing.T) {
			msg := "<13>1 2026-12-02T12:00:00Z plc-7 app - - - over " + v
			if out, err := sclient(v, fmt.Sprintf("%d %s", len(msg), msg)); err != nil {
				t.Fatalf("s_client: %v: %s", err, out)
			}
			r := td.record(t, "over "+v)
			wantClient(t, r, "plc-7")
			if r["syslog_format"] != "rfc5424" || r["host"] != "plc-7" {
				t.Errorf("record %v", r)
			}
		})
	}
	t.Run("openssl s_client -tls1_1 is refused", func(t *testing.T) {
		out, err := sclient("-tls1_1", "<13>old protocol\n")
		if err == nil && !strings.Contains(out, "alert") {
			t.Fatalf("s_client over TLS 1.1: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
		if td.c.count("old protocol") != 0 {
			t.Fatal("a message over TLS 1.1 was stored")
		}
		if got := metric(t, td.adminPort, fmt.Sprintf(`outboxd_ingest_tls_handshake_errors_total{endpoint="tls://%s"}`, td.syslogAddr)); got < 1 {
			t.Errorf("handshake errors = %v", got)
		}
	})
	t.Run("a connection that never completes its handshake does not hold the listener", func(t *testing.T) {
		// Many idle connections: each is closed at the handshake timeout;
		// meanwhile a real client still gets through (max_connections 64).
		var conns []io.Closer
		for range 10 {
			c, err := net.Dial("tcp", td.syslogAddr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		msg := "<13>1 2026-12-02T12:00:00Z plc-7 app - - - beside idle handshakes"
		if out, err := sclient("-tls1_3", fmt.Sprintf("%d %s", len(msg), msg)); err != nil {
			t.Fatalf("s_client: %v: %s", err, out)
		}
		td.record(t, "beside idle handshakes")
	})
	t.Run("rsyslog over TLS (gtls, its own client certificate): every message arrives", func(t *testing.T) {
		rsyslogTLS(t, td, 500)
	})
	if err := td.d.stop(t); err != nil {
		t.Fatalf("stop: %v\n%s", err, td.d.log())
	}
}

// rsyslogTLS runs a real rsyslogd that takes messages on a unix socket (from
// logger) and forwards them with omfwd over TLS (RFC 5425, octet counting),
// presenting a client certificate of its own.
func rsyslogTLS(t *testing.T, td *tlsDaemon, n int) {
	if _, err := exec.LookPath("rsyslogd"); err != nil {
		t.Skip("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)")
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(m) == 0 {
			t.Skip("rsyslog-gnutls is not installed (apt-get install rsyslog-gnutls)")
		}
	}
	dir := t.TempDir()
	client := td.ca.Client(t, "rsyslog-gw", tlstest.Options{})
	sock := filepath.Join(dir, "log.sock")
	conf := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory="%[1]s"
  defaultNetstreamDriverCAFile="%[2]s" defaultNetstreamDriverCertFile="%[3]s" defaultNetstreamDriverKeyFile="%[4]s")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="%[5]s")
action(type="omfwd" target="127.0.0.1" port="%[6]d" protocol="tcp" StreamDriver="gtls" StreamDriverMode="1"
  StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost" TCP_Framing="octet-counted"
  template="RSYSLOG_SyslogProtocol23Format" queue.type="LinkedList" action.resumeRetryCount="-1")
`, dir, td.ca.File, client.CertFile, client.KeyFile, sock, td.syslogPort)), 0o600)
	cmd := exec.Command("rsyslogd", "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var out strings.Builder
	var mu sync.Mutex
	cmd.Stdout, cmd.Stderr = lockedWriter{&mu, &out}, lockedWriter{&mu, &out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	waitUntil(t, "rsyslogd's socket", func() bool { _, err := os.Stat(sock); return err == nil })
	for i := range n {
		if o, err := exec.Command("logger", "-u", sock, "-t", "gw", fmt.Sprintf("rsyslog-tls-%d-end", i)).CombinedOutput(); err != nil {
			t.Fatalf("logger: %v: %s", err, o)
		}
	}
	waitUntilOr(t, fmt.Sprintf("%d messages from rsyslog", n), func() bool { return td.c.count("rsyslog-tls-") == n },
		func() string {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprintf("%d arrived; rsyslogd: %s; daemon: %s", td.c.count("rsyslog-tls-"), out.String(), lastLines(td.d.log(), 5))
		})
	for _, i := range []int{0, n - 1} {
		r := td.record(t, fmt.Sprintf("rsyslog-tls-%d-end", i))
		wantClient(t, r, "rsyslog-gw")
		if r["app"] != "gw" || r["syslog_format"] != "rfc5424" {
			t.Errorf("record %v", r)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestTLSReload replaces the inputs' certificate while clients send over
// TLS and sends SIGHUP: nothing acknowledged is lost, connections open
// during the reload go on, and new ones present the new certificate.
func TestTLSReload(t *testing.T) {
	td := startTLSDaemon(t)
	clientCfg := &tls.Config{RootCAs: td.ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{td.client.TLS}}
	var acked atomic.Int64
	var seen sync.Map // server certificate CN -> true
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				cn, err := sendTLSBatch(td.syslogAddr, clientCfg, fmt.Sprintf("reload-%d-%d-", w, k), 50)
				if err != nil {
					errs <- err
					return
				}
				seen.Store(cn, true)
				acked.Add(50)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	next := td.ca.Server(t, "outboxd-2", tlstest.Options{})
	copyTestFile(t, next.CertFile, td.certFile)
	copyTestFile(t, next.KeyFile, td.keyFile)
	td.d.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the reload", func() bool { return strings.Count(td.d.log(), "tls: certificate reloaded") == 2 })
	time.Sleep(500 * time.Millisecond)
	// A broken renewal keeps the certificate in use.
	os.WriteFile(td.keyFile, []byte("not a key"), 0o600)
	td.d.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the refused reload", func() bool { return strings.Count(td.d.log(), "tls: certificate not reloaded") == 2 })
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, cn := range []string{"outboxd-1", "outboxd-2"} {
		if _, ok := seen.Load(cn); !ok {
			t.Errorf("no connection saw the server certificate %s", cn)
		}
	}
	if cn, err := sendTLSBatch(td.syslogAddr, clientCfg, "after-", 1); err != nil || cn != "outboxd-2" {
		t.Fatalf("after a refused reload: %s, %v", cn, err)
	}
	n := int(acked.Load())
	waitUntilOr(t, fmt.Sprintf("%d acknowledged messages", n), func() bool { return td.c.count("reload-") >= n },
		func() string { return fmt.Sprintf("%d arrived", td.c.count("reload-")) })
	if got := td.c.count("reload-"); got != n {
		t.Fatalf("%d messages arrived, %d acknowledged", got, n)
	}
	t.Logf("%d messages over TLS across two reloads: all arrived", n)
	if err := td.d.stop(t); err != nil {
		t.Fatalf("stop: %v\n%s", err, td.d.log())
	}
}

// sendTLSBatch sends n octet-counted messages on one TLS connection, closes
// its sending side and waits for the daemon to close: the daemon closes
// only after it stored what it read. It returns the server certificate's CN.
func sendTLSBatch(addr string, cfg *tls.Config, prefix string, n int) (string, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	w := bufio.NewWriter(c)
	for i := range n {
		msg := fmt.Sprintf("<13>1 2026-12-02T12:00:00Z plc-7 app - - - %s%d-end", prefix, i)
		fmt.Fprintf(w, "%d %s", len(msg), msg)
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	if err := c.CloseWrite(); err != nil {
		return "", err
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return "", fmt.Errorf("waiting for the close: %w", err)
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// TestTLSCheck: an expired certificate is refused by outboxd check and at
// start, naming the key and the file (testdata/tls/expired.pem expired on
// 2021-01-01; it was made for this test and its key is no secret).
func TestTLSCheck(t *testing.T) {
	cert, _ := filepath.Abs("../../testdata/tls/expired.pem")
	key, _ := filepath.Abs("../../testdata/tls/expired.key")
	cfg := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(`data_dir: %s
ingest:
  syslog:
    - listen: tls://127.0.0.1:%d
      tls: {cert_file: %s, key_file: %s}
sinks:
  c: {type: console}
routes:
  - sinks: [c]
`, t.TempDir(), freePort(t), cert, key))
	want := "ingest.syslog[0].tls.cert_file: " + cert + ": the certificate expired on 2021-01-01T00:00:00Z"
	out, err := exec.Command(outboxdBinary(t), "check", "-config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), want) {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if _, err := launchDaemon(t, cfg); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("start: %v", err)
	}
}

// TestTLSOTLP: the Go SDK's OTLP/HTTP and OTLP/gRPC exporters over TLS with
// a client certificate; every record arrives with the mapping and names
// the client. Without a certificate the export fails and nothing is stored.
func TestTLSOTLP(t *testing.T) {
	ca := tlstest.NewCA(t, "site-ca")
	server := ca.Server(t, "outboxd-1", tlstest.Options{})
	client := ca.Client(t, "app-7", tlstest.Options{})
	c := &collector{}
	srv := newServer(c)
	defer srv.Close()
	httpPort, grpcPort := freePort(t), freePort(t)
	tlsBlock := fmt.Sprintf("{cert_file: %s, key_file: %s, client_ca_file: %s}", server.CertFile, server.KeyFile, ca.File)
	cfgPath := writeConfig(t, filepath.Join(t.TempDir(), "config.yaml"), fmt.Sprintf(`data_dir: %s
ingest:
  otlp:
    http: {listen: 127.0.0.1:%d, tls: %s}
    grpc: {listen: 127.0.0.1:%d, tls: %s}
sinks:
  collector: {type: http, url: %s, linger: 10ms}
routes:
  - sinks: [collector]
`, t.TempDir(), httpPort, tlsBlock, grpcPort, tlsBlock, srv.URL))
	d := startDaemon(t, cfgPath)
	withCert := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}}
	anonymous := &tls.Config{RootCAs: ca.Pool()}
	ctx := context.Background()
	exporters := map[string]func(*tls.Config) (sdklog.Exporter, error){
		"otlploghttp": func(c *tls.Config) (sdklog.Exporter, error) {
			return otlploghttp.New(ctx, otlploghttp.WithEndpoint(fmt.Sprintf("localhost:%d", httpPort)),
				otlploghttp.WithTLSClientConfig(c), otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
		},
		"otlploggrpc": func(c *tls.Config) (sdklog.Exporter, error) {
			return otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(fmt.Sprintf("localhost:%d", grpcPort)),
				otlploggrpc.WithTLSCredentials(credentials.NewTLS(c)), otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
		},
	}
	const n = 1000
	for _, name := range []string{"otlploghttp", "otlploggrpc"} {
		t.Run(name+" with a client certificate: every record, named", func(t *testing.T) {
			before := c.count(`"source":"otlp"`)
			exp, err := exporters[name](withCert)
			if err != nil {
				t.Fatal(err)
			}
			otlptest.ExportNumbered(t, exp, n)
			waitUntil(t, "the records", func() bool { return c.count(`"source":"otlp"`) == before+n })
			c.mu.Lock()
			var recs []map[string]any
			for _, l := range c.lines {
				var r map[string]any
				if json.Unmarshal([]byte(l), &r) == nil && r["source"] == "otlp" {
					recs = append(recs, r)
				}
			}
			c.lines = nil
			c.mu.Unlock()
			otlptest.CheckNumbered(t, recs, n)
			for _, r := range recs {
				wantClient(t, r, "app-7")
			}
		})
		t.Run(name+" without a client certificate fails; nothing stored", func(t *testing.T) {
			exp, err := exporters[name](anonymous)
			if err != nil {
				t.Fatal(err)
			}
			var r sdklog.Record
			r.SetBody(attribute.StringValue("anonymous " + name))
			if err := exp.Export(ctx, []sdklog.Record{r}); err == nil {
				t.Fatal("the export succeeded")
			}
			exp.Shutdown(ctx)
			time.Sleep(200 * time.Millisecond)
			if c.count("anonymous") != 0 {
				t.Fatal("a record without a client certificate was stored")
			}
		})
	}
	if err := d.stop(t); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.log())
	}
}
