package forwarders

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// selfSigned makes a certificate for 127.0.0.1 and writes it, as the CA the
// sink must trust, to a PEM file.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

func TestKafkaTLSAndSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run("records arrive over TLS with SASL "+mech, func(t *testing.T) {
			cert, caFile := selfSigned(t)
			broker := newBroker(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}),
				kfake.EnableSASL(), kfake.Superuser(mech, "shipper", "s3cret"))
			q := openQueue(t)
			fill(t, q, 0, 100)
			w, _ := kafkaWorker(t, q, KafkaConfig{
				Brokers: broker.ListenAddrs(), TLS: &TLS{CAFile: caFile},
				SASL: SASL{Mechanism: mech, Username: "shipper", Password: "s3cret"},
			}, Config{})
			stop := runWorker(t, w)
			waitFor(t, "delivery", 30*time.Second, func() bool { return w.Stats().RecordsSent.Load() == 100 })
			stop()
			got := consumeWith(t, broker, 100, kgo.DialTLSConfig(&tls.Config{RootCAs: poolOf(t, caFile)}), saslOpt(mech))
			for i, r := range got {
				if string(r.Value) != string(record(i)) {
					t.Fatalf("message %d = %s", i, r.Value)
				}
			}
		})
	}

	t.Run("a wrong password keeps the records queued and counts the refusal", func(t *testing.T) {
		broker := newBroker(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "shipper", "s3cret"))
		q := openQueue(t)
		fill(t, q, 0, 10)
		w, sink := kafkaWorker(t, q, KafkaConfig{Brokers: broker.ListenAddrs(), SASL: SASL{Mechanism: "PLAIN", Username: "shipper", Password: "wrong"}}, Config{})
		stop := runWorker(t, w)
		waitFor(t, "failed attempts", 30*time.Second, func() bool { return w.Stats().Retries.Load() >= 2 })
		stop()
		if n, _ := q.Len(t.Context()); n != 10 {
			t.Fatalf("queue holds %d, want all 10", n)
		}
		if w.Stats().Rejected.Load() != 0 {
			t.Fatal("records were dead-lettered for a wrong password")
		}
		t.Logf("auth failures counted: %d; last error: %s", sink.AuthFailures.Load(), w.Stats().snapshot().LastError)
	})
}

func poolOf(t *testing.T, caFile string) *x509.CertPool {
	pemBytes, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("bad CA file")
	}
	return pool
}

func saslOpt(mech string) kgo.Opt {
	switch mech {
	case "PLAIN":
		return kgo.SASL(plain.Auth{User: "shipper", Pass: "s3cret"}.AsMechanism())
	case "SCRAM-SHA-256":
		return kgo.SASL(scram.Auth{User: "shipper", Pass: "s3cret"}.AsSha256Mechanism())
	default:
		return kgo.SASL(scram.Auth{User: "shipper", Pass: "s3cret"}.AsSha512Mechanism())
	}
}
