//go:build race

package batch_test

// raceOn is set when the tests run under the race detector (much slower SQLite).
const raceOn = true
