package runner

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/clade-dev/clade/catalog"
)

func TestRoutingPick(t *testing.T) {
	t.Parallel()
	r := &Routing{Rules: []Rule{
		{CustomID: "short-*", Model: "haiku"},
		{MaxInputTokens: 1000, Model: "claude-sonnet-5"},
		{FromModel: "opus", MinInputTokens: 50000, Model: "sonnet"},
	}}
	if err := r.Validate(catalog.Default()); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tests := []struct {
		customID, model string
		est             int64
		want            string
	}{
		{"short-1", "claude-opus-4-8", 99999, "haiku"},
		{"long-1", "claude-opus-4-8", 500, "claude-sonnet-5"},
		{"long-2", "opus", 60000, "sonnet"},
		{"long-3", "opus", 20000, "opus"},
	}
	for _, tt := range tests {
		if got := r.Pick(tt.customID, tt.model, tt.est); got != tt.want {
			t.Errorf("pick(%s, %s, %d) = %s, want %s", tt.customID, tt.model, tt.est, got, tt.want)
		}
	}
	o := &Routing{Override: "haiku", Rules: r.Rules}
	if got := o.Pick("short-1", "x", 1); got != "haiku" {
		t.Errorf("override pick = %s, want haiku", got)
	}
	var none *Routing
	if got := none.Pick("a", "claude-opus-4-8", 1); got != "claude-opus-4-8" {
		t.Errorf("nil routing pick = %s, want the line's model", got)
	}
}

func TestLoadRoutingErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	cat := catalog.Default()
	if _, err := LoadRouting(write("ok.yaml", "routes:\n  - custom_id: 'a*'\n    model: haiku\nfallback: sonnet\n"), cat); err != nil {
		t.Errorf("LoadRouting(ok): %v", err)
	}
	for name, body := range map[string]string{
		"unknown-model.yaml": "routes:\n  - model: gpt-9\n",
		"no-model.yaml":      "routes:\n  - custom_id: a\n",
		"bad-glob.yaml":      "routes:\n  - custom_id: '['\n    model: haiku\n",
		"bad-yaml.yaml":      "routes: [",
	} {
		if _, err := LoadRouting(write(name, body), cat); err == nil {
			t.Errorf("LoadRouting(%s) succeeded, want an error", name)
		}
	}
}

func TestFallbackAfterOverloads(t *testing.T) {
	t.Parallel()
	r := &run{cat: catalog.Default(), cfg: Config{Routing: &Routing{Fallback: "sonnet", FallbackAfter: 2}}}
	if m := r.fallback(1); m != nil {
		t.Errorf("fallback after 1 overload = %v, want none", m.ID)
	}
	if m := r.fallback(2); m == nil || m.ID != "claude-sonnet-5" {
		t.Errorf("fallback after 2 overloads = %v, want claude-sonnet-5", m)
	}
	r.cfg.Routing = nil
	if m := r.fallback(10); m != nil {
		t.Errorf("fallback without opting in = %v, want none", m.ID)
	}
}
