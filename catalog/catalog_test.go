package catalog

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	t.Parallel()
	c, err := Parse(defaultYAML)
	if err != nil {
		t.Fatalf("Parse(embedded) error: %v", err)
	}
	for _, tier := range []string{"tier-1", "tier-2", "tier-3", "tier-4", "start", "build", "scale", "unlimited"} {
		if _, err := c.Tier(tier); err != nil {
			t.Errorf("Tier(%q) error: %v", tier, err)
		}
	}
}

func TestSharedPools(t *testing.T) {
	t.Parallel()
	c := Default()
	tests := []struct{ a, b string }{
		{"claude-opus-4-8", "claude-opus-4-5-20251101"},
		{"claude-sonnet-4-6", "claude-sonnet-4-5"},
		{"claude-fable-5", "claude-fable-5-1"},
		{"claude-mythos-5", "claude-mythos-5-1"},
	}
	for _, tt := range tests {
		ma, _ := c.Model(tt.a)
		mb, _ := c.Model(tt.b)
		if ma == nil || mb == nil || ma.Class != mb.Class {
			t.Errorf("Model(%s) and Model(%s) are not in one class", tt.a, tt.b)
		}
	}
	o5, _ := c.Model("claude-opus-5")
	o55, _ := c.Model("claude-opus-5-5")
	if o5.Class == o55.Class {
		t.Errorf("Opus 5 and Opus 5.5 share class %s, want separate pools", o5.Class)
	}
}

func TestTierLimits(t *testing.T) {
	t.Parallel()
	c := Default()
	tests := []struct {
		tier, model     string
		rpm, itpm, otpm int64
	}{
		{"tier-1", "claude-sonnet-4-5", 50, 30000, 8000},
		{"tier-1", "claude-haiku-4-5", 50, 50000, 10000},
		{"tier-4", "claude-haiku-4-5-20251001", 4000, 4000000, 800000},
		{"tier-2", "claude-3-5-haiku-20241022", 1000, 100000, 20000},
		{"start", "claude-fable-5", 1000, 500000, 100000},
		{"start", "claude-sonnet-5", 1000, 2000000, 400000},
	}
	for _, tt := range tests {
		tier, err := c.Tier(tt.tier)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := c.Model(tt.model)
		if !ok {
			t.Fatalf("Model(%q) not found", tt.model)
		}
		l := tier.ClassLimits(m.Class)
		if l.RPM != tt.rpm || l.ITPM != tt.itpm || l.OTPM != tt.otpm {
			t.Errorf("%s %s limits = %d/%d/%d, want %d/%d/%d", tt.tier, tt.model, l.RPM, l.ITPM, l.OTPM, tt.rpm, tt.itpm, tt.otpm)
		}
	}
	if l := c.Tiers["build"].ClassLimits("sonnet-5"); l.Uncertain == "" {
		t.Errorf("build tier sonnet-5 limits not marked uncertain")
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	c := Default()
	for name, want := range map[string]string{
		"haiku":                     "claude-haiku-4-5",
		"Sonnet":                    "claude-sonnet-5",
		"claude-haiku-4-5-20251001": "claude-haiku-4-5",
		"claude-opus-4-7":           "claude-opus-4-7",
	} {
		m, err := c.Resolve(name)
		if err != nil || m.ID != want {
			t.Errorf("Resolve(%q) = %v, %v, want %s", name, m, err, want)
		}
	}
	if _, err := c.Resolve("gpt-4"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("Resolve(gpt-4) error = %v, want ErrUnknownModel", err)
	}
	if _, ok := c.Model("haiku"); ok {
		t.Errorf("Model(haiku) found: aliases must not be API ids")
	}
}

func TestCost(t *testing.T) {
	t.Parallel()
	c := Default()
	haiku, _ := c.Model("claude-haiku-4-5")
	fable, _ := c.Model("claude-fable-5-1")
	tests := []struct {
		name  string
		m     *Model
		u     Usage
		batch bool
		want  float64
	}{
		{"plain", haiku, Usage{InputTokens: 1e6, OutputTokens: 1e6}, false, 6},
		{"batch half", haiku, Usage{InputTokens: 1e6, OutputTokens: 1e6}, true, 3},
		{"cache write 5m", haiku, Usage{CacheWrite5mTokens: 1e6}, false, 1.25},
		{"cache write 1h", haiku, Usage{CacheWrite1hTokens: 1e6}, false, 2},
		{"cache read", haiku, Usage{CacheReadTokens: 1e6}, false, 0.1},
		{"fable cache read", fable, Usage{CacheReadTokens: 1e6}, false, 0.25},
		{"batch stacks with cache", haiku, Usage{CacheReadTokens: 1e6}, true, 0.05},
	}
	for _, tt := range tests {
		if got := c.Cost(tt.m, tt.u, tt.batch); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("Cost(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLoadOverlay(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mine.yaml")
	data := `
models:
  my-model:
    class: haiku-4-5
    display_name: Mine
    max_input_tokens: 1000
    max_tokens: 100
    price: {input: 1, output: 2}
tiers:
  tier-1:
    limits:
      haiku-4-5: {rpm: 7, itpm: 700, otpm: 70}
  tiny:
    batch: {rpm: 1, queue: 10, max_requests: 5}
    limits:
      default: {rpm: 1, itpm: 100, otpm: 10}
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load error: %v", err)
	}
	if _, ok := c.Model("my-model"); !ok {
		t.Errorf("overlay model missing")
	}
	t1, _ := c.Tier("tier-1")
	if l := t1.ClassLimits("haiku-4-5"); l.RPM != 7 {
		t.Errorf("overlay tier-1 haiku rpm = %d, want 7", l.RPM)
	}
	if l := t1.ClassLimits("opus-4"); l.RPM != 50 {
		t.Errorf("overlay lost tier-1 opus rpm: %d, want 50", l.RPM)
	}
	if _, err := c.Tier("tiny"); err != nil {
		t.Errorf("overlay tier missing: %v", err)
	}
	// The default is untouched.
	if l := Default().Tiers["tier-1"].ClassLimits("haiku-4-5"); l.RPM != 50 {
		t.Errorf("Default() changed by overlay: rpm %d", l.RPM)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("models:\n  x:\n    class: nope\n    max_tokens: 1\n"), 0o600)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "unknown class") {
		t.Errorf("Load(bad) error = %v, want unknown class", err)
	}
}
