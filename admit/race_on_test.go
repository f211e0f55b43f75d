//go:build race

package admit_test

// burstCalls is TestWarmPrefixBurst's burst: smaller under the race detector, which
// makes each call about ten times slower.
const burstCalls = 300
