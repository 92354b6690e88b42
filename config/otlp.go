package config

// OTLPInput is ingest.otlp: the OpenTelemetry logs receiver. Each protocol
// has its own listener; nil: that protocol is off.
type OTLPInput struct {
	HTTP *OTLPListener `koanf:"http"` // OTLP/HTTP: POST /v1/logs
	GRPC *OTLPListener `koanf:"grpc"` // OTLP/gRPC: LogsService/Export
}

// OTLPListener is one OTLP protocol's listener and its limits. The limits
// have ingest.http's names and defaults (0: the default): max_body_bytes is
// a request's size after decompression (gRPC: its message), default 10MiB;
// max_record_bytes a stored record's, default 1MiB (larger records are
// reported in partial_success); max_concurrent the requests handled at
// once, default 64; token, when set, the bearer token a request must carry
// (HTTP header or gRPC metadata "authorization: Bearer <token>").
type OTLPListener struct {
	Listen         string `koanf:"listen"` // host:port; default loopback, 4318 (HTTP) or 4317 (gRPC)
	Token          string `koanf:"token"`
	MaxBodyBytes   Size   `koanf:"max_body_bytes"`
	MaxRecordBytes Size   `koanf:"max_record_bytes"`
	MaxConcurrent  int    `koanf:"max_concurrent"`
	// TLS, when set, serves TLS only (gRPC: its credentials).
	TLS *ServerTLS `koanf:"tls"`
	// AddFields go on every record (static labels: site, env, ...).
	AddFields map[string]string `koanf:"add_fields"`
}

// The OTLP ports, on loopback like every other input.
const (
	DefaultOTLPHTTPListen = "127.0.0.1:4318"
	DefaultOTLPGRPCListen = "127.0.0.1:4317"
)

func (o *OTLPInput) applyDefaults() {
	if o.HTTP != nil && o.HTTP.Listen == "" {
		o.HTTP.Listen = DefaultOTLPHTTPListen
	}
	if o.GRPC != nil && o.GRPC.Listen == "" {
		o.GRPC.Listen = DefaultOTLPGRPCListen
	}
}

// validate checks what is not a listen address; validateListeners checks
// those, with every other input's.
func (o OTLPInput) validate(path string, add func(error)) {
	if o.HTTP == nil && o.GRPC == nil {
		add(problem(path, "set http, grpc or both (for example http: {listen: %s})", DefaultOTLPHTTPListen))
	}
	for _, l := range []struct {
		path string
		ln   *OTLPListener
	}{{path + ".http", o.HTTP}, {path + ".grpc", o.GRPC}} {
		if l.ln == nil {
			continue
		}
		checkSize(l.path+".max_body_bytes", l.ln.MaxBodyBytes, false, add)
		checkSize(l.path+".max_record_bytes", l.ln.MaxRecordBytes, true, add)
		validateAddFields(l.path+".add_fields", l.ln.AddFields, add)
		if l.ln.TLS != nil {
			validateServerTLS(l.path+".tls", *l.ln.TLS, add)
		}
		if l.ln.MaxConcurrent < 0 {
			add(problem(l.path+".max_concurrent", "%d is negative", l.ln.MaxConcurrent))
		}
		if l.ln == o.GRPC && l.ln.MaxBodyBytes > maxGRPCMessage {
			add(problem(l.path+".max_body_bytes", "%d bytes: gRPC messages are at most %d bytes", l.ln.MaxBodyBytes, maxGRPCMessage))
		}
	}
}

// maxGRPCMessage: gRPC's message length is a 32-bit field.
const maxGRPCMessage = 1<<31 - 1
