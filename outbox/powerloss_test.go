package outbox

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/outboxd/outboxd/outbox/powerfs"
)

// powerCuts runs cuts rounds of: a child sends records as fast as it can on a
// powerfs mount; after a random number of acknowledgements it is killed with
// SIGKILL and the power is cut (everything not fsynced is undone). It returns
// how many records were ever acknowledged, how many of them the queue no
// longer holds, and whether the database stopped opening or reading.
func powerCuts(t *testing.T, d Durability, cuts int, env ...string) (acked, lost int, corrupt bool) {
	t.Helper()
	backing, mnt := t.TempDir(), t.TempDir()
	pfs := powerfs.New(backing, mnt)
	if err := pfs.Mount(); err != nil {
		t.Skipf("cannot mount FUSE here (needs root and /dev/fuse): %v", err)
	}
	t.Cleanup(func() { pfs.Unmount() })
	path := filepath.Join(mnt, "q.db")
	everAcked, consumed := map[int]bool{}, map[int]bool{}
	for cut := range cuts {
		cmd, lines := startChild(t, "send", path, append(env, "OUTBOX_CRASH_DURABILITY="+d.String(),
			"OUTBOX_CRASH_BASE="+strconv.Itoa(cut*1_000_000))...)
		acked, took := killAfterConsumed(t, cmd, lines, 200+rand.IntN(800))
		for v := range acked {
			everAcked[v] = true
		}
		for v := range took {
			consumed[v] = true
		}
		if _, err := pfs.PowerCut(); err != nil {
			t.Fatal(err)
		}
		found, err := dumpQueue(t, path, d)
		if err != nil {
			t.Logf("cut %d: the queue does not open or read: %v", cut, err)
			return len(everAcked), len(everAcked), true
		}
		lost = 0
		for v := range everAcked {
			if !found[v] && !consumed[v] { // a consumed record may be gone, or back
				lost++
			}
		}
	}
	t.Logf("%d cuts, %d records acknowledged in all", cuts, len(everAcked))
	return len(everAcked), lost, false
}

// dumpQueue reads the whole queue in a child process. This process serves
// the FUSE mount, and must not touch it: SQLite maps the files into memory,
// and a page fault here can stall the Go runtime that answers the kernel.
func dumpQueue(t *testing.T, path string, d Durability) (map[int]bool, error) {
	t.Helper()
	cmd, lines := startChild(t, "dump", path, "OUTBOX_CRASH_DURABILITY="+d.String())
	found := map[int]bool{}
	var failure error
	for line := range lines {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "have":
			for _, s := range f[1:] {
				v, _ := strconv.Atoi(s)
				found[v] = true
			}
		case len(f) > 0 && f[0] == "error":
			failure = errors.New(line)
		}
	}
	if err := cmd.Wait(); err != nil && failure == nil {
		failure = fmt.Errorf("dump child: %w", err)
	}
	return found, failure
}

func TestPowerLoss(t *testing.T) {
	t.Run("at durability full, 20 power cuts under load lose no acknowledged record", func(t *testing.T) {
		acked, lost, corrupt := powerCuts(t, DurabilityFull, 20)
		t.Logf("full: %d acknowledged, %d lost, corrupt=%v", acked, lost, corrupt)
		if lost != 0 || corrupt {
			t.Fatalf("lost %d of %d acknowledged records (corrupt=%v)", lost, acked, corrupt)
		}
	})

	t.Run("at durability full, 20 power cuts while a consumer acks lose no record that was neither consumed nor lost", func(t *testing.T) {
		acked, lost, corrupt := powerCuts(t, DurabilityFull, 20, "OUTBOX_CRASH_CONSUME=1")
		t.Logf("full with acks: %d acknowledged, %d lost, corrupt=%v", acked, lost, corrupt)
		if lost != 0 || corrupt {
			t.Fatalf("lost %d of %d acknowledged records (corrupt=%v)", lost, acked, corrupt)
		}
	})

	t.Run("at durability normal, power cuts lose the last commits: survives kill -9, not power loss", func(t *testing.T) {
		acked, lost, corrupt := powerCuts(t, DurabilityNormal, 5)
		t.Logf("normal: %d acknowledged, %d lost, corrupt=%v", acked, lost, corrupt)
		if lost == 0 && !corrupt {
			t.Fatalf("no loss at durability normal after 5 cuts: powerfs does not simulate a power cut")
		}
	})

	t.Run("at durability off, power cuts do lose acknowledged records: the file system bites", func(t *testing.T) {
		acked, lost, corrupt := powerCuts(t, DurabilityOff, 5)
		t.Logf("off: %d acknowledged, %d lost, corrupt=%v", acked, lost, corrupt)
		if lost == 0 && !corrupt {
			t.Fatalf("no loss at durability off after 5 cuts: powerfs does not simulate a power cut")
		}
	})
}
