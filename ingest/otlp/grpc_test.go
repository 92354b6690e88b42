package otlp

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/outboxd/outboxd/ingest"
	"github.com/outboxd/outboxd/outbox"
)

// grpcReceiver serves a gRPC receiver over app on a real TCP port; it
// returns the receiver and its address. Cleanup stops it.
func grpcReceiver(t *testing.T, cfg Config, app ingest.Appender) (*GRPC, string) {
	t.Helper()
	cfg.Host = "edge-1"
	g := NewGRPC(cfg, app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var serving sync.WaitGroup
	serving.Go(func() {
		if err := g.Serve(ln); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Stop(ctx)
		serving.Wait()
	})
	return g, ln.Addr().String()
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// exportRaw sends msg as the request's bytes, unchecked.
func exportRaw(ctx context.Context, conn *grpc.ClientConn, msg []byte, opts ...grpc.CallOption) error {
	opts = append(opts, grpc.ForceCodecV2(wireCodec{}))
	return conn.Invoke(ctx, "/opentelemetry.proto.collector.logs.v1.LogsService/Export", &wire{msg}, new(wire), opts...)
}

// retryDelay is the RetryInfo delay of st; 0 when it has none.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// badSpanID is an ExportLogsServiceRequest of one record whose span id is
// three bytes.
func badSpanID() []byte {
	lr := protowire.AppendTag(nil, 10, protowire.BytesType)
	lr = protowire.AppendBytes(lr, []byte{1, 2, 3})
	return requestOf(lr)
}

// requestOf wraps LogRecords (each one's encoding) in one ScopeLogs of one
// ResourceLogs of an ExportLogsServiceRequest.
func requestOf(records ...[]byte) []byte {
	var sl []byte
	for _, lr := range records {
		sl = protowire.AppendTag(sl, 2, protowire.BytesType)
		sl = protowire.AppendBytes(sl, lr)
	}
	return requestOfScope(sl)
}

func requestOfScope(scopeLogs []byte) []byte {
	rl := protowire.AppendTag(nil, 2, protowire.BytesType) // ResourceLogs.scope_logs
	rl = protowire.AppendBytes(rl, scopeLogs)
	b := protowire.AppendTag(nil, 1, protowire.BytesType) // ExportLogsServiceRequest.resource_logs
	return protowire.AppendBytes(b, rl)
}

func TestGRPC(t *testing.T) {
	ctx := context.Background()
	t.Run("an empty request succeeds and stores nothing", func(t *testing.T) {
		q := openQueue(t, 0)
		_, addr := grpcReceiver(t, Config{}, ingest.QueueAppender{Queue: q})
		resp, err := plogotlp.NewGRPCClient(grpcConn(t, addr)).Export(ctx, plogotlp.NewExportRequest())
		if err != nil || resp.PartialSuccess().RejectedLogRecords() != 0 || len(stored(t, q)) != 0 {
			t.Fatalf("err %v, partial %v", err, resp.PartialSuccess())
		}
	})
	t.Run("records are stored with the mapping, plain and gzipped", func(t *testing.T) {
		q := openQueue(t, 0)
		g, addr := grpcReceiver(t, Config{}, ingest.QueueAppender{Queue: q})
		c := plogotlp.NewGRPCClient(grpcConn(t, addr))
		if _, err := c.Export(ctx, plogotlp.NewExportRequestFromLogs(logsOf("a", "b"))); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Export(ctx, plogotlp.NewExportRequestFromLogs(logsOf("c")), grpc.UseCompressor("gzip")); err != nil {
			t.Fatal(err)
		}
		recs := stored(t, q)
		if len(recs) != 3 || g.Accepted.Load() != 3 || recs[2]["message"] != "c" || recs[0]["host"] != "app-1" || recs[0]["source"] != "otlp" {
			t.Fatalf("accepted %d, stored %v", g.Accepted.Load(), recs)
		}
	})
	t.Run("records over the record limit are reported in partial_success and the rest stored", func(t *testing.T) {
		q := openQueue(t, 0)
		g, addr := grpcReceiver(t, Config{MaxRecordBytes: 1000}, ingest.QueueAppender{Queue: q})
		big := strings.Repeat("x", 2000)
		resp, err := plogotlp.NewGRPCClient(grpcConn(t, addr)).Export(ctx, plogotlp.NewExportRequestFromLogs(logsOf("small", big, big)))
		ps := resp.PartialSuccess()
		if err != nil || ps.RejectedLogRecords() != 2 || !strings.Contains(ps.ErrorMessage(), "2 log records over the record size limit of 1000 bytes") {
			t.Fatalf("err %v, partial %d %q", err, ps.RejectedLogRecords(), ps.ErrorMessage())
		}
		if recs := stored(t, q); len(recs) != 1 || recs[0]["message"] != "small" || g.Rejected.Load() != 2 {
			t.Fatalf("stored %v, rejected %d", recs, g.Rejected.Load())
		}
	})
	cases := []struct {
		name   string
		cfg    Config
		app    ingest.Appender
		msg    []byte
		opts   []grpc.CallOption
		code   codes.Code
		retry  time.Duration // the RetryInfo delay wanted; 0: none
		substr string
	}{
		{name: "garbage bytes are InvalidArgument", msg: []byte("\xff\xff\xff garbage"), code: codes.InvalidArgument, substr: "undecodable ExportLogsServiceRequest"},
		{name: "truncated protobuf is InvalidArgument", msg: logsProto(t, strings.Repeat("y", 300))[:200], code: codes.InvalidArgument},
		{name: "a message over the body limit is ResourceExhausted without retry info (final)", cfg: Config{MaxBodyBytes: 1 << 20}, msg: logsProto(t, strings.Repeat("z", 2<<20)), code: codes.ResourceExhausted},
		{name: "a gzip bomb is ResourceExhausted after decompression", cfg: Config{MaxBodyBytes: 1 << 20}, msg: make([]byte, 64<<20), opts: []grpc.CallOption{grpc.UseCompressor("gzip")}, code: codes.ResourceExhausted, substr: "after decompression"},
		{name: "a full outbox is Unavailable with retry info", app: scripted{fmt.Errorf("send: %w", outbox.ErrQueueFull)}, msg: logsProto(t, "a"), code: codes.Unavailable, retry: time.Second},
		{name: "a full disk is Unavailable with retry info", app: scripted{fmt.Errorf("commit: %w", outbox.ErrDiskFull)}, msg: logsProto(t, "a"), code: codes.Unavailable, retry: 5 * time.Second},
		{name: "an outbox that does not answer in time is Unavailable", app: scripted{context.DeadlineExceeded}, msg: logsProto(t, "a"), code: codes.Unavailable, retry: time.Second},
		{name: "no route for otlp is FailedPrecondition (not retried)", app: scripted{ingest.ErrNoRoute}, msg: logsProto(t, "a"), code: codes.FailedPrecondition, substr: "routes must include one for otlp"},
		{name: "a store error is Internal", app: scripted{fmt.Errorf("commit: disk I/O error")}, msg: logsProto(t, "a"), code: codes.Internal},
		{name: "without the configured token it is Unauthenticated", cfg: Config{Token: "s3cret"}, msg: logsProto(t, "a"), code: codes.Unauthenticated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, app := queueUnless(t, c.app)
			c.cfg.Logger = nil
			g, addr := grpcReceiver(t, c.cfg, app)
			err := exportRaw(ctx, grpcConn(t, addr), c.msg, c.opts...)
			st := status.Convert(err)
			if st.Code() != c.code || retryDelay(st) != c.retry || !strings.Contains(st.Message(), c.substr) {
				t.Fatalf("answer %v %q, retry %v; want %v, retry %v", st.Code(), st.Message(), retryDelay(st), c.code, c.retry)
			}
			if len(stored(t, q)) != 0 {
				t.Fatal("a refused request stored records")
			}
			if c.code != codes.ResourceExhausted && g.Refused.Load() != 1 { // gRPC itself refuses an oversized message
				t.Fatalf("refused %d, want 1", g.Refused.Load())
			}
		})
	}
	t.Run("with a token set, the right bearer token is stored and a wrong one refused", func(t *testing.T) {
		q := openQueue(t, 0)
		_, addr := grpcReceiver(t, Config{Token: "s3cret"}, ingest.QueueAppender{Queue: q})
		conn := grpcConn(t, addr)
		if err := exportRaw(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer wrong"), conn, logsProto(t, "a")); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("wrong token: %v", err)
		}
		if err := exportRaw(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret"), conn, logsProto(t, "a")); err != nil || len(stored(t, q)) != 1 {
			t.Fatalf("right token: %v", err)
		}
	})
	t.Run("a real full outbox refuses the whole request: stored whole or not at all", func(t *testing.T) {
		q := openQueue(t, 3)
		_, addr := grpcReceiver(t, Config{FullWait: 50 * time.Millisecond}, ingest.QueueAppender{Queue: q})
		conn := grpcConn(t, addr)
		if err := exportRaw(ctx, conn, logsProto(t, "1", "2")); err != nil {
			t.Fatalf("first request: %v", err)
		}
		err := exportRaw(ctx, conn, logsProto(t, "3", "4"))
		if st := status.Convert(err); st.Code() != codes.Unavailable || retryDelay(st) == 0 {
			t.Fatalf("second request into a queue of 3: %v", err)
		}
		if recs := stored(t, q); len(recs) != 2 {
			t.Fatalf("stored %d records, want the first request's 2", len(recs))
		}
	})
	t.Run("an unknown method is Unimplemented", func(t *testing.T) {
		_, addr := grpcReceiver(t, Config{}, scripted{})
		err := grpcConn(t, addr).Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &wire{}, new(wire), grpc.ForceCodecV2(wireCodec{}))
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("traces: %v", err)
		}
	})
}

