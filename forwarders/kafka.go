package forwarders

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// KafkaConfig configures the Kafka sink.
type KafkaConfig struct {
	Brokers      []string
	Topic        string
	KeyField     string        // a top-level field of the record whose value becomes the message key; "" for none
	RequiredAcks string        // "all" (default), "one" or "none"
	Compression  string        // "none" (default), "gzip", "snappy", "lz4" or "zstd"
	TLS          *TLS          // nil: plaintext
	SASL         SASL          // empty Mechanism: none
	WriteTimeout time.Duration // per produce request; default 10s
	// MaxMessageBytes is the largest message the sink sends; larger records
	// are refused into the DLQ instead of failing their batch forever.
	// Default 1,000,000, under the broker's default message.max.bytes.
	MaxMessageBytes int
	BatchSize       int // messages per produce request and partition; default 1000
	// Logger is unused: the worker logs every failure the sink returns,
	// refused credentials included. Kept so that callers need not change.
	Logger *slog.Logger
}

// SASL configures SASL authentication.
type SASL struct {
	Mechanism string // "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512"
	Username  string
	Password  string
}

// Kafka produces each record as one message. A batch counts as delivered
// only when kafka-go reports every message written with the required acks.
type Kafka struct {
	cfg       KafkaConfig
	writer    *kafka.Writer
	transport *kafka.Transport
	// stop ends the transport's background work (metadata refresh, dials
	// in progress), which lives in the transport's own context.
	stop context.CancelFunc
	// AuthFailures counts failed writes that the broker refused for the
	// sink's credentials or permissions; the records stay queued.
	AuthFailures atomic.Int64
}

