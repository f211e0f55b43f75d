package plan_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/cacheprefix"
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
	// Batch: 5 lines a prefix in groups of 4 write it 2.5 times; warmed, once.
	if c.Batch.CacheWriteTokens != 50*T || c.Batch.CacheReadTokens != 50*T || c.Batch.WarmedPrefixes != 0 {
		t.Errorf("batch: write %d read %d warmed %d, want %d, %d, 0", c.Batch.CacheWriteTokens, c.Batch.CacheReadTokens, c.Batch.WarmedPrefixes, 50*T, 50*T)
	}
	if c.BatchWarm.CacheWriteTokens != 20*T || c.BatchWarm.CacheReadTokens != 80*T || c.BatchWarm.WarmedPrefixes != 20 || !(c.BatchWarm.CostUSD < c.Batch.CostUSD) {
		t.Errorf("batch_cache_warm = %+v, want write %d read %d, 20 warmed, cheaper than batch's $%v", c.BatchWarm, 20*T, 80*T, c.Batch.CostUSD)
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
	for name, b := range map[string]plan.CacheBatch{"batch": c.Batch, "batch_cache_warm": c.BatchWarm} {
		if b.CostUSD != p.BatchCostUSD || b.CacheWriteTokens != 0 || b.CacheReadTokens != 0 || b.WarmedPrefixes != 0 {
			t.Errorf("%s = %+v, want cost %v (the plan's batch cost), no cache tokens, none warmed", name, b, p.BatchCostUSD)
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

// oneBatchPrefix is a workload of k claude-haiku-4-5 lines sharing one 6,000-token
// prefix (ttl), each with 20 more input tokens and 50 expected output tokens.
func oneBatchPrefix(k int64, ttl time.Duration) *plan.Workload {
	return &plan.Workload{
		Input: "in.jsonl", Lines: k, Read: k,
		Models: []*plan.ModelLoad{{
			Model: "claude-haiku-4-5", Requests: k, InputTokens: k * 6020, OutputTokens: k * 50, MaxTokens: k * 100,
			LargestInput: 6020, LargestMaxTokens: 100, LargestOutput: 50,
			Prefixes: map[cacheprefix.Key]*plan.PrefixLoad{{1}: {Tokens: 6000, TTL: ttl, Lines: k}},
		}},
	}
}

// TestPlanCacheBatchBestEffort checks the batch figures against a hand computation
// from the catalog's fields, for one prefix of 6,000 tokens (5 m TTL) on k lines:
// clade batch is expected to write it E(k) times at batch price and read it on the
// other k − E(k) lines; --cache-warm realtime, where that pays, writes it once at
// full price (its line's 20 other input and 50 output tokens at full price too)
// and reads it on the other k − 1 lines at batch price.
func TestPlanCacheBatchBestEffort(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	m, ok := cat.Model("claude-haiku-4-5")
	if !ok {
		t.Fatal("claude-haiku-4-5 is not in the catalog")
	}
	in, out, b := m.Price.Input/1e6, m.Price.Output/1e6, cat.Pricing.Batch
	read := cat.Pricing.CacheRead
	if m.Price.CacheRead != 0 {
		read = m.Price.CacheRead
	}
	if b >= 1 || cat.Pricing.CacheWrite5m <= b || m.Price.Input <= 0 {
		t.Fatalf("catalog batch %g, write %g, input %g: the batch and warm prices are not exercised", b, cat.Pricing.CacheWrite5m, m.Price.Input)
	}
	for _, tt := range []struct {
		name   string
		k      int64
		ttl    time.Duration
		group  int // 0: the default
		e      float64
		warmed bool
	}{
		{name: "ten lines, groups of 4", k: 10, ttl: 5 * time.Minute, e: 2.5, warmed: true},
		{name: "ten lines, groups of 4, 1 h", k: 10, ttl: time.Hour, e: 2.5, warmed: true},
		{name: "two lines, groups of 4", k: 2, ttl: 5 * time.Minute, group: 4, e: 1.75},
		{name: "ten lines, groups of 1", k: 10, ttl: 5 * time.Minute, group: 1, e: 1},
	} {
		write := cat.Pricing.CacheWrite5m
		if tt.ttl >= time.Hour {
			write = cat.Pricing.CacheWrite1h
		}
		p, err := plan.Make(cat, oneBatchPrefix(tt.k, tt.ttl), plan.Options{Tiers: []string{"tier-1"}, CacheGroup: tt.group})
		if err != nil {
			t.Fatal(err)
		}
		c := p.Cache
		wantGroup := tt.group
		if wantGroup == 0 {
			wantGroup = plan.DefaultCacheWarmGroup
		}
		if c.CacheGroup != wantGroup {
			t.Errorf("%s: CacheGroup = %d, want %d", tt.name, c.CacheGroup, wantGroup)
		}
		if got := plan.ColdWrites(tt.k, c.CacheGroup); got != tt.e {
			t.Fatalf("%s: ColdWrites(%d, %d) = %v, want %v", tt.name, tt.k, c.CacheGroup, got, tt.e)
		}
		k := float64(tt.k)
		T := 6000.0
		uncached := 20 * k
		batchIn := uncached*in*b + tt.e*T*in*write*b + (k-tt.e)*T*in*read*b
		batchAll := batchIn + 50*k*out*b
		want := plan.CacheBatch{InputTokens: 20 * tt.k, CacheWriteTokens: int64(tt.e * T), CacheReadTokens: int64((k - tt.e) * T), InputCostUSD: batchIn, CostUSD: batchAll}
		checkCacheBatch(t, tt.name+": batch", c.Batch, want)

		if tt.warmed {
			warmIn := T*in*write + (k-1)*T*in*read*b + 20*in + (uncached-20)*in*b
			warmAll := warmIn + 50*out + 50*(k-1)*out*b
			if !(warmAll < batchAll) {
				t.Fatalf("%s: warm $%v, batch $%v: by hand warming does not pay, the case is wrong", tt.name, warmAll, batchAll)
			}
			want = plan.CacheBatch{InputTokens: 20 * tt.k, CacheWriteTokens: 6000, CacheReadTokens: (tt.k - 1) * 6000, InputCostUSD: warmIn, CostUSD: warmAll, WarmedPrefixes: 1}
		}
		checkCacheBatch(t, tt.name+": batch_cache_warm", c.BatchWarm, want)
	}
}

func checkCacheBatch(t *testing.T, name string, got, want plan.CacheBatch) {
	t.Helper()
	if got.InputTokens != want.InputTokens || got.CacheWriteTokens != want.CacheWriteTokens || got.CacheReadTokens != want.CacheReadTokens || got.WarmedPrefixes != want.WarmedPrefixes ||
		math.Abs(got.InputCostUSD-want.InputCostUSD) > 1e-12 || math.Abs(got.CostUSD-want.CostUSD) > 1e-12 {
		t.Errorf("%s = %+v, want %+v", name, got, want)
	}
}

// TestPlanCacheBatchText checks that the text report prints both batch rows and
// the group they assume.
func TestPlanCacheBatchText(t *testing.T) {
	t.Parallel()
	p, err := plan.Make(catalog.Default(), oneBatchPrefix(10, 5*time.Minute), plan.Options{Tiers: []string{"tier-1"}, CacheGroup: 3})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := plan.WriteText(&b, p); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"\nclade batch  ", "\nbatch --cache-warm realtime  ", "requests in groups of 3 processed", "(1+…+min(k,3))/3"} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteText does not print %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out[strings.Index(out, "through batches"):strings.Index(out, "recommendation:")], "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("batch section line of %d columns, want at most 80: %q", n, line)
		}
	}
}

// TestPlanCacheGroupInvalid checks that a negative CacheGroup is refused, not
// replaced.
func TestPlanCacheGroupInvalid(t *testing.T) {
	t.Parallel()
	if _, err := plan.Make(catalog.Default(), oneBatchPrefix(10, 5*time.Minute), plan.Options{CacheGroup: -1}); err == nil {
		t.Error("Make(CacheGroup -1) = nil error, want one")
	}
}

func TestColdWrites(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		k     int64
		group int
		want  float64
	}{
		{1, 4, 1}, {2, 4, 1.75}, {3, 4, 2.25}, {4, 4, 2.5}, {10, 4, 2.5}, {100, 1, 1}, {3, 10, 2.7}, {5, 0, 1},
	} {
		if got := plan.ColdWrites(tt.k, tt.group); got != tt.want {
			t.Errorf("ColdWrites(%d, %d) = %v, want %v", tt.k, tt.group, got, tt.want)
		}
	}
}
