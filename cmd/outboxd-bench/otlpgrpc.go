package main

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // -gzip
	"google.golang.org/protobuf/types/known/emptypb"
)

// grpcExportMethod is OTLP/gRPC's logs method.
const grpcExportMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

// grpcExporter is one client: a connection of its own, sending the encoded
// ExportLogsServiceRequest as it is (the bytes the HTTP mode posts) over
// LogsService/Export.
type grpcExporter struct {
	conn *grpc.ClientConn
	opts []grpc.CallOption
}

func newGRPCExporters(addr string, clients int, gzip bool) ([]otlpExporter, func(), error) {
	var opts []grpc.CallOption
	if gzip {
		opts = append(opts, grpc.UseCompressor("gzip"))
	}
	exps := make([]otlpExporter, clients)
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for i := range exps {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, conn)
		exps[i] = &grpcExporter{conn: conn, opts: opts}
	}
	return exps, closeAll, nil
}

func (e *grpcExporter) export(ctx context.Context, req []byte) error {
	return e.conn.Invoke(ctx, grpcExportMethod, asMessage(req), new(emptypb.Empty), e.opts...)
}

// asMessage is a proto message whose encoding is b as it is: b is kept as
// the unknown fields of an empty message, which proto.Marshal writes out
// verbatim. So gRPC's own codec sends the template's bytes without the bench
// decoding them into pdata first. The answer (an ExportLogsServiceResponse)
// is read the same way and not looked at, as the HTTP mode does not decode
// its body.
func asMessage(b []byte) *emptypb.Empty {
	m := new(emptypb.Empty)
	m.ProtoReflect().SetUnknown(b)
	return m
}
