//go:build !race

package emulator_test

// largeBatch is TestBatchLarge's size: the API's maximum batch.
const largeBatch = 100_000
