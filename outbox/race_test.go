//go:build race

package outbox

// raceEnabled: the race detector slows SQLite (transpiled C) about tenfold,
// so the tests that move a million records run only in the plain pass of
// .ci/run.
const raceEnabled = true
