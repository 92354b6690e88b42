package forwarders

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const topic = "edge-logs"

// newBroker starts an in-process Kafka broker (kfake) on 127.0.0.1.
func newBroker(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// consume reads at least n records from the topic with a real consumer
// (franz-go), in partition order, and any that follow them.
func consume(t *testing.T, c *kfake.Cluster, n int) []*kgo.Record {
	t.Helper()
	return consumeWith(t, c, n)
}

func consumeWith(t *testing.T, c *kfake.Cluster, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	opts = append(opts, kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	// Duplicates may follow: read on until the topic is quiet.
	for {
		quiet, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(quiet)
		cancel()
		before := len(out)
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
		if len(out) == before {
			return out
		}
	}
}

func kafkaWorker(t *testing.T, q *outbox.Queue[[]byte], cfg KafkaConfig, wc Config) (*Worker, *Kafka) {
	t.Helper()
	cfg.Topic = topic
	cfg.Logger = quietLog
	sink, err := NewKafka(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	wc.Name, wc.Logger = "kafka", quietLog
	if wc.Retry == (Retry{}) {
		wc.Retry = fastRetry
	}
	return NewWorker(wc, q, sink), sink
}

func TestKafkaSink(t *testing.T) {
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run("every record arrives in order, byte for byte, with compression "+codec, func(t *testing.T) {
			broker := newBroker(t)
			q := openQueue(t)
			fill(t, q, 0, 3000)
			w, _ := kafkaWorker(t, q, KafkaConfig{Brokers: broker.ListenAddrs(), Compression: codec}, Config{})
			stop := runWorker(t, w)
			got := consume(t, broker, 3000)
			stop()
			for i, r := range got {
				if string(r.Value) != string(record(i)) {
					t.Fatalf("message %d = %s, want %s", i, r.Value, record(i))
				}
			}
			if n, _ := q.Len(context.Background()); n != 0 {
				t.Fatalf("queue still holds %d", n)
			}
		})
	}

	t.Run("the key is taken from the configured field", func(t *testing.T) {
		broker := newBroker(t)
		q := openQueue(t)
		q.SendBatch(context.Background(), [][]byte{[]byte(`{"host":"till-3","message":"a"}`), []byte(`{"message":"no host"}`)})
		w, _ := kafkaWorker(t, q, KafkaConfig{Brokers: broker.ListenAddrs(), KeyField: "host"}, Config{})
		stop := runWorker(t, w)
		got := consume(t, broker, 2)
		stop()
		if string(got[0].Key) != "till-3" || len(got[1].Key) != 0 {
			t.Fatalf("keys = %q, %q", got[0].Key, got[1].Key)
		}
	})

	t.Run("a bad configuration is refused with what is wrong", func(t *testing.T) {
		for _, cfg := range []KafkaConfig{
			{}, {Brokers: []string{"x:9092"}, Topic: "t", Compression: "brotli"},
			{Brokers: []string{"x:9092"}, Topic: "t", RequiredAcks: "some"},
			{Brokers: []string{"x:9092"}, Topic: "t", SASL: SASL{Mechanism: "GSSAPI"}},
		} {
			if _, err := NewKafka(cfg); err == nil {
				t.Errorf("NewKafka(%+v) succeeded", cfg)
			}
		}
	})
}

func TestKafkaOutage(t *testing.T) {
	t.Run("100,000 records through a broker that drops connections for a while all arrive in order", func(t *testing.T) {
		const total = 100_000
		broker := newBroker(t)
		var outage atomic.Bool
		broker.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			broker.KeepControl()
			if outage.Load() {
				return nil, errors.New("broker down"), true // closes the connection
			}
			return nil, nil, false
		})
		q := openQueue(t)
		w, _ := kafkaWorker(t, q, KafkaConfig{Brokers: broker.ListenAddrs(), Compression: "zstd"}, Config{Batching: Batching{Linger: -1}})
		stop := runWorker(t, w)
		for i := 0; i < total; i += 1000 {
			fill(t, q, i, 1000)
			switch i {
			case 30_000:
				outage.Store(true)
			case 40_000:
				// Keep producing into the outbox while the broker is down.
				waitFor(t, "failed attempts", 10*time.Second, func() bool { return w.Stats().Retries.Load() >= 3 })
			case 60_000:
				outage.Store(false)
			}
		}
		waitFor(t, "an empty queue", 60*time.Second, func() bool { n, _ := q.Len(context.Background()); return n == 0 })
		got := consume(t, broker, total)
		stop()
		values := make([][]byte, len(got))
		for i, r := range got {
			values[i] = r.Value
		}
		dups := checkDelivered(t, values, total)
		if dups > 1000 {
			t.Fatalf("%d duplicates for one outage", dups)
		}
		t.Logf("%d records, %d failed attempts, %d duplicates", total, w.Stats().Retries.Load(), dups)
	})
}

