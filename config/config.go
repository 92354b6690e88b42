// Package config reads outboxd's configuration: a YAML file, with ${VAR}
// expanded from the environment, then overridden by OUTBOXD_... variables
// whose first part names a top-level key (OUTBOXD_SINKS__MAIN__BROKERS=
// a:9092,b:9092 sets sinks.main.brokers; "__" separates levels).
// Reading is strict: an unknown key, a wrong type, a bad duration or size, a
// route to a missing sink or a listen address used twice is an error that
// names its key path, and every problem is reported at once.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
)

// Config is the whole configuration.
type Config struct {
	DataDir      string          `koanf:"data_dir"`
	Durability   string          `koanf:"durability"`
	MaxRecords   int             `koanf:"max_records"`
	MaxDiskBytes Size            `koanf:"max_disk_bytes"`
	MaxDLQBytes  Size            `koanf:"max_dlq_bytes"`
	Ingest       Ingest          `koanf:"ingest"`
	Sinks        map[string]Sink `koanf:"sinks"`
	Routes       []Route         `koanf:"routes"`
	Admin        Admin           `koanf:"admin"`
	Log          Log             `koanf:"log"`
	GracePeriod  time.Duration   `koanf:"grace_period"`
}

// Ingest lists the endpoints.
type Ingest struct {
	HTTP   *HTTPIngest    `koanf:"http"`
	Syslog []SyslogIngest `koanf:"syslog"`
	Files  []FileInput    `koanf:"files"`
	// Journal is the systemd journal input; nil: off.
	Journal *JournalInput `koanf:"journal"`
	// OTLP is the OpenTelemetry logs receiver; nil: off.
	OTLP *OTLPInput `koanf:"otlp"`
	// MemoryBudget is the memory every endpoint together may hold in
	// records read but not yet stored; 0 takes the default (8 MiB).
	MemoryBudget Size `koanf:"memory_budget"`
}

// HTTPIngest is the HTTP endpoint.
type HTTPIngest struct {
	Listen         string `koanf:"listen"`
	Path           string `koanf:"path"`
	Token          string `koanf:"token"`
	MaxBodyBytes   Size   `koanf:"max_body_bytes"`
	MaxRecordBytes Size   `koanf:"max_record_bytes"`
	MaxConcurrent  int    `koanf:"max_concurrent"`
	// TLS, when set, serves HTTPS only.
	TLS *ServerTLS `koanf:"tls"`
	// AddFields go on every record (a record's own field of a name wins).
	AddFields map[string]string `koanf:"add_fields"`
}

// ServerTLS is a network input's TLS: its certificate and key, and
// optionally the CA that must have signed every client's certificate.
type ServerTLS struct {
	CertFile     string `koanf:"cert_file"`
	KeyFile      string `koanf:"key_file"`
	ClientCAFile string `koanf:"client_ca_file"` // set: a client certificate signed by it is required
}

// SyslogIngest is one syslog listener: udp://, tcp://, tls:// (RFC 5425)
// or unix://.
type SyslogIngest struct {
	Listen string `koanf:"listen"`
	// tls:// only, and required there.
	TLS *ServerTLS `koanf:"tls"`
	// AddFields go on every record of the listener.
	AddFields map[string]string `koanf:"add_fields"`
	// tcp:// and tls:// only: connections served at once (default 64), and how long
	// one may send nothing before it is closed (default 5m).
	MaxConnections int           `koanf:"max_connections"`
	IdleTimeout    time.Duration `koanf:"idle_timeout"`
	// unix:// only: the socket file's permissions (default 0666).
	SocketMode FileMode `koanf:"socket_mode"`
}

// FileMode is a file's permission bits, written in octal: 0666, or "0660".
type FileMode uint32

func fileModeHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(FileMode(0)) {
		return data, nil
	}
	if s, ok := data.(string); ok {
		// From the environment, or quoted in YAML; an unquoted 0666 is
		// octal to the YAML parser already.
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(s), "0o"), 8, 32)
		if err != nil {
			return nil, fmt.Errorf("file mode %q: want octal, such as 0666", s)
		}
		return FileMode(n), nil
	}
	return data, nil
}

// Sink is one destination; which keys apply depends on Type.
type Sink struct {
	Type string `koanf:"type"` // kafka, http or console

	// kafka
	Brokers         []string      `koanf:"brokers"`
	Topic           string        `koanf:"topic"`
	KeyField        string        `koanf:"key_field"`
	RequiredAcks    string        `koanf:"required_acks"`
	Compression     string        `koanf:"compression"`
	SASL            SASL          `koanf:"sasl"`
	WriteTimeout    time.Duration `koanf:"write_timeout"`
	MaxMessageBytes Size          `koanf:"max_message_bytes"`

	// http
	URL         string            `koanf:"url"`
	Format      string            `koanf:"format"`
	Gzip        bool              `koanf:"gzip"`
	Headers     map[string]string `koanf:"headers"`
	BearerToken string            `koanf:"bearer_token"`
	BasicAuth   *BasicAuth        `koanf:"basic_auth"`
	Timeout     time.Duration     `koanf:"timeout"`

	// both
	TLS *TLS `koanf:"tls"`

	// batching and retries, every type
	BatchRecords int           `koanf:"batch_records"`
	BatchBytes   Size          `koanf:"batch_bytes"`
	Linger       time.Duration `koanf:"linger"`
	Retry        Retry         `koanf:"retry"`

	// WhenFull is what a full queue of this sink does to ingest: block
	// (the default: back-pressure to every sender, nothing lost),
	// drop_newest or drop_oldest (best effort: the other sinks get the
	// record, this one's drop is counted).
	WhenFull string `koanf:"when_full"`
}

