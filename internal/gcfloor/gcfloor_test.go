package gcfloor

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

var sink []byte

// cycles allocates total bytes of short-lived garbage in 4 KiB pieces and returns
// how many collections ran meanwhile.
func cycles(total int) uint32 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < total/4096; i++ {
		sink = make([]byte, 4096)
	}
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

// resident is this process's resident memory in bytes (Linux).
func resident(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestBallastCutsCollections: 256 MiB of garbage with a small live heap takes
// dozens of collections without a floor and a few with a 64 MiB one, and the
// ballast itself takes no resident memory.
func TestBallastCutsCollections(t *testing.T) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		t.Skip("GOGC is set in the environment: Set leaves the collector alone (TestHandTunedLeftAlone)")
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Skip("GOMEMLIMIT is set in the environment")
	}
	runtime.GC()
	without := cycles(256 << 20)
	runtime.GC()
	rss := resident(t)
	ok, release := Set(64 << 20)
	if !ok {
		t.Fatal("Set(64 MiB) = false without GOGC or GOMEMLIMIT")
	}
	if grown := resident(t) - rss; grown > 8<<20 {
		t.Errorf("the 64 MiB ballast grew resident memory by %d MiB, want almost nothing", grown>>20)
	}
	runtime.GC()
	with := cycles(256 << 20)
	release()
	runtime.GC()
	again := cycles(256 << 20)
	t.Logf("collections for 256 MiB of garbage: %d without a floor, %d with 64 MiB, %d after release", without, with, again)
	if without < 20 || with > without/5 {
		t.Errorf("collections: %d without a floor, %d with a 64 MiB floor; want at least 20 and at most a fifth of them", without, with)
	}
	if again < 4*with {
		t.Errorf("after release: %d collections, want the floor gone (with it: %d)", again, with)
	}
}

// TestHandTunedLeftAlone: with GOGC in the environment, Set does nothing.
func TestHandTunedLeftAlone(t *testing.T) {
	t.Setenv("GOGC", "100")
	if ok, release := Set(64 << 20); ok {
		release()
		t.Error("Set = true with GOGC in the environment")
	}
	mu.Lock()
	defer mu.Unlock()
	if ballast != nil {
		t.Error("a ballast was kept with GOGC in the environment")
	}
}
