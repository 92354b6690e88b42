// Package tlsconf is TLS for outboxd's network inputs: it loads a server
// certificate, its key and an optional client CA, checks them (readable,
// matching, not expired), serves them to new connections, re-reads them on
// reload (keeping the old ones when the new ones cannot be used), and says
// who a client is from its certificate.
//
// Connections already open keep the certificate they shook hands with: a
// reload changes only what new handshakes get.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Files names an input's certificate, key and client CA (optional: when
// set, a client certificate signed by it is required).
type Files struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// HandshakeTimeout bounds a TLS handshake: a client that opens connections
// and never completes one cannot hold them longer.
const HandshakeTimeout = 10 * time.Second

// material is one loaded set: what a handshake uses.
type material struct {
	cert     tls.Certificate
	clientCA *x509.CertPool // nil: no client certificate asked for
	notAfter time.Time
}

// Load reads and checks files; each error names the key (path: the
// configuration's path of the tls block, "ingest.http.tls" say) and the file.
func Load(path string, f Files, now time.Time) error {
	_, err := load(path, f, now)
	return err
}

func load(path string, f Files, now time.Time) (*material, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, fmt.Errorf("%s: set cert_file and key_file", path)
	}
	certPEM, err := os.ReadFile(f.CertFile)
	if err != nil {
		return nil, fmt.Errorf("%s.cert_file: %w", path, err)
	}
	keyPEM, err := os.ReadFile(f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.key_file: %w", path, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %s with %s: %w", path, f.CertFile, f.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil { // Go fills Leaf since 1.23; be safe
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s.cert_file: %s: %w", path, f.CertFile, err)
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("%s.cert_file: %s: the certificate expired on %s", path, f.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("%s.cert_file: %s: the certificate is not valid before %s", path, f.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	m := &material{cert: cert, notAfter: leaf.NotAfter}
	if f.ClientCAFile != "" {
		caPEM, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.client_ca_file: %w", path, err)
		}
		pool, n, err := certPool(caPEM)
		if err != nil || n == 0 {
			if err == nil {
				err = errors.New("no PEM certificate in it")
			}
			return nil, fmt.Errorf("%s.client_ca_file: %s: %w", path, f.ClientCAFile, err)
		}
		m.clientCA = pool
	}
	return m, nil
}

// certPool parses every CERTIFICATE block of b.
func certPool(b []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return pool, n, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, n, err
		}
		pool.AddCert(c)
		n++
	}
}

// Server hands the current material to each new handshake.
type Server struct {
	path  string
	files Files
	cur   atomic.Pointer[material]
}

// New loads files; path is the configuration's path of the tls block.
func New(path string, f Files) (*Server, error) {
	m, err := load(path, f, time.Now())
	if err != nil {
		return nil, err
	}
	s := &Server{path: path, files: f}
	s.cur.Store(m)
	return s, nil
}

// Reload reads the files again. On an error the material in use stays and
// the error says why; new connections get the new material from now on,
// open ones keep theirs.
func (s *Server) Reload() error {
	m, err := load(s.path, s.files, time.Now())
	if err != nil {
		return fmt.Errorf("%w (the certificate loaded before stays in use)", err)
	}
	s.cur.Store(m)
	return nil
}

// NotAfter is when the certificate in use expires.
func (s *Server) NotAfter() time.Time { return s.cur.Load().notAfter }

// RequiresClientCert says whether a client certificate is asked for.
func (s *Server) RequiresClientCert() bool { return s.cur.Load().clientCA != nil }

// Config is the tls.Config of a listener: TLS 1.2 at least, Go's default
// cipher suites, and each handshake takes the material current then.
func (s *Server) Config(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{m.cert},
			}
			if m.clientCA != nil {
				c.ClientCAs = m.clientCA
				c.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}
}

// Client is who sent a record: its certificate's subject common name and
// DNS names. It is put on each record as tls_client.
type Client struct {
	CN  string   `json:"cn,omitempty"`
	DNS []string `json:"dns,omitempty"`
}

// ClientOf is the verified client of a connection; nil without one.
func ClientOf(st *tls.ConnectionState) *Client {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return nil
	}
	c := st.PeerCertificates[0]
	return &Client{CN: c.Subject.CommonName, DNS: c.DNSNames}
}

// JSON is c as the tls_client field's value; nil for a nil c.
func (c *Client) JSON() []byte {
	if c == nil {
		return nil
	}
	b, _ := json.Marshal(c) // strings only: cannot fail
	return b
}
