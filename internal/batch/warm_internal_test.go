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
// batch would write it on at least 3 lines (min(k, W) ≥ 3: a write at batch
// price is 0.625× input, at full 1.25×, a read 0.05×), never with W ≤ 2, and
// not when the warm line's answer is long (its output at full price).
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
		name   string
		ttl    time.Duration
		lines  int64
		writes int
		req    *jobs.Request
		pays   bool
	}{
		{name: "one line", ttl: 5 * time.Minute, lines: 1, writes: 4, req: short},
		{name: "two lines", ttl: 5 * time.Minute, lines: 2, writes: 4, req: short},
		{name: "three lines", ttl: 5 * time.Minute, lines: 3, writes: 4, req: short, pays: true},
		{name: "ten lines", ttl: 5 * time.Minute, lines: 10, writes: 4, req: short, pays: true},
		{name: "ten lines, 1h", ttl: time.Hour, lines: 10, writes: 4, req: short, pays: true},
		{name: "two lines, 1h", ttl: time.Hour, lines: 2, writes: 4, req: short},
		{name: "batch writes once", ttl: 5 * time.Minute, lines: 100, writes: 1, req: short},
		{name: "batch writes twice", ttl: 5 * time.Minute, lines: 100, writes: 2, req: short},
		{name: "batch writes 3 times", ttl: 5 * time.Minute, lines: 100, writes: 3, req: short, pays: true},
		{name: "long answer", ttl: 5 * time.Minute, lines: 3, writes: 4, req: long},
	} {
		p := cacheprefix.Prefix{Key: cacheprefix.Key{1}, Tokens: 5000, TTL: tt.ttl}
		got := warmSaving(cat, m, p, tt.lines, tt.writes, tt.req)
		if (got > 0) != tt.pays {
			t.Errorf("%s: warmSaving(%d lines, W %d, TTL %s) = $%.6f, want pays %v", tt.name, tt.lines, tt.writes, tt.ttl, got, tt.pays)
		}
	}
}
