//go:build race

package main

// raceEnabled: the bench builds and drives the real binary; it has no
// concurrency worth the race detector, so its test runs in the plain pass.
const raceEnabled = true
