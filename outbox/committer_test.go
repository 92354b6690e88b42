package outbox

import "testing"

func TestAckPriority(t *testing.T) {
	t.Run("an ack goes to the ack queue, everything else to the op queue", func(t *testing.T) {
		ack := &writeOp{del: []idRange{{1, 5}}}
		insert := &writeOp{rows: []row{{data: []byte("x")}}}
		other := &writeOp{exec: func(*txn) (int64, error) { return 0, nil }, del: []idRange{{1, 1}}}
		if !ack.deletesOnly() || insert.deletesOnly() || other.deletesOnly() {
			t.Fatalf("deletesOnly: ack %v, insert %v, exec %v; want true, false, false",
				ack.deletesOnly(), insert.deletesOnly(), other.deletesOnly())
		}
	})

	t.Run("a batch takes waiting acks before the inserts queued ahead of them", func(t *testing.T) {
		c := &committer{ops: make(chan *writeOp, 8), acks: make(chan *writeOp, 8)}
		first := &writeOp{rows: []row{{data: []byte("0")}}}
		var inserts []*writeOp
		for range 3 {
			op := &writeOp{rows: []row{{data: []byte("x")}}}
			inserts = append(inserts, op)
			c.ops <- op
		}
		ack := &writeOp{del: []idRange{{1, 5}}}
		c.acks <- ack
		batch := c.gather(first)
		want := []*writeOp{first, ack, inserts[0], inserts[1], inserts[2]}
		if len(batch) != len(want) {
			t.Fatalf("batch of %d ops, want %d", len(batch), len(want))
		}
		for i := range want {
			if batch[i] != want[i] {
				t.Fatalf("op %d of the batch is not the one expected: acks must come right after the first op", i)
			}
		}
	})

	t.Run("acks and sends interleaved keep every record counted", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		sent := 0
		for round := range 20 {
			batch := make([][]byte, 50)
			for i := range batch {
				batch[i] = []byte{byte(round), byte(i)}
			}
			if err := q.SendBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
			sent += len(batch)
			l, err := q.Claim(ctx, 30)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Ack(ctx); err != nil {
				t.Fatal(err)
			}
			sent -= l.Len()
		}
		if n := mustLen(t, q); n != sent {
			t.Fatalf("Len = %d, want %d", n, sent)
		}
		if got := len(drain(t, q)); got != sent {
			t.Fatalf("drained %d records, want %d", got, sent)
		}
	})
}

func TestRelaxedAcksBounded(t *testing.T) {
	t.Run("at most maxRelaxedAcks ack commits in a row skip the fsync", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[int]{})
		if err := q.SendBatch(ctx, seq(0, 30)); err != nil {
			t.Fatal(err)
		}
		st := &q.store.commit.stats
		relaxed0, synced0 := st.relaxed.Load(), st.synced.Load()
		for i := range 3 * (maxRelaxedAcks + 1) {
			l, err := q.Claim(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Ack(ctx); err != nil {
				t.Fatalf("ack %d: %v", i, err)
			}
		}
		// Each run of maxRelaxedAcks relaxed acks ends with one synced ack.
		// (The 1 s sync timer also ends a run; on a slow machine it may have.)
		if got, want := st.relaxed.Load()-relaxed0, int64(3*maxRelaxedAcks); got != want && st.synced.Load() == synced0 {
			t.Fatalf("%d of %d acks committed relaxed, want %d", got, 3*(maxRelaxedAcks+1), want)
		}
	})
}
