package emulator

import (
	"testing"
	"time"
)

// The hot path with no faults must not allocate: the emulator serves ≥10,000 req/s.
// AllocsPerRun cannot run in a parallel test.
func TestFaultDecideNoFaultsAllocatesNothing(t *testing.T) {
	now := time.Now()
	for _, f := range []Faults{{}, {Overloaded: 0.5, Endpoints: []string{"count_tokens"}}, {Timeout: 0.000001}} {
		s := newFaultState(f, 1)
		if n := testing.AllocsPerRun(1000, func() { s.decide("messages", false, now) }); n != 0 {
			t.Errorf("decide with %+v allocates %v times a request, want 0", f, n)
		}
	}
}

func BenchmarkFaultDecide(b *testing.B) {
	now := time.Now()
	for _, bc := range []struct {
		name string
		f    Faults
	}{
		{"none", Faults{}},
		{"rates", Faults{Overloaded: 0.01, ServerError: 0.01, Slow: 0.01}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newFaultState(bc.f, 1)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.decide("messages", false, now)
				}
			})
		})
	}
}
