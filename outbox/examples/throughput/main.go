// Command throughput is the outbox's demo: it sends records into a queue
// from many goroutines, drains them with Claim and Ack, and prints the rates.
// Until the outboxd daemon exists, it is what the README's run command runs.
//
//	go run ./outbox/examples/throughput -records 200000 -senders 64
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

func main() {
	records := flag.Int("records", 200_000, "records to send")
	size := flag.Int("size", 256, "bytes per record")
	senders := flag.Int("senders", 64, "concurrent senders, each calling Send once per record")
	batch := flag.Int("batch", 1000, "records per Claim")
	durability := flag.String("durability", "full", "full, normal, off or extra")
	dir := flag.String("dir", "", "directory for the database (default: a temporary one, removed after)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *records, *size, *senders, *batch, *durability, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, records, size, senders, batch int, durability, dir string) error {
	d, err := outbox.ParseDurability(durability)
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "outbox-throughput-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	path := filepath.Join(dir, "throughput.db")
	q, err := outbox.Open(ctx, path, "demo", outbox.Options[[]byte]{Durability: d})
	if err != nil {
		return err
	}
	defer q.Close()
	fmt.Printf("queue %s, durability %s: %d records of %d bytes from %d senders\n", path, d, records, size, senders)

	start := time.Now()
	if err := sendAll(ctx, q, records, size, senders); err != nil {
		return err
	}
	sent := time.Since(start)
	fmt.Printf("send:  %8.0f records/s (%v, one Send per record, group commit)\n", float64(records)/sent.Seconds(), sent.Round(time.Millisecond))

	start = time.Now()
	got := 0
	for got < records {
		l, err := q.Claim(ctx, batch)
		if err != nil {
			return err
		}
		got += len(l.Items())
		if err := l.Ack(ctx); err != nil {
			return err
		}
	}
	drained := time.Since(start)
	fmt.Printf("drain: %8.0f records/s (%v, Claim+Ack of %d)\n", float64(records)/drained.Seconds(), drained.Round(time.Millisecond), batch)
	return nil
}

// sendAll splits the records over senders goroutines and waits for them all.
func sendAll(ctx context.Context, q *outbox.Queue[[]byte], records, size, senders int) error {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		n := records / senders
		if s < records%senders {
			n++
		}
		wg.Go(func() {
			for range n {
				if err := q.Send(ctx, payload); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
