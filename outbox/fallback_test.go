package outbox

import (
	"bytes"
	"fmt"
	"testing"
)

// TestFallbackPaths runs the queue's contract through the database/sql
// paths (insertRows' prepared statements, readAfter's driver rows) that a
// file falls back to when handleOf cannot reach the driver's handle.
func TestFallbackPaths(t *testing.T) {
	fastPathsOff.Store(true)
	t.Cleanup(func() { fastPathsOff.Store(false) })

	t.Run("a file opened with the fast paths off inserts and claims through database/sql", func(t *testing.T) {
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		if q.store.commit.fast != nil {
			t.Fatal("the committer has a fastInsert")
		}
		if q.store.reader != nil {
			t.Fatal("the store has a claimReader")
		}
	})

	t.Run("records of every chunk size arrive byte for byte and in order", func(t *testing.T) {
		ctx := testCtx(t)
		q := mustOpen(t, tempDB(t), "q", Options[[]byte]{})
		// 341 = 256+64+16+4+1: every prepared statement size is used; empty
		// and nil records must come back as empty records.
		var in [][]byte
		for i := range 341 {
			switch {
			case i%100 == 7:
				in = append(in, []byte{})
			case i%100 == 8:
				in = append(in, nil)
			default:
				in = append(in, fmt.Appendf(nil, "record %d", i))
			}
		}
		if err := q.SendBatch(ctx, in); err != nil {
			t.Fatal(err)
		}
		out := drain(t, q)
		if len(out) != len(in) {
			t.Fatalf("got %d records back, sent %d", len(out), len(in))
		}
		for i := range in {
			if !bytes.Equal(out[i], in[i]) || out[i] == nil {
				t.Fatalf("record %d: got %q, sent %q", i, out[i], in[i])
			}
		}
	})

	// The contract, as the fast paths pass it.
	for name, test := range map[string]func(*testing.T){
		"TestOrder": TestOrder, "TestGroupCommit": TestGroupCommit, "TestRecv": TestRecv,
		"TestClaim": TestClaim, "TestClear": TestClear, "TestMaxSize": TestMaxSize,
		"TestClaimBytes": TestClaimBytes, "TestLeaseDeadLetter": TestLeaseDeadLetter,
		"TestOldest": TestOldest, "TestSendBatches": TestSendBatches,
		"TestReplayDeadLetters": TestReplayDeadLetters, "TestDeadLetters": TestDeadLetters,
		"TestClaimedRecordsDoNotShareMemory": TestClaimedRecordsDoNotShareMemory,
	} {
		t.Run(name+" passes through database/sql", test)
	}
}
