package admit_test

import (
	"testing"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/admit/admittest"
)

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	admittest.Run(t, func(*testing.T) admit.Backend { return admit.NewMemory() })
}
