//go:build !unix

package bench

import "time"

// processCPU is not measured here: the reports leave the CPU columns out.
func processCPU() (time.Duration, bool) { return 0, false }