// SASL for Kafka.
type SASL struct {
	Mechanism string `koanf:"mechanism"`
	Username  string `koanf:"username"`
	Password  string `koanf:"password"`
}

// BasicAuth for the HTTP sink. Write the password as ${VAR}, so that it
// comes from the environment, not the file.
type BasicAuth struct {
	Username string `koanf:"username"`
	Password string `koanf:"password"`
}

// TLS for a sink.
type TLS struct {
	CAFile             string `koanf:"ca_file"`
	CertFile           string `koanf:"cert_file"`
	KeyFile            string `koanf:"key_file"`
	ServerName         string `koanf:"server_name"`
	InsecureSkipVerify bool   `koanf:"insecure_skip_verify"`
}

// Retry is a sink's backoff.
type Retry struct {
	Initial    time.Duration `koanf:"initial"`
	Max        time.Duration `koanf:"max"`
	Multiplier float64       `koanf:"multiplier"`
}

// Route sends records from Sources (all, when empty) to Sinks.
type Route struct {
	Sources []string `koanf:"sources"`
	Sinks   []string `koanf:"sinks"`
}

// Admin is the metrics and health endpoint.
type Admin struct {
	Listen string `koanf:"listen"`
}

// Log is the log format.
type Log struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// Size is a byte count written as 64MiB, 10MB, 512KiB or a plain number.
type Size int64

var sizeRE = regexp.MustCompile(`^\s*(\d+)\s*([KMGT]i?B|B)?\s*$`)

// ParseSize reads a size.
func ParseSize(s string) (Size, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	if n > math.MaxInt64/mult { // the product would wrap, to a negative size or a small one
		return 0, fmt.Errorf("size %q: more than %d bytes", s, int64(math.MaxInt64))
	}
	return Size(n * mult), nil
}

func sizeHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(Size(0)) {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return ParseSize(v)
	case int:
		return Size(v), nil
	case int64:
		return Size(v), nil
	case uint64:
		return Size(v), nil
	case float64:
		return Size(v), nil
	}
	return data, nil
}

// expandVars replaces ${VAR} with the variable's value. Only the braced form
// is expanded, so a literal $ in a password stays as written.
var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func expandVars(b []byte) []byte {
	return varRE.ReplaceAllFunc(b, func(m []byte) []byte {
		return []byte(os.Getenv(string(m[2 : len(m)-1])))
	})
}

// topLevelKeys are the keys an OUTBOXD_ variable may start with.
var topLevelKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(Config{})
	for i := range t.NumField() {
		keys[t.Field(i).Tag.Get("koanf")] = true
	}
	return keys
}()

// Parse reads a YAML configuration, applies OUTBOXD_ environment overrides,
// and validates it.
func Parse(yamlText []byte) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(expandVars(yamlText)), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	err := k.Load(env.ProviderWithValue("OUTBOXD_", ".", func(key, value string) (string, any) {
		path := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(key, "OUTBOXD_")), "__", ".")
		if !topLevelKeys[strings.SplitN(path, ".", 2)[0]] {
			// Not a key of ours, such as OUTBOXD_INGEST_TOKEN, which the
			// documented example expands as ${OUTBOXD_INGEST_TOKEN}.
			return "", nil
		}
		if strings.HasSuffix(path, ".brokers") || strings.HasSuffix(path, ".sources") || strings.HasSuffix(path, ".sinks") {
			return path, strings.Split(value, ",")
		}
		return path, value
	}), nil)
	if err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}
	// Every problem is reported in one run: unknown keys first (each with
	// its path and the key meant), then what decoding or validation finds.
	problems := unknownKeys("", reflect.TypeOf(Config{}), k.Raw())
	var c Config
	err = k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			sizeHook, fileModeHook, mapstructure.StringToTimeDurationHookFunc(), mapstructure.StringToSliceHookFunc(",")),
		WeaklyTypedInput: true, // values from the environment are strings
		Result:           &c,
		TagName:          "koanf",
	}})
	if err != nil {
		// Values of the wrong type: the struct is half decoded, so its
		// validation would only add noise.
		return nil, errors.Join(append(problems, fmt.Errorf("config: %w", err))...)
	}
	c.applyDefaults()
	if errs := append(problems, c.Validate()...); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// ParseFile reads the configuration file at path.
func ParseFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// DefaultMaxDLQBytes is max_dlq_bytes when it is not set.
const DefaultMaxDLQBytes = 1 << 30

func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = "./outboxd-data"
	}
	if c.Durability == "" {
		c.Durability = "full"
	}
	if c.MaxDLQBytes == 0 {
		// The dead-letter file is small unless a sink refuses a lot; this
		// bounds a refusal storm without being reached by ordinary use.
		c.MaxDLQBytes = DefaultMaxDLQBytes
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = 10 * time.Second
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	for i := range c.Ingest.Files {
		c.Ingest.Files[i].applyDefaults()
	}
	if c.Ingest.OTLP != nil {
		c.Ingest.OTLP.applyDefaults()
	}
	if c.Ingest.Journal != nil {
		c.Ingest.Journal.applyDefaults()
	}
}
