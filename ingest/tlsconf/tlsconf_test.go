package tlsconf

import (
	"crypto/tls"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outboxd/outboxd/ingest/tlsconf/tlstest"
)

func TestLoad(t *testing.T) {
	ca := tlstest.NewCA(t, "site")
	good := ca.Server(t, "server", tlstest.Options{})
	other := ca.Server(t, "other", tlstest.Options{})
	expired := ca.Server(t, "expired", tlstest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	future := ca.Server(t, "future", tlstest.Options{NotBefore: time.Now().Add(time.Hour)})
	garbage := t.TempDir() + "/garbage.pem"
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	now := time.Now()
	for _, tc := range []struct {
		name  string
		files Files
		want  string // "" : loads
	}{
		{"a matching pair loads", Files{CertFile: good.CertFile, KeyFile: good.KeyFile, ClientCAFile: ca.File}, ""},
		{"no key file", Files{CertFile: good.CertFile}, "x.tls: set cert_file and key_file"},
		{"an unreadable certificate names its key", Files{CertFile: "/nonexistent.pem", KeyFile: good.KeyFile}, "x.tls.cert_file: open /nonexistent.pem"},
		{"an unreadable key names its key", Files{CertFile: good.CertFile, KeyFile: "/nonexistent.key"}, "x.tls.key_file: open /nonexistent.key"},
		{"a key that does not match names both files", Files{CertFile: good.CertFile, KeyFile: other.KeyFile}, "x.tls: " + good.CertFile + " with " + other.KeyFile + ": tls: private key does not match public key"},
		{"an expired certificate", Files{CertFile: expired.CertFile, KeyFile: expired.KeyFile}, "x.tls.cert_file: " + expired.CertFile + ": the certificate expired on"},
		{"a certificate not valid yet", Files{CertFile: future.CertFile, KeyFile: future.KeyFile}, "the certificate is not valid before"},
		{"a client CA that is no certificate", Files{CertFile: good.CertFile, KeyFile: good.KeyFile, ClientCAFile: garbage}, "x.tls.client_ca_file: " + garbage + ": no PEM certificate in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Load("x.tls", tc.files, now)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// serve accepts TLS connections on loopback with s's config and sends each
// connection's client (as JSON) back on the channel.
func serve(t *testing.T, s *Server) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	clients := make(chan string, 16)
	tln := tls.NewListener(ln, s.Config())
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				clients <- "refused: " + err.Error()
				c.Close()
				continue
			}
			st := tc.ConnectionState()
			clients <- string(ClientOf(&st).JSON())
			c.Close()
		}
	}()
	return ln.Addr().String(), clients
}

func dial(addr string, cfg *tls.Config) (*x509Subject, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// TLS 1.3 reports a refused client certificate on the first read.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil && !strings.Contains(err.Error(), "EOF") {
		return nil, err
	}
	st := c.ConnectionState()
	return &x509Subject{cn: st.PeerCertificates[0].Subject.CommonName}, nil
}

type x509Subject struct{ cn string }

func TestServer(t *testing.T) {
	ca := tlstest.NewCA(t, "site")
	server := ca.Server(t, "server", tlstest.Options{})
	plc := ca.Client(t, "plc-7", tlstest.Options{DNS: []string{"plc-7.site.example"}})
	stranger := tlstest.NewCA(t, "elsewhere").Client(t, "intruder", tlstest.Options{})
	s, err := New("ingest.http.tls", Files{CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	addr, clients := serve(t, s)
	client := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: certs}
	}

	t.Run("a client certificate signed by the CA is taken, and names the client", func(t *testing.T) {
		if _, err := dial(addr, client(plc.TLS)); err != nil {
			t.Fatal(err)
		}
		if got := <-clients; got != `{"cn":"plc-7","dns":["plc-7.site.example"]}` {
			t.Fatalf("client %s", got)
		}
	})
	t.Run("no client certificate is refused at the handshake", func(t *testing.T) {
		if _, err := dial(addr, client()); err == nil {
			t.Fatal("connected")
		}
		if got := <-clients; !strings.HasPrefix(got, "refused: ") || !strings.Contains(got, "certificate") {
			t.Fatalf("server saw %s", got)
		}
	})
	t.Run("a certificate of another CA is refused", func(t *testing.T) {
		if _, err := dial(addr, client(stranger.TLS)); err == nil {
			t.Fatal("connected")
		}
		if got := <-clients; !strings.Contains(got, "refused: ") {
			t.Fatalf("server saw %s", got)
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		cfg := client(plc.TLS)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if _, err := dial(addr, cfg); err == nil {
			t.Fatal("connected over TLS 1.1")
		}
		<-clients
	})
	t.Run("reload: new connections get the new certificate; a bad one keeps the old", func(t *testing.T) {
		next := ca.Server(t, "server-next", tlstest.Options{})
		// The files in place change, as an operator's renewal does.
		copyFile(t, next.CertFile, server.CertFile)
		copyFile(t, next.KeyFile, server.KeyFile)
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		if sub, err := dial(addr, client(plc.TLS)); err != nil || sub.cn != "server-next" {
			t.Fatalf("after reload the server is %v (%v)", sub, err)
		}
		<-clients
		os.WriteFile(server.KeyFile, []byte("broken"), 0o600)
		if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "stays in use") {
			t.Fatalf("Reload of a broken key: %v", err)
		}
		if sub, err := dial(addr, client(plc.TLS)); err != nil || sub.cn != "server-next" {
			t.Fatalf("after a failed reload the server is %v (%v)", sub, err)
		}
		<-clients
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
