package forwarders

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func TestKafkaCredentialsRevoked(t *testing.T) {
	t.Run("credentials revoked while running keep the records queued, and they arrive once restored", func(t *testing.T) {
		broker := newBroker(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "shipper", "s3cret"))
		// Revoked credentials, answered as a real broker answers them:
		// SaslAuthenticate with SASL_AUTHENTICATION_FAILED. (kfake itself
		// closes the connection for an unknown SCRAM user, which kafka-go
		// reports as an unexpected EOF: transient anyway.)
		var revoked, drop atomic.Bool
		broker.ControlKey(kmsg.SASLAuthenticate.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			broker.KeepControl()
			if !revoked.Load() {
				return nil, nil, false
			}
			resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
			resp.ErrorMessage = &msg
			return resp, nil, true
		})
		// A produce connection dropped once makes kafka-go dial (and
		// authenticate) again, as after a broker restart or idle timeout.
		broker.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			broker.KeepControl()
			if drop.CompareAndSwap(true, false) {
				return nil, errDropped, true
			}
			return nil, nil, false
		})
		q := openQueue(t)
		fill(t, q, 0, 100)
		w, sink := kafkaWorker(t, q, KafkaConfig{Brokers: broker.ListenAddrs(),
			SASL: SASL{Mechanism: "SCRAM-SHA-256", Username: "shipper", Password: "s3cret"}},
			Config{Batching: Batching{MaxRecords: 100, Linger: -1}})
		stop := runWorker(t, w)
		waitFor(t, "the first 100", 30*time.Second, func() bool { return w.Stats().RecordsSent.Load() == 100 })

		revoked.Store(true)
		drop.Store(true)
		fill(t, q, 100, 100)
		waitFor(t, "refused credentials", 30*time.Second, func() bool { return sink.AuthFailures.Load() >= 3 })
		if n, _ := q.Len(t.Context()); n != 100 || w.Stats().Rejected.Load() != 0 {
			t.Fatalf("queue holds %d, %d dead-lettered; want all 100 queued", n, w.Stats().Rejected.Load())
		}
		t.Logf("while revoked: %s", w.Stats().snapshot().LastError)

		revoked.Store(false)
		waitFor(t, "all 200", 60*time.Second, func() bool { return w.Stats().RecordsSent.Load() == 200 })
		stop()
		got := consumeWith(t, broker, 200, kgo.SASL(scram.Auth{User: "shipper", Pass: "s3cret"}.AsSha256Mechanism()))
		values := make([][]byte, len(got))
		for i, r := range got {
			values[i] = r.Value
		}
		checkDelivered(t, values, 200)
		if w.Stats().Misconfigured.Load() == 0 {
			t.Fatal("the refusals were not counted as misconfiguration")
		}
	})
}

type dropErr struct{}

func (dropErr) Error() string { return "connection dropped by the test" }

var errDropped error = dropErr{}
