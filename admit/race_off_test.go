//go:build !race

package admit_test

// burstCalls is TestWarmPrefixBurst's burst (see race_on_test.go).
const burstCalls = 1000
