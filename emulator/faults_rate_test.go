package emulator_test

import (
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/clade-dev/clade/emulator"
)

// serveInProcess sends one request straight to the handler and returns the status, or
// 0 when the handler dropped the connection.
func serveInProcess(s *emulator.Server, path, body string) (status int) {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("x-api-key", testKey)
	req.Header.Set("anthropic-version", emulator.Version2023)
	req.Header.Set("content-type", "application/json")
	rec := httptest.NewRecorder()
	defer func() {
		// A recorder cannot be hijacked, so a dropped connection aborts the handler.
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				status = 0
				return
			}
			panic(v)
		}
	}()
	s.ServeHTTP(rec, req)
	return rec.Code
}

func TestFaultRatesAreHonoured(t *testing.T) {
	t.Parallel()
	const n = 2000
	f := emulator.Faults{Overloaded: 0.10, Ramp: 0.02, ServerError: 0.05, Timeout: 0.03, Drop: 0.04}
	s, err := emulator.New(emulator.Config{Tier: "unlimited", Seed: 42, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range n / 8 {
				st := serveInProcess(s, "/v1/messages", helloBody)
				mu.Lock()
				counts[st]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	want := []struct {
		name   string
		status int
		p      float64
	}{
		{"overloaded", 529, f.Overloaded},
		{"ramp", 429, f.Ramp},
		{"server_error", 500, f.ServerError},
		{"timeout", 504, f.Timeout},
		{"drop", 0, f.Drop},
		{"served", 200, 1 - f.Overloaded - f.Ramp - f.ServerError - f.Timeout - f.Drop},
	}
	total := 0
	for _, w := range want {
		got := counts[w.status]
		total += got
		mean := n * w.p
		sd := math.Sqrt(n * w.p * (1 - w.p))
		if math.Abs(float64(got)-mean) > 4*sd+1 {
			t.Errorf("%s: %d of %d requests, want %.0f ± %.0f (rate %v)", w.name, got, n, mean, 4*sd, w.p)
		}
	}
	if total != n {
		t.Errorf("statuses %v add up to %d, want %d", counts, total, n)
	}
}

func TestFaultsDeterministicForSeed(t *testing.T) {
	t.Parallel()
	run := func(seed int64) []int {
		s, err := emulator.New(emulator.Config{Tier: "unlimited", Seed: seed,
			Faults: emulator.Faults{Overloaded: 0.2, ServerError: 0.2, Drop: 0.1}})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int, 300)
		for i := range out {
			out[i] = serveInProcess(s, "/v1/messages", helloBody)
		}
		return out
	}
	a, b, c := run(1), run(1), run(2)
	if !equalInts(a, b) {
		t.Errorf("seed 1 gave two different fault sequences:\n%v\n%v", a, b)
	}
	if equalInts(a, c) {
		t.Errorf("seeds 1 and 2 gave the same fault sequence, want different")
	}
}
