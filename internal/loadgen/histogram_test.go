package loadgen

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistIndexBounds(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(v uint64) {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, want in [0, %d)", v, i, histBuckets)
		}
		if lo, hi := histLow(i), histLow(i+1); v < lo || (i+1 < histBuckets && v >= hi) {
			t.Fatalf("histIndex(%d) = %d with bounds [%d, %d), want v inside", v, i, lo, hi)
		}
	}
	for v := uint64(0); v < 5000; v++ {
		check(v)
	}
	for range 100000 {
		check(rng.Uint64() >> (1 + rng.IntN(63)))
	}
	check(1<<63 - 1) // the longest time.Duration
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var h histogram
	var exact []time.Duration
	for range 20000 {
		d := time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond))
		h.record(d)
		exact = append(exact, d)
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		want := exact[int(q*float64(len(exact))+0.999999)-1]
		got := h.quantile(q)
		if diff := float64(got-want) / float64(want); diff < -1.0/64 || diff > 1.0/64 {
			t.Errorf("quantile(%v) = %v, want %v ± 1/64", q, got, want)
		}
	}
	if h.max != exact[len(exact)-1] {
		t.Errorf("max = %v, want %v", h.max, exact[len(exact)-1])
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile(0.5) = %v, want 0", got)
	}
}

func TestHistogramMerge(t *testing.T) {
	t.Parallel()
	var a, b histogram
	for i := range 100 {
		a.record(time.Duration(i) * time.Microsecond)
		b.record(time.Duration(100+i) * time.Microsecond)
	}
	a.merge(&b)
	if a.n != 200 || a.max != 199*time.Microsecond {
		t.Fatalf("merged n, max = %d, %v, want 200, 199µs", a.n, a.max)
	}
	if got := a.quantile(0.5); got < 98*time.Microsecond || got > 101*time.Microsecond {
		t.Errorf("merged quantile(0.5) = %v, want ≈ 99µs", got)
	}
}
