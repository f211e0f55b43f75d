package batch

import (
	"testing"
	"time"
)

func TestPollETA(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var ps pollState
	ps.observe(t0, 100)
	if ps.eta != 0 {
		t.Errorf("ETA after one poll = %v, want unknown (0)", ps.eta)
	}
	ps.observe(t0.Add(time.Second), 80) // 20 per second: 80 left take 4 s
	if ps.eta != 4*time.Second {
		t.Errorf("ETA = %v, want 4s", ps.eta)
	}
	ps.observe(t0.Add(2*time.Second), 80) // stalled (queued behind another batch)
	if ps.eta != 0 {
		t.Errorf("ETA of a stalled batch = %v, want unknown (0)", ps.eta)
	}
}
