package plan_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/intake"
	"github.com/clade-dev/clade/internal/plan"
)

// cachedLine is a request whose first user block, doc, carries cache_control (ttl ""
// for the default 5 minutes), followed by a short question.
func cachedLine(id, model, doc, ttl, question string) string {
	cc := `{"type":"ephemeral"}`
	if ttl != "" {
		cc = fmt.Sprintf(`{"type":"ephemeral","ttl":%q}`, ttl)
	}
	return fmt.Sprintf(`{"custom_id":%q,"params":{"model":%q,"max_tokens":100,"messages":[{"role":"user","content":[{"type":"text","text":%q,"cache_control":%s},{"type":"text","text":%q}]}]}}`,
		id, model, doc, cc, question)
}

// docsFile is docs documents × questions lines, grouped by document, each document
// 24,000 bytes (about 6,000 tokens: above haiku-4-5's min_cache_tokens).
func docsFile(docs, questions int, cached bool) string {
	var lines []string
	for d := range docs {
		doc := strings.Repeat(fmt.Sprintf("document %02d. ", d), 24000/13) // the same length for every d
		for q := range questions {
			id, question := fmt.Sprintf("d%dq%d", d, q), fmt.Sprintf("Question %d about it?", q)
			if cached {
				lines = append(lines, cachedLine(id, "claude-haiku-4-5", doc, "", question))
			} else {
				lines = append(lines, fmt.Sprintf(`{"custom_id":%q,"params":{"model":"claude-haiku-4-5","max_tokens":100,"messages":[{"role":"user","content":[{"type":"text","text":%q},{"type":"text","text":%q}]}]}}`, id, doc, question))
			}
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// TestPlanCacheRepeatedPrefixes checks that 20 documents × 5 questions with the
// document in a cache_control block are estimated at one write per document and
// reads for the rest with scheduling, a write per request without, and that the
// estimate with scheduling is cheaper and faster (ITPM binds on tier-1).
func TestPlanCacheRepeatedPrefixes(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	content := docsFile(20, 5, true)
	first := strings.SplitN(content, "\n", 2)[0]
	req, prob := intake.ParseLine(1, []byte(first))
	if prob != nil {
		t.Fatalf("ParseLine: %v", prob)
	}
	T := req.Cache.Tokens // the prefix as clade run schedules it
	m, _ := cat.Model("claude-haiku-4-5")
	cl := cat.Class(m)
	if T < cl.MinCacheTokens {
		t.Fatalf("prefix of %d tokens is under min_cache_tokens %d: the property is not exercised", T, cl.MinCacheTokens)
	}

	w := scanString(t, t.TempDir(), content, plan.ScanOptions{})
	p, err := plan.Make(cat, w, plan.Options{Tiers: []string{"tier-1", "tier-2"}})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Cache
	if c.Prefixes != 20 || c.Requests != 100 {
		t.Fatalf("Cache = %d prefixes, %d requests, want 20, 100", c.Prefixes, c.Requests)
	}
	if c.With.CacheWriteTokens != 20*T || c.With.CacheReadTokens != 80*T {
		t.Errorf("with: write %d read %d, want %d, %d", c.With.CacheWriteTokens, c.With.CacheReadTokens, 20*T, 80*T)
	}
	if c.Without.CacheWriteTokens != 100*T || c.Without.CacheReadTokens != 0 {
		t.Errorf("without: write %d read %d, want %d, 0", c.Without.CacheWriteTokens, c.Without.CacheReadTokens, 100*T)
	}
	uncached := p.Models[0].InputTokens - 100*T
	if c.With.InputTokens != uncached || c.Without.InputTokens != uncached || uncached <= 0 {
		t.Errorf("uncached with/without = %d/%d, want %d > 0", c.With.InputTokens, c.Without.InputTokens, uncached)
	}
	wantWith := cat.Cost(m, catalog.Usage{InputTokens: uncached, CacheWrite5mTokens: 20 * T, CacheReadTokens: 80 * T}, false)
	wantWithout := cat.Cost(m, catalog.Usage{InputTokens: uncached, CacheWrite5mTokens: 100 * T}, false)
	if math.Abs(c.With.InputCostUSD-wantWith) > 1e-9 || math.Abs(c.Without.InputCostUSD-wantWithout) > 1e-9 {
		t.Errorf("input cost with/without = %v/%v, want %v/%v", c.With.InputCostUSD, c.Without.InputCostUSD, wantWith, wantWithout)
	}
	if !(c.With.InputCostUSD < c.Without.InputCostUSD) {
		t.Errorf("input cost with %v, want less than without %v", c.With.InputCostUSD, c.Without.InputCostUSD)
	}
	// The plan's own cost assumes no cache: between the two.
	if base := cat.Cost(m, catalog.Usage{InputTokens: p.Models[0].InputTokens}, false); !(wantWith < base && base < wantWithout) {
		t.Errorf("uncached input cost %v, want between %v and %v", base, wantWith, wantWithout)
	}
	wantITPM := uncached + 20*T
	if cl.CacheReadsCountITPM {
		wantITPM += 80 * T
	}
	if c.With.ITPMTokens != wantITPM || c.Without.ITPMTokens != uncached+100*T {
		t.Errorf("ITPM with/without = %d/%d, want %d/%d", c.With.ITPMTokens, c.Without.ITPMTokens, wantITPM, uncached+100*T)
	}
	for i, tier := range []string{"tier-1", "tier-2"} {
		wt, wo := c.With.Tiers[i], c.Without.Tiers[i]
		if wt.Tier != tier || wo.Tier != tier {
			t.Fatalf("tiers = %s/%s, want %s", wt.Tier, wo.Tier, tier)
		}
		if wo.Minutes != p.Tiers[i].Minutes {
			t.Errorf("%s without = %g min, want the plan's %g (all input counts)", tier, wo.Minutes, p.Tiers[i].Minutes)
		}
	}
	if wt, wo := c.With.Tiers[0], c.Without.Tiers[0]; wo.Binding != plan.LimitITPM || !(wt.Minutes < wo.Minutes) {
		t.Errorf("tier-1 with %g min (%s), without %g min (%s): want without bound by ITPM and with shorter", wt.Minutes, wt.Binding, wo.Minutes, wo.Binding)
	}
}

// TestPlanCacheNoCacheControl checks that without cache_control both orders equal
// the plan's own cost and time.
func TestPlanCacheNoCacheControl(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	w := scanString(t, t.TempDir(), docsFile(20, 5, false), plan.ScanOptions{})
	p, err := plan.Make(cat, w, plan.Options{Tiers: []string{"tier-1"}})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Cache
	if p.Requests != 100 || c.Prefixes != 0 || c.Requests != 0 {
		t.Fatalf("plan of %d requests: Cache = %d prefixes %d requests, want 100 requests, 0, 0", p.Requests, c.Prefixes, c.Requests)
	}
	m, _ := cat.Model("claude-haiku-4-5")
	base := cat.Cost(m, catalog.Usage{InputTokens: p.Models[0].InputTokens}, false)
	for name, mode := range map[string]plan.CacheMode{"with": c.With, "without": c.Without} {
		if mode.InputCostUSD != base || mode.CostUSD != p.CostUSD || mode.CacheWriteTokens != 0 || mode.CacheReadTokens != 0 {
			t.Errorf("%s = %+v, want input cost %v, cost %v, no cache tokens", name, mode, base, p.CostUSD)
		}
		if len(mode.Tiers) != 1 || mode.Tiers[0].Minutes != p.Tiers[0].Minutes || mode.Tiers[0].Binding != p.Tiers[0].Binding {
			t.Errorf("%s tiers = %+v, want the plan's %g min %s", name, mode.Tiers, p.Tiers[0].Minutes, p.Tiers[0].Binding)
		}
	}
}

// TestPlanCacheTTLAndMinimum checks that a 1 h breakpoint is priced at the 1 h write
// multiplier and that a prefix under the class's min_cache_tokens is not counted.
func TestPlanCacheTTLAndMinimum(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	m, _ := cat.Model("claude-haiku-4-5")
	if cat.Pricing.CacheWrite1h == cat.Pricing.CacheWrite5m {
		t.Fatal("catalog 1 h and 5 m write multipliers are equal: the TTL is not exercised")
	}
	long := strings.Repeat("long document. ", 24000/15)
	short := strings.Repeat("s", 400) // ~100 tokens, under min_cache_tokens
	var lines []string
	for q := range 4 {
		lines = append(lines, cachedLine(fmt.Sprintf("l%d", q), "claude-haiku-4-5", long, "1h", fmt.Sprintf("q%d", q)))
		lines = append(lines, cachedLine(fmt.Sprintf("s%d", q), "claude-haiku-4-5", short, "", fmt.Sprintf("q%d", q)))
	}
	content := strings.Join(lines, "\n") + "\n"
	req, prob := intake.ParseLine(1, []byte(lines[0]))
	if prob != nil {
		t.Fatal(prob)
	}
	sreq, _ := intake.ParseLine(2, []byte(lines[1]))
	if sreq.Cache.Tokens >= cat.Class(m).MinCacheTokens || sreq.Cache.Key == req.Cache.Key {
		t.Fatalf("short prefix %d tokens: want a distinct prefix under %d", sreq.Cache.Tokens, cat.Class(m).MinCacheTokens)
	}
	T := req.Cache.Tokens
	p, err := plan.Make(cat, scanString(t, t.TempDir(), content, plan.ScanOptions{}), plan.Options{Tiers: []string{"tier-1"}})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Cache
	if c.Prefixes != 1 || c.Requests != 4 {
		t.Fatalf("Cache = %d prefixes, %d requests, want 1, 4 (the short prefix left out)", c.Prefixes, c.Requests)
	}
	uncached := p.Models[0].InputTokens - 4*T
	want := cat.Cost(m, catalog.Usage{InputTokens: uncached, CacheWrite1hTokens: T, CacheReadTokens: 3 * T}, false)
	if math.Abs(c.With.InputCostUSD-want) > 1e-9 {
		t.Errorf("with input cost = %v, want %v (1 h write)", c.With.InputCostUSD, want)
	}
	wantWithout := cat.Cost(m, catalog.Usage{InputTokens: uncached, CacheWrite1hTokens: 4 * T}, false)
	if math.Abs(c.Without.InputCostUSD-wantWithout) > 1e-9 {
		t.Errorf("without input cost = %v, want %v", c.Without.InputCostUSD, wantWithout)
	}
}

// TestPlanCacheSampled checks that a sampled input scales the requests with a prefix
// up to the file's and says its prefixes are those seen in the sample.
func TestPlanCacheSampled(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	w := scanString(t, t.TempDir(), docsFile(20, 5, true), plan.ScanOptions{Sample: 50})
	if !w.Sampled || w.Read >= w.Lines {
		t.Fatalf("Scan read %d of %d lines (sampled %v): want a sample", w.Read, w.Lines, w.Sampled)
	}
	p, err := plan.Make(cat, w, plan.Options{Tiers: []string{"tier-1"}})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Cache
	if !c.Sampled || c.Prefixes == 0 || c.Prefixes > 20 || c.Requests < 95 || c.Requests > 105 {
		t.Errorf("Cache = %d prefixes, %d requests, sampled %v; want sampled, 1-20 prefixes, about 100 requests", c.Prefixes, c.Requests, c.Sampled)
	}
	if !(c.With.InputCostUSD < c.Without.InputCostUSD) {
		t.Errorf("input cost with %v, want less than without %v", c.With.InputCostUSD, c.Without.InputCostUSD)
	}
	var b strings.Builder
	if err := plan.WriteText(&b, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "(prefixes seen in the sample)") {
		t.Errorf("WriteText does not say the prefixes are the sample's:\n%s", b.String())
	}
}
