package otlp

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // clients may send gzip (the Collector's exporters do by default)
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/ingest/tlsconf"
)

// DefaultGRPCListen is OTLP/gRPC's port, on loopback only.
const DefaultGRPCListen = "127.0.0.1:4317"

// GRPC is the OTLP/gRPC logs receiver (LogsService/Export). It takes the
// settings of HTTP ingest: MaxBodyBytes is the largest message after
// decompression, MaxConcurrent the requests handled at once (and the
// streams one connection may open); Path is not used.
type GRPC struct {
	cfg Config
	app ingest.Appender
	sem chan struct{}
	srv *grpc.Server

	Counters
}

// NewGRPC returns the receiver; Serve serves it on a listener. opts add
// server options (TLS: TLS).
func NewGRPC(cfg Config, app ingest.Appender, opts ...grpc.ServerOption) *GRPC {
	cfg = cfg.WithDefaults()
	g := &GRPC{cfg: cfg, app: app, sem: make(chan struct{}, cfg.MaxConcurrent)}
	g.srv = grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(cfg.MaxBodyBytes)), // checked after decompression too: a gzip bomb stops there
		grpc.MaxConcurrentStreams(uint32(cfg.MaxConcurrent)),
		grpc.InTapHandle(g.tap),
		grpc.ForceServerCodecV2(wireCodec{}),
	}, opts...)...)
	g.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.logs.v1.LogsService",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: g.handle}},
		Metadata:    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
	}, g)
	return g
}

// The service is registered by hand, not with plogotlp.RegisterGRPCServer:
// there gRPC decodes the message before any handler runs, answers data it
// cannot decode with Internal (which reads as a server fault) and holds the
// decoded request before the budget is charged. Here tap takes a
// concurrency slot before the message is read, the codec hands the message
// over as bytes, export charges the budget, then decodes with pdata
// (InvalidArgument when it cannot).

// wire is a message as its bytes.
type wire struct{ b []byte }

// wireCodec is the server's codec: it takes and gives messages as bytes.
type wireCodec struct{}

func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	w, ok := v.(*wire)
	if !ok {
		return nil, fmt.Errorf("otlp grpc: cannot send a %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(w.b)}, nil
}

func (wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	w, ok := v.(*wire)
	if !ok {
		return fmt.Errorf("otlp grpc: cannot read into a %T", v)
	}
	w.b = data.Materialize()
	return nil
}

func (wireCodec) Name() string { return "proto" }

// handle is Export's method handler.
func (g *GRPC) handle(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	req := new(wire)
	if err := dec(req); err != nil {
		return nil, err
	}
	resp, err := g.export(ctx, req.b)
	if err != nil {
		return nil, err
	}
	b, err := resp.MarshalProto()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode ExportLogsServiceResponse: %v", err)
	}
	return &wire{b}, nil
}

// TLS is the server options of a receiver that serves TLS with cfg (a
// tlsconf.Server's, whose NextProtos must offer h2): the credentials, and
// a handshake bound (gRPC's default is 120 s).
func TLS(cfg *tls.Config) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg)), grpc.ConnectionTimeout(tlsconf.HandshakeTimeout)}
}

// clientOf is the tls_client JSON of the request's connection: its
// verified client certificate; nil without one.
func clientOf(ctx context.Context) []byte {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return tlsconf.ClientOf(&info.State).JSON()
}

// Serve serves gRPC on ln until Stop; it returns nil after Stop.
func (g *GRPC) Serve(ln net.Listener) error {
	if err := g.srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("otlp grpc serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Stop stops taking requests and waits for the ones in flight (each is
// answered once its records are committed or refused) until ctx ends;
// then it closes every connection.
func (g *GRPC) Stop(ctx context.Context) {
	done := make(chan struct{})
	var graceful sync.WaitGroup // Stop makes GracefulStop return; we wait for it either way
	defer graceful.Wait()
	graceful.Go(func() {
		defer close(done)
		g.srv.GracefulStop()
	})
	select {
	case <-done:
	case <-ctx.Done():
		g.srv.Stop()
	}
}

// exportMethod is the one method served.
const exportMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

// tap admits a request before its message is read: the bearer token when
// one is set, then one of MaxConcurrent slots, shared by all connections
// (past them: Unavailable with a retry delay). The slot is held until the
// stream ends, however it ends: its context ends with it.
func (g *GRPC) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if g.cfg.Token != "" {
		want := []byte("Bearer " + g.cfg.Token)
		ok := false
		for _, got := range info.Header.Get("authorization") {
			ok = ok || subtle.ConstantTimeCompare([]byte(got), want) == 1
		}
		if !ok {
			g.Refused.Add(1)
			return nil, status.Error(codes.Unauthenticated, "missing or wrong bearer token (metadata authorization: Bearer <token>)")
		}
	}
	if info.FullMethodName != exportMethod {
		return ctx, nil // gRPC answers Unimplemented without reading it
	}
	select {
	case g.sem <- struct{}{}:
	default:
		return nil, g.refuse(&refusal{503, codeUnavailable, time.Second, "too many requests at once; retry later"})
	}
	context.AfterFunc(ctx, func() { <-g.sem })
	return ctx, nil
}

// export stores one record per LogRecord, all or none, and answers once
// they are committed.
func (g *GRPC) export(ctx context.Context, msg []byte) (plogotlp.ExportResponse, error) {
	held := &hold{ctx: ctx, budget: g.cfg.Budget, wait: g.cfg.BudgetWait}
	defer held.release()
	// The message (read by gRPC already) and the logs decoded from it
	// (about twice its size), then the records built from them.
	if err := held.charge(3 * int64(len(msg))); err != nil {
		return plogotlp.ExportResponse{}, g.refuse(refuseCharge(err, g.cfg.Budget.Size()))
	}
	ld, err := decode(ctProto, msg)
	if err != nil {
		return plogotlp.ExportResponse{}, g.refuse(&refusal{400, codeInvalidArgument, 0, err.Error()})
	}
	b := &builder{received: time.Now().UTC(), host: g.cfg.Host, maxRecord: g.cfg.MaxRecordBytes, client: clientOf(ctx), fields: g.cfg.AddFields}
	b.build(ld)
	if err := held.charge(b.bytes); err != nil {
		return plogotlp.ExportResponse{}, g.refuse(refuseCharge(err, g.cfg.Budget.Size()))
	}
	if len(b.records) > 0 {
		actx, cancel := context.WithTimeout(ctx, g.cfg.FullWait)
		err := g.app.Append(actx, Source, b.records)
		cancel()
		if refused := refuseAppend(err, len(b.records), g.cfg.Logger); refused != nil {
			return plogotlp.ExportResponse{}, g.refuse(refused)
		}
		g.Accepted.Add(int64(len(b.records)))
		g.Bytes.Add(b.bytes)
	}
	resp := plogotlp.NewExportResponse()
	if b.rejected > 0 {
		g.Rejected.Add(int64(b.rejected))
		ps := resp.PartialSuccess()
		ps.SetRejectedLogRecords(int64(b.rejected))
		ps.SetErrorMessage(rejectedMessage(b.rejected, g.cfg.MaxRecordBytes))
	}
	return resp, nil
}

// refuse counts r and returns it as a gRPC status; a retryable one
// carries a google.rpc.RetryInfo with the delay.
func (g *GRPC) refuse(r *refusal) error {
	g.Refused.Add(1)
	st := status.New(codes.Code(r.code), r.msg)
	if r.retry > 0 {
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(r.retry)}); err == nil {
			st = d
		}
	}
	return st.Err()
}