// NewKafka checks the configuration and returns the sink. It does not
// connect: a broker that is down at start is a transient failure like any
// other.
func NewKafka(cfg KafkaConfig) (*Kafka, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, errors.New("kafka sink: brokers and topic are required")
	}
	acks, err := parseAcks(cfg.RequiredAcks)
	if err != nil {
		return nil, err
	}
	codec, err := parseCompression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	mech, err := cfg.SASL.mechanism()
	if err != nil {
		return nil, err
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 1_000_000
	}
	if cfg.MaxMessageBytes < 1024 {
		return nil, fmt.Errorf("kafka sink: max_message_bytes %d is below 1024", cfg.MaxMessageBytes)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	var tlsConf *tls.Config
	if cfg.TLS != nil {
		if tlsConf, err = cfg.TLS.Config(); err != nil {
			return nil, fmt.Errorf("kafka sink %s: %w", cfg.Topic, err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	tr := &kafka.Transport{SASL: mech, TLS: tlsConf, ClientID: "outboxd", DialTimeout: 10 * time.Second, Context: ctx}
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		Balancer:     &kafka.Hash{}, // same key, same partition: order per key
		RequiredAcks: acks,
		Compression:  codec,
		Transport:    tr,
		WriteTimeout: cfg.WriteTimeout,
		BatchSize:    cfg.BatchSize,
		// A produce request's record batch must stay under the broker's
		// message.max.bytes, with room for the batch header.
		BatchBytes: int64(cfg.MaxMessageBytes - batchOverhead),
		// A batch is handed over whole; its last part per partition goes out
		// after a millisecond instead of kafka-go's default second.
		BatchTimeout: time.Millisecond,
		// The worker retries with its own backoff and sees every error.
		MaxAttempts: 1,
	}
	return &Kafka{cfg: cfg, writer: w, transport: tr, stop: stop}, nil
}

func parseAcks(s string) (kafka.RequiredAcks, error) {
	switch strings.ToLower(s) {
	case "", "all", "-1":
		return kafka.RequireAll, nil
	case "one", "1":
		return kafka.RequireOne, nil
	case "none", "0":
		return kafka.RequireNone, nil
	}
	return 0, fmt.Errorf("kafka sink: required_acks %q: want all, one or none", s)
}

func parseCompression(s string) (kafka.Compression, error) {
	switch strings.ToLower(s) {
	case "", "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("kafka sink: compression %q: want none, gzip, snappy, lz4 or zstd", s)
}

func (s SASL) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(s.Mechanism) {
	case "":
		return nil, nil
	case "PLAIN":
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	case "SCRAM-SHA-512":
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
	return nil, fmt.Errorf("kafka sink: sasl mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
}

// Room kept for Kafka's framing: a record batch header is 61 bytes, and a
// record's own framing (lengths, offsets, timestamp) at most a few dozen. A
// record that does not fit a batch of its own is refused before it is sent,
// rather than failing its whole batch at the broker.
const (
	batchOverhead   = 128
	messageOverhead = 64
)

// Send writes the batch and waits for the acks.
func (k *Kafka) Send(ctx context.Context, records [][]byte) error {
	rejected := map[int]string{}
	msgs := make([]kafka.Message, 0, len(records))
	index := make([]int, 0, len(records)) // message -> record
	for i, r := range records {
		key := k.key(r)
		if size := len(r) + len(key) + messageOverhead; size > k.cfg.MaxMessageBytes-batchOverhead {
			rejected[i] = fmt.Sprintf("kafka sink %s: message of %d bytes exceeds max_message_bytes %d", k.cfg.Topic, size, k.cfg.MaxMessageBytes)
			continue
		}
		m := kafka.Message{Key: key, Value: r}
		if id := recordID(r); id != nil {
			// The same id on every delivery: consumers de-duplicate by it
			// without parsing the value.
			m.Headers = []kafka.Header{{Key: "record_id", Value: id}}
		}
		msgs = append(msgs, m)
		index = append(index, i)
	}
	var retry error
	if len(msgs) > 0 {
		retry = k.classify(k.writer.WriteMessages(ctx, msgs...), index, rejected)
	}
	if len(rejected) > 0 {
		return &RejectedError{Reasons: rejected, Retry: retry}
	}
	return retry
}

// classify sorts kafka-go's answer: refusals of a record into rejected;
// it returns the first error that keeps the other records from being
// delivered, if any.
func (k *Kafka) classify(err error, index []int, rejected map[int]string) error {
	if err == nil {
		return nil
	}
	var perMessage kafka.WriteErrors
	if !errors.As(err, &perMessage) {
		// The whole write failed: network, metadata, or the connection's
		// SASL handshake.
		return k.retryable(err)
	}
	var retry error
	for m, e := range perMessage {
		switch {
		case e == nil:
		case isRecordFault(e):
			rejected[index[m]] = fmt.Sprintf("kafka sink %s: %v", k.cfg.Topic, e)
		case retry == nil:
			retry = k.retryable(e)
		}
	}
	return retry
}

// retryable wraps an error that the batch is retried for. A refusal of the
// sink's credentials or permissions is a *MisconfiguredError and counted:
// kafka-go reports a SASL failure on a new connection once per message of
// the batch (credentials revoked while running), and dead-lettering those
// would empty the backlog into the DLQ.
func (k *Kafka) retryable(err error) error {
	err = fmt.Errorf("kafka sink %s: %w", k.cfg.Topic, err)
	if isAuth(err) {
		k.AuthFailures.Add(1)
		return &MisconfiguredError{Err: err}
	}
	return err
}

// recordFaults are the broker answers that blame a record: retrying cannot
// fix them, and the other records are fine.
var recordFaults = map[kafka.Error]bool{
	kafka.MessageSizeTooLarge: true,
	kafka.RecordListTooLarge:  true,
	kafka.InvalidRecord:       true,
}

func isRecordFault(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		return recordFaults[ke]
	}
	var tooLarge kafka.MessageTooLargeError
	return errors.As(err, &tooLarge)
}

// authErrors are the broker answers that refuse the sink itself.
var authErrors = map[kafka.Error]bool{
	kafka.SASLAuthenticationFailed:           true,
	kafka.UnsupportedSASLMechanism:           true,
	kafka.IllegalSASLState:                   true,
	kafka.TopicAuthorizationFailed:           true,
	kafka.ClusterAuthorizationFailed:         true,
	kafka.TransactionalIDAuthorizationFailed: true,
}

func isAuth(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && authErrors[ke]
}

// key returns the value of the configured key field, or nil.
func (k *Kafka) key(record []byte) []byte {
	if k.cfg.KeyField == "" {
		return nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(record, &fields) != nil {
		return nil
	}
	raw, ok := fields[k.cfg.KeyField]
	if !ok {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []byte(s)
	}
	return []byte(raw)
}

// Close flushes and closes the writer, then what the sink opened for it.
// kafka-go's Writer.Close closes only a transport it made itself, and ours
// is our own (for TLS and SASL): without the two calls below, each broker's
// connection pool would live on, refreshing metadata every few seconds over
// its open connections, once per sink removed by a reload.
func (k *Kafka) Close() error {
	err := k.writer.Close()
	// Closes the idle connections, marks those in use to close when they
	// are released, and cancels each pool's metadata goroutine.
	k.transport.CloseIdleConnections()
	// A pool grabbed while closing would start a new metadata goroutine;
	// the transport's context ends those too.
	k.stop()
	if err != nil {
		return fmt.Errorf("kafka sink %s: close: %w", k.cfg.Topic, err)
	}
	return nil
}
