package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The benchmarks behind the README's table. Each reports records/s, so that
// runs compare with benchstat:
//
//	go test -run '^$' -bench . -benchtime 2s -count 5 ./outbox/ | tee bench.txt
//	benchstat bench.txt

const benchRecordSize = 256

func benchPayload() []byte {
	p := make([]byte, benchRecordSize)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return p
}

var benchLevels = []Durability{DurabilityFull, DurabilityNormal, DurabilityOff, DurabilityExtra}

func benchQueue(b *testing.B, d Durability) *Queue[[]byte] {
	b.Helper()
	q, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), "bench", Options[[]byte]{Durability: d})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

func reportRecords(b *testing.B, records int) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkSend(b *testing.B) {
	for _, d := range benchLevels {
		b.Run(fmt.Sprintf("durability=%s", d), func(b *testing.B) {
			q := benchQueue(b, d)
			ctx, p := context.Background(), benchPayload()
			for b.Loop() {
				if err := q.Send(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			reportRecords(b, b.N)
		})
	}
}

func BenchmarkSendConcurrent64(b *testing.B) {
	const senders = 64
	for _, d := range benchLevels {
		b.Run(fmt.Sprintf("durability=%s", d), func(b *testing.B) {
			q := benchQueue(b, d)
			ctx, p := context.Background(), benchPayload()
			b.ResetTimer()
			var wg sync.WaitGroup
			for s := range senders {
				n := b.N / senders
				if s < b.N%senders {
					n++
				}
				wg.Go(func() {
					for range n {
						if err := q.Send(ctx, p); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			reportRecords(b, b.N)
			st := &q.store.commit.stats
			b.ReportMetric(float64(st.rows.Load())/float64(st.commits.Load()), "records/commit")
		})
	}
}

func BenchmarkSendBatch1000(b *testing.B) {
	for _, d := range benchLevels {
		b.Run(fmt.Sprintf("durability=%s", d), func(b *testing.B) {
			q := benchQueue(b, d)
			ctx := context.Background()
			batch := make([][]byte, 1000)
			for i := range batch {
				batch[i] = benchPayload()
			}
			for b.Loop() {
				if err := q.SendBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			reportRecords(b, b.N*len(batch))
		})
	}
}

// BenchmarkClaimAck1000 drains a backlog 1000 records at a time. The backlog
// is refilled, off the clock, in slices of 50,000 records (about 15 MB), so
// the file stays inside the memory-mapped window, as it does while a
// forwarder keeps up; BenchmarkDrain in forwarders measures a cold backlog
// of a million.
func BenchmarkClaimAck1000(b *testing.B) {
	const refill = 50
	for _, d := range benchLevels {
		b.Run(fmt.Sprintf("durability=%s", d), func(b *testing.B) {
			q := benchQueue(b, d)
			ctx := context.Background()
			batch := make([][]byte, 1000)
			for i := range batch {
				batch[i] = benchPayload()
			}
			var claiming, acking time.Duration
			b.ResetTimer()
			for i := range b.N {
				if i%refill == 0 {
					b.StopTimer()
					for range min(refill, b.N-i) {
						if err := q.SendBatch(ctx, batch); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
				t0 := time.Now()
				l, err := q.Claim(ctx, 1000)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := l.Ack(ctx); err != nil {
					b.Fatal(err)
				}
				claiming, acking = claiming+t1.Sub(t0), acking+time.Since(t1)
			}
			b.StopTimer()
			reportRecords(b, b.N*1000)
			b.ReportMetric(float64(claiming.Microseconds())/float64(b.N), "claim-µs/op")
			b.ReportMetric(float64(acking.Microseconds())/float64(b.N), "ack-µs/op")
		})
	}
}

func BenchmarkLen(b *testing.B) {
	q := benchQueue(b, DurabilityOff)
	ctx := context.Background()
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = benchPayload()
	}
	for range 100 {
		q.SendBatch(ctx, batch)
	}
	for b.Loop() {
		if _, err := q.Len(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
