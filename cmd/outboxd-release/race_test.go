//go:build race

package main

// raceEnabled: the release tests build and install packages; they have no
// concurrency of their own, so they run only in the plain pass of .ci/run.
const raceEnabled = true