func TestKafkaTooLarge(t *testing.T) {
	t.Run("a message too large goes to the DLQ with the reason and the rest is delivered", func(t *testing.T) {
		const limit = 16 << 10
		broker := newBroker(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "16384"}))
		q := openQueue(t)
		fill(t, q, 0, 500)
		big := []byte(`{"n":500,"message":"` + strings.Repeat("x", 20_000) + `"}`)
		q.Send(context.Background(), big)
		fill(t, q, 501, 499)
		w, _ := kafkaWorker(t, q, KafkaConfig{Brokers: broker.ListenAddrs(), MaxMessageBytes: limit}, Config{})
		stop := runWorker(t, w)
		got := consume(t, broker, 999)
		waitFor(t, "an empty queue", 10*time.Second, func() bool { n, _ := q.Len(context.Background()); return n == 0 })
		stop()
		for i, r := range got {
			want := i
			if i >= 500 {
				want = i + 1
			}
			if numberOf(t, r.Value) != want {
				t.Fatalf("message %d holds record %d, want %d", i, numberOf(t, r.Value), want)
			}
		}
		db, _ := sql.Open("sqlite", outbox.DLQPath(q.Path()))
		defer db.Close()
		var n int
		var reason string
		db.QueryRow(`SELECT COUNT(*), MIN(error_message) FROM sink_dlq`).Scan(&n, &reason)
		if n != 1 || !strings.Contains(reason, "exceeds max_message_bytes") {
			t.Fatalf("DLQ: %d records, reason %q", n, reason)
		}
	})

	t.Run("size refusals are the record's; authorization refusals are retried and counted; anything else is retried", func(t *testing.T) {
		k := &Kafka{cfg: KafkaConfig{Topic: topic}}
		rejected := map[int]string{}
		err := k.classify(errorsOf(nil, error(errTooLarge), error(errLeader)), []int{0, 1, 2}, rejected)
		if len(rejected) != 1 || rejected[1] == "" || err == nil {
			t.Fatalf("rejected %v, transient %v", rejected, err)
		}
		rejected = map[int]string{}
		if err := k.classify(errors.New("dial tcp: connection refused"), []int{0}, rejected); err == nil || len(rejected) != 0 {
			t.Fatalf("a network error: %v, %v", err, rejected)
		}
		for _, auth := range []error{errTopicAuth, kafka.ClusterAuthorizationFailed, kafka.SASLAuthenticationFailed} {
			rejected = map[int]string{}
			before := k.AuthFailures.Load()
			err := k.classify(errorsOf(auth, auth), []int{0, 1}, rejected)
			if _, ok := errors.AsType[*MisconfiguredError](err); !ok || len(rejected) != 0 || k.AuthFailures.Load() != before+1 {
				t.Fatalf("%v per message: retry %v, rejected %v, counted %d", auth, err, rejected, k.AuthFailures.Load()-before)
			}
			if !strings.Contains(err.Error(), topic) {
				t.Fatalf("%q does not name the sink's topic", err)
			}
		}
	})
}

// newBrokerB is newBroker for benchmarks.
func newBrokerB(b *testing.B) *kfake.Cluster {
	b.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}
