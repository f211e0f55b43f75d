//go:build race

package emulator_test

// largeBatch is TestBatchLarge's size: smaller under the race detector, which makes
// every request about ten times slower.
const largeBatch = 2_000
