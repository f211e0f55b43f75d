// Package gcfloor keeps the garbage collector of a server with a small live heap
// from running many times a second.
//
// Go's collector aims for a heap of twice what was live after the last cycle (at
// GOGC=100), and at least 4 MiB. clade serve keeps a few MiB live but allocates
// tens of MiB a second at a thousand calls a second (request and answer buffers,
// headers, JSON), so clade bench gateway (one process) collected 14 times a second: each
// cycle stops the world briefly and takes a share of the CPU for a few
// milliseconds, and the calls that meet one make the latency tail.
//
// Set raises the floor of that target with a ballast: one allocation of n bytes
// that nothing writes to (the collector does not scan a byte slice) but that counts
// in the heap the target is computed from, so the target becomes about
// 2 × (n + live). The cost is the garbage allowed to pile up between cycles:
// resident memory can grow by up to n, and by up to n more for the ballast itself
// where the runtime hands it memory it must clear (pages fresh from the kernel it
// does not touch: then the ballast takes none).
// With a live heap far above n the ballast changes little and GOGC rules as before.
package gcfloor

import (
	"os"
	"runtime/debug"
	"sync"
)

var (
	mu      sync.Mutex
	ballast []byte
	gen     int // which Set the ballast is from
)

// Set keeps a ballast of n bytes until release, or none when n <= 0. It runs a
// full collection first (call it at start-up). When GOGC or
// GOMEMLIMIT is in the environment the collector has been tuned by hand: Set does
// nothing and reports false. Setting again replaces the ballast.
func Set(n int64) (set bool, release func()) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		return false, func() {}
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return false, func() {}
	}
	mu.Lock()
	defer mu.Unlock()
	ballast = nil
	gen++
	if n <= 0 {
		return false, func() {}
	}
	// Freed memory given back to the kernel first, so that the ballast more often
	// gets pages the runtime need not clear.
	debug.FreeOSMemory()
	ballast = make([]byte, n)
	mine := gen // the release holds no reference to the ballast
	return true, func() {
		mu.Lock()
		defer mu.Unlock()
		if gen == mine {
			ballast = nil
		}
	}
}
