package admit_test

import (
	"testing"

	"github.com/clade-dev/clade/admit"
)

func TestEstimatorCalibrates(t *testing.T) {
	t.Parallel()
	e := admit.NewEstimator()
	if got := e.Output("m", 1000); got != 1000 {
		t.Errorf("output before calibration = %d, want max_tokens 1000", got)
	}
	for i := 0; i < 50; i++ {
		e.Observe("m", 100, 150, 200)
	}
	if got := e.Output("m", 1000); got != 200 {
		t.Errorf("output after 50 observations of 200 = %d, want 200", got)
	}
	if got := e.Output("m", 100); got != 100 {
		t.Errorf("output capped by max_tokens = %d, want 100", got)
	}
	if got := e.Input("m", 1000); got != 1500 {
		t.Errorf("input estimate 1000 with a 1.5 ratio = %d, want 1500", got)
	}
	if got := e.Input("other", 1000); got != 1000 {
		t.Errorf("uncalibrated model input = %d, want 1000", got)
	}
}
