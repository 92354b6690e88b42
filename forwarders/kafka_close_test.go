package forwarders

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestKafkaCloseReleases(t *testing.T) {
	t.Run("a sink built, used and closed 20 times leaves no goroutine, connection or file descriptor behind", func(t *testing.T) {
		broker := newBroker(t)
		cycle := func() {
			sink, err := NewKafka(KafkaConfig{Brokers: broker.ListenAddrs(), Topic: topic, Logger: quietLog})
			if err != nil {
				t.Fatal(err)
			}
			// A write opens the metadata and the produce connections.
			if err := sink.Send(t.Context(), [][]byte{record(0)}); err != nil {
				t.Fatal(err)
			}
			if err := sink.Close(); err != nil {
				t.Fatal(err)
			}
		}
		cycle() // the broker's and the runtime's own goroutines start once
		g0, fd0 := settled(t, -1, -1)
		for range 20 {
			cycle()
		}
		g, fd := settled(t, g0, fd0)
		if g > g0 || fd > fd0 {
			t.Fatalf("after 20 more cycles: %d goroutines (was %d), %d fds (was %d)\n%s", g, g0, fd, fd0, goroutines())
		}
	})
}

// settled waits up to 5s for the goroutine and fd counts to come down to
// at most g0 and fd0 (closing is asynchronous: connection goroutines end
// when they see their channel closed), and returns them.
func settled(t *testing.T, g0, fd0 int) (int, int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), openFDs(t)
		if (g <= g0 && fd <= fd0) || time.Now().After(deadline) {
			return g, fd
		}
		if g0 < 0 {
			time.Sleep(500 * time.Millisecond) // a baseline: let the first cycle settle
			return runtime.NumGoroutine(), openFDs(t)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	return len(entries)
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return fmt.Sprint(string(buf[:runtime.Stack(buf, true)]))
}
