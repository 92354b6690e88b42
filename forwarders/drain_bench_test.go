package forwarders

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outboxd/outboxd/outbox"
)

// BenchmarkDrain drains a backlog of 256-byte records to a sink, as after an
// outage. The drain runs in a child process (this test binary again), so
// that its peak RSS is the forwarder's alone, not the in-process broker's:
//
//	go test -run '^$' -bench Drain -benchtime 1x -count 5 ./forwarders/
func BenchmarkDrain(b *testing.B) {
	for _, backlog := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("sink=kafka/backlog=%d", backlog), func(b *testing.B) {
			broker := newBrokerB(b)
			benchDrain(b, backlog, "FORWARDERS_BROKERS="+strings.Join(broker.ListenAddrs(), ","))
		})
		b.Run(fmt.Sprintf("sink=http/backlog=%d", backlog), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
			}))
			b.Cleanup(srv.Close)
			benchDrain(b, backlog, "FORWARDERS_URL="+srv.URL)
		})
	}
}

func benchDrain(b *testing.B, backlog int, sinkEnv string) {
	var rate, rss float64
	for range b.N {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "drain.db")
		fillBacklog(b, path, backlog)
		b.StartTimer()
		cmd := exec.Command(os.Args[0], "-test.run", "^$")
		cmd.Env = append(os.Environ(), childEnv+"=drain", "FORWARDERS_PATH="+path, sinkEnv)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("drain child: %v", err)
		}
		var secs, hwmKiB float64
		if _, err := fmt.Sscan(string(out), &secs, &hwmKiB); err != nil {
			b.Fatalf("drain child said %q: %v", out, err)
		}
		rate += float64(backlog) / secs
		rss += hwmKiB / 1024
	}
	b.ReportMetric(rate/float64(b.N), "records/s")
	b.ReportMetric(rss/float64(b.N), "peak-RSS-MiB")
}

func fillBacklog(b *testing.B, path string, n int) {
	q, err := outbox.Open(context.Background(), path, "sink", outbox.Options[[]byte]{Durability: outbox.DurabilityOff})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	payload := []byte(`{"host":"shop-7","source":"syslog","message":"` + strings.Repeat("x", 256-49) + `"}`)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = payload
	}
	for range n / len(batch) {
		if err := q.SendBatch(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

// peakRSSKiB reads VmHWM, this process's peak resident set, in KiB.
func peakRSSKiB() int {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// runDrainChild forwards the queue until it is empty and prints the seconds
// it took.
func runDrainChild() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := outbox.Open(ctx, os.Getenv("FORWARDERS_PATH"), "sink", outbox.Options[[]byte]{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer q.Close()
	var sink Sink
	if brokers := os.Getenv("FORWARDERS_BROKERS"); brokers != "" {
		sink, err = NewKafka(KafkaConfig{Brokers: strings.Split(brokers, ","), Topic: topic, RequiredAcks: "all", Logger: quietLog})
	} else {
		sink, err = NewHTTP(HTTPConfig{URL: os.Getenv("FORWARDERS_URL")})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sink.Close()
	w := NewWorker(Config{Name: "drain", Batching: Batching{Linger: -1}, Logger: quietLog}, q, sink)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for {
		if n, _ := q.Len(ctx); n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	// The child's own peak RSS. Not rusage's Maxrss: on Linux that carries
	// the parent's size at fork into the child.
	fmt.Printf("%f %d\n", elapsed.Seconds(), peakRSSKiB())
	return 0
}
