package gcfloor

import (
	"os"
	"runtime"
	"runtime/metrics"
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

// heapGoal is the collector's current heap target after a full collection.
func heapGoal() uint64 {
	runtime.GC()
	m := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(m)
	return m[0].Value.Uint64()
}

// TestBallastRaisesTheTarget: with a 64 MiB floor the collector's heap target is
// at least twice 64 MiB, so 256 MiB of short-lived garbage takes a few collections
// instead of dozens; after release the target is back to Go's.
func TestBallastRaisesTheTarget(t *testing.T) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		t.Skip("GOGC is set in the environment: Set leaves the collector alone (TestHandTunedLeftAlone)")
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Skip("GOMEMLIMIT is set in the environment")
	}
	goal := heapGoal()
	without := cycles(256 << 20)
	runtime.GC()
	rss := resident(t)
	ok, release := Set(64 << 20)
	if !ok {
		t.Fatal("Set(64 MiB) = false without GOGC or GOMEMLIMIT")
	}
	grown := resident(t) - rss
	floorGoal := heapGoal()
	with := cycles(256 << 20)
	release()
	after := heapGoal()
	t.Logf("heap target %d MiB, %d MiB with a 64 MiB floor, %d MiB after release; collections for 256 MiB of garbage: %d without, %d with; resident memory %+d MiB at Set",
		goal>>20, floorGoal>>20, after>>20, without, with, grown>>20)
	if floorGoal < 2*(64<<20) {
		t.Errorf("heap target with a 64 MiB floor: %d MiB, want at least 128", floorGoal>>20)
	}
	if goal >= 32<<20 || after >= 32<<20 {
		t.Errorf("heap target without a floor %d MiB, after release %d MiB; want Go's few MiB", goal>>20, after>>20)
	}
	if with > 8 {
		t.Errorf("%d collections for 256 MiB of garbage with a 64 MiB floor, want at most 8 (256 / 128 and a few)", with)
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
