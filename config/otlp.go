package config

// OTLPInput is ingest.otlp: the OpenTelemetry logs receiver. Each protocol
// has its own listener; nil: that protocol is off.
type OTLPInput struct {
	HTTP *OTLPListener `koanf:"http"` // OTLP/HTTP: POST /v1/logs
	GRPC *OTLPListener `koanf:"grpc"` // OTLP/gRPC: LogsService/Export
}

// OTLPListener is where one OTLP protocol listens.
type OTLPListener struct {
	Listen string `koanf:"listen"` // host:port; default loopback, 4318 (HTTP) or 4317 (gRPC)
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
	if o.GRPC != nil {
		add(problem(path+".grpc", "OTLP/gRPC is not built yet; use http (OTLP/HTTP, port 4318)"))
	}
}
