package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"claude-haiku-45", "claude-haiku-4-5", 1}, {"same", "same", 0}} {
		if got := Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	models := []string{"claude-sonnet-5", "claude-haiku-4-5", "claude-opus-4-8"}
	if got := Closest("claude-haiku-45", models, 3); got != "claude-haiku-4-5" {
		t.Errorf("Closest(claude-haiku-45) = %q", got)
	}
	if got := Closest("Claude-Sonnet-5", models, 3); got != "claude-sonnet-5" {
		t.Errorf("Closest ignores case: got %q", got)
	}
	if got := Closest("gpt-4o", models, 3); got != "" {
		t.Errorf("Closest(gpt-4o) = %q, want nothing within 3 edits", got)
	}
}
