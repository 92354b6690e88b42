// Command outboxd-bench measures outboxd as a user runs it: the real binary,
// built as a release is, driven over its ingest endpoints, forwarding to a
// sink in this process.
//
//	go run ./cmd/outboxd-bench footprint [-idle 60s] [-rate 150000] [-load 20s] [-backlog 1000000]
//	go run ./cmd/outboxd-bench files-compare [-lines 1000000] [-kills 10] [-only outboxd-full,rsyslog-da]
//	go run ./cmd/outboxd-bench otlp [-protocol http|grpc|both] [-gzip] [-sink kafka|down] [-records 1048576] [-batch 512] [-clients 16] [-runs 3]
//
// footprint prints the footprint budget of the release issue: binary sizes,
// idle RSS, CPU and wakeups, RSS under load and with a backlog, disk bytes
// per record, and disk given back after a drain. otlp prints OTLP ingest
// into the daemon at durability full: records/s, request latency, CPU per
// million records and peak RSS.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: outboxd-bench footprint|compare|files-compare|otlp [flags]   (outboxd-bench COMMAND -h for the flags)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "footprint":
		err = footprintCommand(ctx, os.Args[2:], os.Stdout)
	case "compare":
		err = compareCommand(ctx, os.Args[2:], os.Stdout)
	case "files-compare":
		err = filesCompareCommand(ctx, os.Args[2:], os.Stdout)
	case "otlp":
		err = otlpCommand(ctx, os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q (want footprint, compare, files-compare or otlp)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "outboxd-bench:", err)
		os.Exit(1)
	}
}

// report prints a table row: what, the figure, the target and whether it holds.
func report(w io.Writer, what, figure, target string, holds bool) {
	mark := "holds"
	if !holds {
		mark = "MISSED"
	}
	if target == "" {
		mark = ""
	}
	fmt.Fprintf(w, "| %s | %s | %s | %s |\n", what, figure, target, mark)
}
