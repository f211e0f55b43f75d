package ratelimit_test

import (
	"testing"

	"github.com/clade-dev/clade/internal/ratelimit"
	"github.com/clade-dev/clade/internal/ratelimit/ratelimittest"
)

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	ratelimittest.Run(t, func(*testing.T) ratelimit.Backend { return ratelimit.NewMemory() })
}
