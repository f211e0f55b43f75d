package batch

import (
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/jobs"
)

// TestWarmSavingRule checks the "where that pays" rule on the catalog's prices:
// a 5,000-token prefix with a short question and answer pays to warm when a
// batch is expected to write it on more than 2.09 lines (a write at batch price
// is 0.625× input, at full 1.25×, a read 0.05×): from 3 lines with groups of 4,
// never with groups of 3 or less, and not when the warm line's answer is long
// (its output at full price).
func TestWarmSavingRule(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	m, err := cat.Resolve("claude-haiku-4-5")
	if err != nil {
		t.Fatal(err)
	}
	short := &jobs.Request{EstInputTokens: 5010, MaxTokens: 32}
	long := &jobs.Request{EstInputTokens: 5010, MaxTokens: 4096}
	for _, tt := range []struct {
		name  string
		ttl   time.Duration
		lines int64
		group int
		req   *jobs.Request
		pays  bool
	}{
		{name: "one line", ttl: 5 * time.Minute, lines: 1, group: 4, req: short},
		{name: "two lines", ttl: 5 * time.Minute, lines: 2, group: 4, req: short},
		{name: "three lines", ttl: 5 * time.Minute, lines: 3, group: 4, req: short, pays: true},
		{name: "ten lines", ttl: 5 * time.Minute, lines: 10, group: 4, req: short, pays: true},
		{name: "ten lines, 1h", ttl: time.Hour, lines: 10, group: 4, req: short, pays: true},
		{name: "two lines, 1h", ttl: time.Hour, lines: 2, group: 4, req: short},
		{name: "groups of 1", ttl: 5 * time.Minute, lines: 100, group: 1, req: short},
		{name: "groups of 2", ttl: 5 * time.Minute, lines: 100, group: 2, req: short},
		{name: "groups of 3", ttl: 5 * time.Minute, lines: 100, group: 3, req: short},
		{name: "groups of 10, 3 lines", ttl: 5 * time.Minute, lines: 3, group: 10, req: short, pays: true},
		{name: "long answer", ttl: 5 * time.Minute, lines: 3, group: 4, req: long},
	} {
		p := cacheprefix.Prefix{Key: cacheprefix.Key{1}, Tokens: 5000, TTL: tt.ttl}
		got := warmSaving(cat, m, p, tt.lines, tt.group, tt.req)
		if (got > 0) != tt.pays {
			t.Errorf("%s: warmSaving(%d lines, groups of %d, TTL %s) = $%.6f, want pays %v", tt.name, tt.lines, tt.group, tt.ttl, got, tt.pays)
		}
	}
}
