//go:build !unix

package bench

import "time"

// processCPU is not measured here: the reports leave the CPU columns out.
func processCPU() (time.Duration, bool) { return 0, false }

// machineTicks is not read here.
func machineTicks() (steal, total uint64, ok bool) { return 0, 0, false }
