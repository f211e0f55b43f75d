package spend_test

import (
	"math"
	"testing"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
)

func TestFromUSD(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		usd  float64
		want spend.Micros
	}{
		{name: "zero", usd: 0, want: 0},
		{name: "one dollar", usd: 1, want: 1_000_000},
		{name: "one micro-dollar", usd: 0.000001, want: 1},
		{name: "float noise rounds to nearest", usd: 64 * 2.5 / 1e6, want: 160},
		{name: "half rounds away from zero", usd: 0.0000025, want: 3},
		{name: "below half a micro-dollar", usd: 4e-7, want: 0},
		{name: "negative", usd: -1.5, want: -1_500_000},
		{name: "too large to count", usd: 1e300, want: spend.NoLimit},
		{name: "infinite", usd: math.Inf(1), want: spend.NoLimit},
		{name: "NaN", usd: math.NaN(), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := spend.FromUSD(tt.usd); got != tt.want {
				t.Errorf("FromUSD(%v) = %d, want %d", tt.usd, got, tt.want)
			}
		})
	}
}

func TestMicrosString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		m    spend.Micros
		want string
	}{
		{m: 0, want: "$0.000000"},
		{m: 1, want: "$0.000001"},
		{m: 1_250_000, want: "$1.250000"},
		{m: -42, want: "-$0.000042"},
		{m: spend.NoLimit, want: "no limit"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("Micros(%d).String() = %q, want %q", int64(tt.m), got, tt.want)
		}
		if got, want := tt.m.USD(), float64(tt.m)/1e6; got != want {
			t.Errorf("Micros(%d).USD() = %v, want %v", int64(tt.m), got, want)
		}
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	split := func(u upstream.Usage, w5m, w1h int64) upstream.Usage {
		u.CacheCreation.Ephemeral5m, u.CacheCreation.Ephemeral1h = w5m, w1h
		return u
	}
	tests := []struct {
		name string
		u    upstream.Usage
		want catalog.Usage
	}{
		{name: "no cache", u: upstream.Usage{InputTokens: 10, OutputTokens: 20},
			want: catalog.Usage{InputTokens: 10, OutputTokens: 20}},
		{name: "reads", u: upstream.Usage{InputTokens: 3, CacheReadInputTokens: 900, OutputTokens: 5},
			want: catalog.Usage{InputTokens: 3, CacheReadTokens: 900, OutputTokens: 5}},
		{name: "writes split by TTL", u: split(upstream.Usage{InputTokens: 1, CacheCreationInputTokens: 300, OutputTokens: 2}, 100, 200),
			want: catalog.Usage{InputTokens: 1, CacheWrite5mTokens: 100, CacheWrite1hTokens: 200, OutputTokens: 2}},
		{name: "writes not split count as 5m", u: upstream.Usage{InputTokens: 1, CacheCreationInputTokens: 300, OutputTokens: 2},
			want: catalog.Usage{InputTokens: 1, CacheWrite5mTokens: 300, OutputTokens: 2}},
		{name: "1h only", u: split(upstream.Usage{CacheCreationInputTokens: 50}, 0, 50),
			want: catalog.Usage{CacheWrite1hTokens: 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := spend.Usage(tt.u); got != tt.want {
				t.Errorf("Usage(%+v) = %+v, want %+v", tt.u, got, tt.want)
			}
		})
	}
}

// TestCost: spend prices with the catalog's arithmetic (catalog.Cost), every part
// of a usage at the model's own price; no price is written here.
func TestCost(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	haiku, err := cat.Resolve("haiku")
	if err != nil {
		t.Fatal(err)
	}
	fable, err := cat.Resolve("claude-fable-5-1") // has its own cache-read multiplier
	if err != nil {
		t.Fatal(err)
	}
	const mtok = 1_000_000
	tests := []struct {
		name  string
		m     *catalog.Model
		u     catalog.Usage
		batch bool
		want  float64
	}{
		{name: "uncached input", m: haiku, u: catalog.Usage{InputTokens: mtok}, want: haiku.Price.Input},
		{name: "output", m: haiku, u: catalog.Usage{OutputTokens: mtok}, want: haiku.Price.Output},
		{name: "5m writes", m: haiku, u: catalog.Usage{CacheWrite5mTokens: mtok}, want: haiku.Price.Input * cat.Pricing.CacheWrite5m},
		{name: "1h writes", m: haiku, u: catalog.Usage{CacheWrite1hTokens: mtok}, want: haiku.Price.Input * cat.Pricing.CacheWrite1h},
		{name: "reads", m: haiku, u: catalog.Usage{CacheReadTokens: mtok}, want: haiku.Price.Input * cat.Pricing.CacheRead},
		{name: "reads at the model's multiplier", m: fable, u: catalog.Usage{CacheReadTokens: mtok}, want: fable.Price.Input * fable.Price.CacheRead},
		{name: "batch", m: haiku, u: catalog.Usage{InputTokens: mtok, OutputTokens: mtok}, batch: true,
			want: (haiku.Price.Input + haiku.Price.Output) * cat.Pricing.Batch},
		{name: "batch stacks with cache", m: haiku, u: catalog.Usage{CacheReadTokens: mtok}, batch: true,
			want: haiku.Price.Input * cat.Pricing.CacheRead * cat.Pricing.Batch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := spend.Cost(cat, tt.m, tt.u, tt.batch)
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Cost(%s, %+v, %v) = %v, want %v", tt.m.ID, tt.u, tt.batch, got, tt.want)
			}
			if got != cat.Cost(tt.m, tt.u, tt.batch) {
				t.Errorf("Cost(%s, %+v, %v) = %v, want catalog.Cost's %v", tt.m.ID, tt.u, tt.batch, got, cat.Cost(tt.m, tt.u, tt.batch))
			}
		})
	}
}

func TestWorstCase(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	tests := []struct {
		name       string
		model      string
		in, maxTok int64
		batch      bool
	}{
		{name: "realtime", model: "haiku", in: 1200, maxTok: 1024},
		{name: "batch", model: "haiku", in: 1200, maxTok: 1024, batch: true},
		{name: "output only", model: "sonnet", maxTok: 64},
		{name: "sums of many requests", model: "opus", in: 40_000_000, maxTok: 9_000_000, batch: true},
		{name: "nothing", model: "haiku"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := cat.Resolve(tt.model)
			if err != nil {
				t.Fatal(err)
			}
			got := spend.WorstCase(cat, m, tt.in, tt.maxTok, tt.batch)
			want := spend.FromUSD(cat.Cost(m, catalog.Usage{InputTokens: tt.in, OutputTokens: tt.maxTok}, tt.batch))
			if got != want {
				t.Errorf("WorstCase(%s, %d, %d, %v) = %v, want %v (input uncached, max_tokens as output)", m.ID, tt.in, tt.maxTok, tt.batch, got, want)
			}
			// An answer within max_tokens whose input is as estimated, some of it
			// read from a cache, costs no more. (Cache writes can: they cost more
			// than uncached input.)
			for _, u := range []catalog.Usage{
				{InputTokens: tt.in, OutputTokens: tt.maxTok / 2},
				{InputTokens: tt.in / 2, CacheReadTokens: tt.in - tt.in/2, OutputTokens: tt.maxTok},
			} {
				if c := spend.FromUSD(spend.Cost(cat, m, u, tt.batch)); c > got {
					t.Errorf("Cost(%s, %+v) = %v, above WorstCase %v", m.ID, u, c, got)
				}
			}
		})
	}
}
