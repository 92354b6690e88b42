package main

// The OTLP receivers in the durability harness (issue 15): OTLP/HTTP and
// OTLP/gRPC clients send numbered log records while the daemon is killed
// with SIGKILL or the power is cut under its data directory, the sinks down
// for the whole abuse. A request counts as acknowledged when it is answered
// 200 (HTTP) or OK (gRPC). As with HTTP ingest in proof_test.go, a sender
// never sends a number twice: a request whose answer the kill cut is not
// acknowledged, and if it was stored, its records arrive once and are
// counted apart ("stored unanswered"). With the sinks down no forwarder
// can duplicate either, so both sinks must get every acknowledged number
// exactly once.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outboxd/outboxd/outbox/powerfs"
)

// otlpPerRequest is the log records in one OTLP request.
const otlpPerRequest = 20

// otlpLogs is one request's logs: a record per number, its body line(n).
func otlpLogs(ns []int64) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "proof")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for _, n := range ns {
		lrs.AppendEmpty().Body().SetStr(line(n))
	}
	return ld
}

// otlpSenders send numbered records over OTLP/HTTP (protobuf) and OTLP/gRPC
// until stopped, each worker one request at a time.
type otlpSenders struct {
	o                  *oracle
	httpAcks, grpcAcks atomic.Int64 // records acknowledged, per protocol
	httpFail, grpcFail atomic.Int64 // requests not acknowledged (refused, or cut by a kill)
	wg                 sync.WaitGroup
	cancel             context.CancelFunc
}

func startOTLPSenders(t *testing.T, o *oracle, httpPort, grpcPort, workers int) *otlpSenders {
	ctx, cancel := context.WithCancel(context.Background())
	s := &otlpSenders{o: o, cancel: cancel}
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/logs", httpPort)
	// Reconnect fast: gRPC's default backoff grows to two minutes, longer
	// than the daemon is ever down here.
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	client := plogotlp.NewGRPCClient(conn)
	for range workers {
		s.wg.Go(func() { s.httpLoop(ctx, url) })
		s.wg.Go(func() { s.grpcLoop(ctx, client) })
	}
	s.wg.Go(func() { <-ctx.Done(); conn.Close() })
	return s
}

func (s *otlpSenders) stop() { s.cancel(); s.wg.Wait() }

func (s *otlpSenders) httpLoop(ctx context.Context, url string) {
	client := &http.Client{Timeout: 10 * time.Second}
	for ctx.Err() == nil {
		ns := s.o.numbers(otlpPerRequest)
		body, _ := (&plog.ProtoMarshaler{}).MarshalLogs(otlpLogs(ns))
		resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(body))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode == http.StatusOK {
			s.o.ack(ns)
			s.httpAcks.Add(int64(len(ns)))
			continue
		}
		s.httpFail.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *otlpSenders) grpcLoop(ctx context.Context, client plogotlp.GRPCClient) {
	for ctx.Err() == nil {
		ns := s.o.numbers(otlpPerRequest)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.Export(rctx, plogotlp.NewExportRequestFromLogs(otlpLogs(ns)))
		cancel()
		if err == nil {
			s.o.ack(ns)
			s.grpcAcks.Add(int64(len(ns)))
			continue
		}
		s.grpcFail.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
}

// otlpConfig is the scenarios' daemon (proofSinks.config: both sinks,
// every source to both) with the OTLP/HTTP and OTLP/gRPC receivers.
func (s *proofSinks) otlpConfig(t *testing.T, dataDir string, httpPort, grpcPort int) string {
	return strings.Replace(s.config(dataDir, "full", freePort(t), freePort(t)), "ingest:\n",
		fmt.Sprintf("ingest:\n  otlp:\n    http: {listen: 127.0.0.1:%d}\n    grpc: {listen: 127.0.0.1:%d}\n", httpPort, grpcPort), 1)
}

// storedUnanswered counts the numbers that arrived at sink without being
// acknowledged: requests stored whose answer a kill cut.
func (o *oracle) storedUnanswered(sink string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for k := range o.arrived[sink] {
		if !o.acked[k] {
			n++
		}
	}
	return n
}

// otlpProof runs the abuse: cycles of kill -9 (and a power cut when pfs is
// not nil) under OTLP load with the sinks down, then the sinks back and a
// final drain.
func otlpProof(t *testing.T, dataDir string, pfs *powerfs.FS, cycles int) {
	o := newOracle()
	s := newProofSinks(t, o)
	s.down.Store(true)
	s.kafkaOff.Store(true)
	httpPort, grpcPort := freePort(t), freePort(t)
	r := &proofRun{t: t, dataDir: dataDir, cfgPath: filepath.Join(t.TempDir(), "config.yaml")}
	os.WriteFile(r.cfgPath, []byte(s.otlpConfig(t, dataDir, httpPort, grpcPort)), 0o600)
	r.start()
	senders := startOTLPSenders(t, o, httpPort, grpcPort, 4)
	abuse(t, r, pfs, cycles)
	time.Sleep(500 * time.Millisecond) // load on the last start too
	senders.stop()
	drainAndStop(t, r, s, o)
	scenario, events := "OTLP/HTTP and OTLP/gRPC: kill -9 under load, sinks down", fmt.Sprintf("%d kills", cycles)
	if pfs != nil {
		scenario, events = "OTLP/HTTP and OTLP/gRPC: power cuts (powerfs) under load, sinks down", fmt.Sprintf("%d power cuts", cycles)
	}
	events += fmt.Sprintf("; acknowledged %d over HTTP, %d over gRPC; %d requests not answered 200/OK; %d records stored unanswered",
		senders.httpAcks.Load(), senders.grpcAcks.Load(), senders.httpFail.Load()+senders.grpcFail.Load(), o.storedUnanswered("collector"))
	if senders.httpAcks.Load() == 0 || senders.grpcAcks.Load() == 0 {
		t.Errorf("acknowledged %d over HTTP and %d over gRPC: a protocol went untested", senders.httpAcks.Load(), senders.grpcAcks.Load())
	}
	reportExactlyOnce(t, o, scenario, events, func() string {
		return fmt.Sprintf("lost %v\n%s", o.lostNumbers("collector", 10), lastLines(r.d.log(), 20))
	})
}

// onPowerFS mounts powerfs for t and returns a data directory on it; it
// skips t where FUSE cannot be mounted.
func onPowerFS(t *testing.T) (string, *powerfs.FS) {
	t.Helper()
	backing, mnt := t.TempDir(), t.TempDir()
	pfs := powerfs.New(backing, mnt)
	if err := pfs.Mount(); err != nil {
		t.Skipf("cannot mount FUSE here (needs root and /dev/fuse): %v", err)
	}
	t.Cleanup(func() { pfs.Unmount() })
	return filepath.Join(mnt, "data"), pfs
}
