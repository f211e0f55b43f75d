package serve_test

import (
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/upstream"
)

func TestConfigRefusesNegativeBounds(t *testing.T) {
	t.Parallel()
	up, err := upstream.New(upstream.Config{BaseURL: "http://127.0.0.1:1", APIKey: upstream.NewSecret("sk-ant-x")})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := admit.New(admit.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cfg  serve.Config
		want string // "" for no error
	}{
		{"zero values are the defaults", serve.Config{Upstream: up, Limiter: lim}, ""},
		{"no upstream", serve.Config{Limiter: lim}, "Upstream and Limiter are required"},
		{"negative wait", serve.Config{Upstream: up, Limiter: lim, MaxWait: -time.Second}, "MaxWait"},
		{"negative queue", serve.Config{Upstream: up, Limiter: lim, MaxQueue: -1}, "MaxQueue -1"},
		{"negative bytes", serve.Config{Upstream: up, Limiter: lim, MaxQueueBytes: -1}, "MaxQueueBytes"},
		{"negative attempts", serve.Config{Upstream: up, Limiter: lim, MaxAttempts: -2}, "MaxAttempts"},
	} {
		_, err := serve.New(tt.cfg)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: New = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: New = %v, want an error naming %q", tt.name, err, tt.want)
		}
	}
}