func TestGRPCAnswerAfterCommit(t *testing.T) {
	ctx := context.Background()
	t.Run("the answer comes only once the outbox committed the records", func(t *testing.T) {
		q := openQueue(t, 0)
		g := gate{entered: make(chan struct{}), open: make(chan struct{}), next: ingest.QueueAppender{Queue: q}}
		_, addr := grpcReceiver(t, Config{FullWait: 10 * time.Second}, g)
		conn := grpcConn(t, addr)
		answered := make(chan error, 1)
		msg := logsProto(t, "a", "b")
		var sending sync.WaitGroup
		sending.Go(func() { answered <- exportRaw(ctx, conn, msg) })
		defer sending.Wait()
		<-g.entered
		select {
		case err := <-answered:
			t.Fatalf("answered %v before the commit", err)
		case <-time.After(100 * time.Millisecond):
		}
		close(g.open)
		if err := <-answered; err != nil || len(stored(t, q)) != 2 {
			t.Fatalf("after the commit: %v", err)
		}
	})
	t.Run("past max_concurrent requests at once, the next is Unavailable with retry info", func(t *testing.T) {
		q := openQueue(t, 0)
		g := gate{entered: make(chan struct{}, 1), open: make(chan struct{}), next: ingest.QueueAppender{Queue: q}}
		_, addr := grpcReceiver(t, Config{MaxConcurrent: 1, FullWait: 10 * time.Second}, g)
		first := make(chan error, 1)
		msg := logsProto(t, "a")
		var sending sync.WaitGroup
		sending.Go(func() { first <- exportRaw(ctx, grpcConn(t, addr), msg) })
		defer sending.Wait()
		<-g.entered
		// Another connection: the slots are shared by all connections (on
		// the first, MaxConcurrentStreams would hold it back instead).
		conn := grpcConn(t, addr)
		err := exportRaw(ctx, conn, logsProto(t, "b"))
		if st := status.Convert(err); st.Code() != codes.Unavailable || retryDelay(st) != time.Second || !strings.Contains(st.Message(), "too many requests") {
			t.Fatalf("second request: %v", err)
		}
		close(g.open)
		if err := <-first; err != nil {
			t.Fatalf("first request: %v", err)
		}
		// The slot is given back when the stream ends: the next request is
		// admitted (the gate lets it through now; entered has room for it).
		waitFor := time.Now().Add(5 * time.Second)
		for err = exportRaw(ctx, conn, logsProto(t, "c")); err != nil && time.Now().Before(waitFor); err = exportRaw(ctx, conn, logsProto(t, "c")) {
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil || len(stored(t, q)) != 2 {
			t.Fatalf("after the first ended: %v", err)
		}
	})
	t.Run("while the shared memory budget is taken, a request is Unavailable; one larger than the budget is InvalidArgument", func(t *testing.T) {
		q := openQueue(t, 0)
		budget := ingest.NewBudget(1 << 20)
		_, addr := grpcReceiver(t, Config{Budget: budget, BudgetWait: 20 * time.Millisecond}, ingest.QueueAppender{Queue: q})
		conn := grpcConn(t, addr)
		if !budget.TryAcquire(1 << 20) {
			t.Fatal("budget not free")
		}
		err := exportRaw(ctx, conn, logsProto(t, "a"))
		if st := status.Convert(err); st.Code() != codes.Unavailable || retryDelay(st) == 0 {
			t.Fatalf("budget taken: %v", err)
		}
		budget.Release(1 << 20)
		err = exportRaw(ctx, conn, logsProto(t, strings.Repeat("z", 600<<10)))
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "whole budget") {
			t.Fatalf("larger than the budget: %v", err)
		}
		if err := exportRaw(ctx, conn, logsProto(t, "a")); err != nil || len(stored(t, q)) != 1 || budget.InUse() != 0 {
			t.Fatalf("after: %v, budget in use %d", err, budget.InUse())
		}
	})
	t.Run("Stop waits for a request in flight, which is answered once committed", func(t *testing.T) {
		q := openQueue(t, 0)
		gt := gate{entered: make(chan struct{}), open: make(chan struct{}), next: ingest.QueueAppender{Queue: q}}
		g, addr := grpcReceiver(t, Config{FullWait: 10 * time.Second}, gt)
		answered := make(chan error, 1)
		msg := logsProto(t, "a")
		var sending, stopping sync.WaitGroup
		sending.Go(func() { answered <- exportRaw(ctx, grpcConn(t, addr), msg) })
		defer sending.Wait()
		<-gt.entered
		stopped := make(chan struct{})
		stopping.Go(func() {
			defer close(stopped)
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			g.Stop(sctx)
		})
		defer stopping.Wait()
		select {
		case <-stopped:
			t.Fatal("Stop returned with a request in flight")
		case <-time.After(100 * time.Millisecond):
		}
		close(gt.open)
		if err := <-answered; err != nil || len(stored(t, q)) != 1 {
			t.Fatalf("in-flight request: %v", err)
		}
		<-stopped
	})
	t.Run("Stop past its bound closes the connections and cancels the requests in flight", func(t *testing.T) {
		st := stuck{entered: make(chan struct{})}
		g, addr := grpcReceiver(t, Config{FullWait: time.Minute}, st)
		answered := make(chan error, 1)
		msg := logsProto(t, "a")
		var sending sync.WaitGroup
		sending.Go(func() { answered <- exportRaw(ctx, grpcConn(t, addr), msg) })
		defer sending.Wait()
		<-st.entered
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		g.Stop(sctx)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("Stop took %v", took)
		}
		if err := <-answered; status.Code(err) != codes.Unavailable {
			t.Fatalf("request cut by Stop: %v", err)
		}
	})
}

// stuck is an outbox that never takes the records: Append waits for its
// context to end.
type stuck struct{ entered chan struct{} }

func (s stuck) Append(ctx context.Context, _ string, _ [][]byte) error {
	s.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}
