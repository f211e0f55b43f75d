package plan_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/plan"
)

// TestCatalogTier1Haiku pins the numbers the hand-computed cases below rest on.
func TestPlanCatalogTier1Haiku(t *testing.T) {
	t.Parallel()
	l := catalog.Default().Tiers["tier-1"].ClassLimits("haiku-4-5")
	if l.RPM != 50 || l.ITPM != 50_000 || l.OTPM != 10_000 {
		t.Fatalf("tier-1 haiku-4-5 limits = %d/%d/%d, want 50/50000/10000", l.RPM, l.ITPM, l.OTPM)
	}
}

func TestPlanMinutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		need, limit int64
		want        float64
	}{
		{need: 0, limit: 50, want: 0},
		{need: 50, limit: 50, want: 0}, // the full bucket covers it
		{need: 51, limit: 50, want: 0.02},
		{need: 200, limit: 50, want: 3},
		{need: 400_000, limit: 50_000, want: 7},
		{need: 10, limit: 0, want: 0},
	}
	for _, tt := range tests {
		if got := plan.Minutes(tt.need, tt.limit); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("Minutes(%d, %d) = %g, want %g", tt.need, tt.limit, got, tt.want)
		}
	}
}

// TestEstimateTier1Haiku checks the time math against values computed by hand from
// tier-1 haiku-4-5: 50 RPM, 50,000 ITPM, 10,000 OTPM.
func TestPlanEstimateTier1Haiku(t *testing.T) {
	t.Parallel()
	l := catalog.Default().Tiers["tier-1"].ClassLimits("haiku-4-5")
	tests := []struct {
		name        string
		need        plan.Need
		wantMinutes float64
		wantBinding string
	}{
		// 200/50−1 = 3; 400,000/50,000−1 = 7; 20,000/10,000−1 = 1.
		{name: "input-heavy", need: plan.Need{Requests: 200, InputTokens: 400_000, OutputTokens: 20_000}, wantMinutes: 7, wantBinding: plan.LimitITPM},
		// 500/50−1 = 9; 50,000 and 5,000 fit the burst.
		{name: "many small", need: plan.Need{Requests: 500, InputTokens: 50_000, OutputTokens: 5_000}, wantMinutes: 9, wantBinding: plan.LimitRPM},
		// 100/50−1 = 1; 100,000/10,000−1 = 9.
		{name: "output-heavy", need: plan.Need{Requests: 100, InputTokens: 50_000, OutputTokens: 100_000}, wantMinutes: 9, wantBinding: plan.LimitOTPM},
		// Everything within one minute's bucket; ITPM is the closest to its limit.
		{name: "burst", need: plan.Need{Requests: 10, InputTokens: 40_000, OutputTokens: 1_000}, wantMinutes: 0, wantBinding: plan.LimitITPM},
		// 1,000/50−1 = 19 vs 1,000,000/50,000−1 = 19: a tie names rpm.
		{name: "tie", need: plan.Need{Requests: 1_000, InputTokens: 1_000_000, OutputTokens: 0}, wantMinutes: 19, wantBinding: plan.LimitRPM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, binding, dims := plan.Estimate(l, tt.need)
			if math.Abs(got-tt.wantMinutes) > 1e-9 || binding != tt.wantBinding {
				t.Errorf("Estimate(tier-1 haiku, %+v) = %g %s, want %g %s (dims %+v)", tt.need, got, binding, tt.wantMinutes, tt.wantBinding, dims)
			}
		})
	}
}

// TestBatchRatioExact checks that every model's batch cost is its realtime cost times
// exactly the catalog's batch multiplier (0.5).
func TestPlanBatchRatioExact(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	if cat.Pricing.Batch != 0.5 {
		t.Fatalf("catalog pricing.batch = %g, want 0.5", cat.Pricing.Batch)
	}
	dir := t.TempDir()
	var lines []string
	for i, id := range cat.ModelIDs() {
		lines = append(lines, line(fmt.Sprintf("r%d", i), id, 1000, 3000))
	}
	w := scanString(t, dir, strings.Join(lines, "\n"), plan.ScanOptions{})
	p, err := plan.Make(cat, w, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Models) != len(cat.Models) {
		t.Fatalf("Make: %d models, want %d", len(p.Models), len(cat.Models))
	}
	for _, m := range p.Models {
		if m.CostUSD <= 0 || m.BatchCostUSD/m.CostUSD != 0.5 {
			t.Errorf("%s: batch/realtime = %v/%v, want exactly 0.5", m.Model, m.BatchCostUSD, m.CostUSD)
		}
	}
	if p.BatchCostUSD/p.CostUSD != 0.5 || p.BatchRatio != 0.5 {
		t.Errorf("total batch/realtime = %v (ratio %v), want 0.5", p.BatchCostUSD/p.CostUSD, p.BatchRatio)
	}
}

// TestMakeHandComputed checks one plan against hand-computed time and cost.
func TestPlanMakeHandComputed(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	dir := t.TempDir()
	// 200 haiku requests of 8,000 content bytes: 3 + 4 + 2,000 = 2,007 input tokens
	// each, max_tokens 200 → 100 expected output each. 60 sonnet-5 requests of the
	// same shape.
	var lines []string
	for i := range 200 {
		lines = append(lines, line(fmt.Sprintf("h%d", i), "claude-haiku-4-5", 200, 8000))
	}
	for i := range 60 {
		lines = append(lines, line(fmt.Sprintf("s%d", i), "claude-sonnet-5", 200, 8000))
	}
	w := scanString(t, dir, strings.Join(lines, "\n")+"\n", plan.ScanOptions{})
	p, err := plan.Make(cat, w, plan.Options{Tiers: []string{"tier-1"}, Deadline: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if p.Requests != 260 || len(p.Models) != 2 {
		t.Fatalf("Make: %d requests, %d models, want 260, 2", p.Requests, len(p.Models))
	}
	h := p.Models[0]
	if h.Model != "claude-haiku-4-5" || h.InputTokens != 200*2007 || h.OutputTokens != 200*100 {
		t.Errorf("haiku = %+v, want 401,400 input, 20,000 output", h)
	}
	// $1/M input, $5/M output: 0.4014 + 0.1 = 0.5014.
	if math.Abs(h.CostUSD-0.5014) > 1e-9 {
		t.Errorf("haiku cost = %v, want 0.5014", h.CostUSD)
	}
	tp := p.Tiers[0]
	// haiku-4-5 on tier-1: ITPM 401,400/50,000−1 = 7.028. sonnet-5 falls back to the
	// tier's default 50/30,000/8,000: RPM 60/50−1 = 0.2, ITPM 120,420/30,000−1 = 3.014.
	if tp.BindingClass != "haiku-4-5" || tp.Binding != plan.LimitITPM || math.Abs(tp.Minutes-7.028) > 1e-9 {
		t.Errorf("tier-1 = %g min %s %s, want 7.028 haiku-4-5 itpm", tp.Minutes, tp.BindingClass, tp.Binding)
	}
	if s := tp.Classes[1]; s.Class != "sonnet-5" || math.Abs(s.Minutes-3.014) > 1e-9 {
		t.Errorf("tier-1 sonnet-5 = %+v, want 3.014 min", s)
	}
	if tp.NextTier != "tier-2" || tp.NextCreditUSD != 40 {
		t.Errorf("tier-1 next = %s $%g, want tier-2 $40", tp.NextTier, tp.NextCreditUSD)
	}
	if p.Recommendation.Mode != plan.ModeRealtime || p.Recommendation.Tier != "tier-1" {
		t.Errorf("Recommendation = %+v, want realtime on tier-1", p.Recommendation)
	}
	if s := p.Models[1].Suggestion; s == nil || s.Model != "claude-haiku-4-5" {
		t.Errorf("sonnet suggestion = %+v, want claude-haiku-4-5", s)
	}
}

func TestPlanRecommendation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var lines []string
	for i := range 2000 { // 2,000 requests: 39 min of RPM on tier-1
		lines = append(lines, line(fmt.Sprintf("r%d", i), "claude-haiku-4-5", 10, 40))
	}
	w := scanString(t, dir, strings.Join(lines, "\n"), plan.ScanOptions{})
	tests := []struct {
		deadline    time.Duration
		wantMode    string
		wantTier    string
		wantCommand string // after the input path
		wantHybrid  string
	}{
		{deadline: 0, wantMode: plan.ModeBatch, wantCommand: "clade batch <in> --tier TIER", wantHybrid: "clade run <in> --tier TIER --deadline DEADLINE"},
		{deadline: 24 * time.Hour, wantMode: plan.ModeBatch, wantCommand: "clade batch <in> --tier TIER", wantHybrid: "clade run <in> --tier TIER --deadline 24h"},
		{deadline: time.Hour, wantMode: plan.ModeRealtime, wantTier: "tier-1", wantCommand: "clade run <in> --tier tier-1", wantHybrid: "clade run <in> --tier tier-1 --deadline 1h"},
		{deadline: 10 * time.Minute, wantMode: plan.ModeRealtime, wantTier: "tier-2", wantCommand: "clade run <in> --tier tier-2", wantHybrid: "clade run <in> --tier tier-2 --deadline 10m"},
	}
	for _, tt := range tests {
		p, err := plan.Make(catalog.Default(), w, plan.Options{Deadline: tt.deadline})
		if err != nil {
			t.Fatal(err)
		}
		if p.Recommendation.Mode != tt.wantMode || p.Recommendation.Tier != tt.wantTier {
			t.Errorf("Make(deadline %s).Recommendation = %+v, want %s %s", tt.deadline, p.Recommendation, tt.wantMode, tt.wantTier)
		}
		in := func(s string) string { return strings.ReplaceAll(s, "<in>", p.Input) }
		if r := p.Recommendation; r.Command != in(tt.wantCommand) || r.Hybrid != in(tt.wantHybrid) {
			t.Errorf("Make(deadline %s): command %q, hybrid %q; want %q, %q", tt.deadline, r.Command, r.Hybrid, in(tt.wantCommand), in(tt.wantHybrid))
		}
	}
}

func TestPlanDefaultTiers(t *testing.T) {
	t.Parallel()
	got := strings.Join(plan.DefaultTiers(catalog.Default()), ",")
	if want := "tier-1,tier-2,tier-3,tier-4,start,build,scale"; got != want {
		t.Errorf("DefaultTiers = %s, want %s", got, want)
	}
}

func TestPlanOutputAssumption(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a         plan.OutputAssumption
		maxTokens int64
		want      int64
	}{
		{a: plan.OutputAssumption{}, maxTokens: 1000, want: 500},
		{a: plan.OutputAssumption{}, maxTokens: 1, want: 1},
		{a: plan.OutputAssumption{Ratio: 0.25}, maxTokens: 1000, want: 250},
		{a: plan.OutputAssumption{Tokens: 300}, maxTokens: 1000, want: 300},
		{a: plan.OutputAssumption{Tokens: 300}, maxTokens: 100, want: 100},
	}
	for _, tt := range tests {
		if got := tt.a.Expected(tt.maxTokens); got != tt.want {
			t.Errorf("%+v.Expected(%d) = %d, want %d", tt.a, tt.maxTokens, got, tt.want)
		}
	}
}

func TestPlanScanBadLines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := line("a", "claude-haiku-4-5", 10, 40) + "\n\n" +
		`{"custom_id":"b","params":{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"x"}]}}` + "\n" +
		"not json\n" +
		line("c", "claude-nope-9", 10, 40) + "\n"
	w := scanString(t, dir, in, plan.ScanOptions{})
	path := filepath.Join(dir, "in.jsonl")
	want := []string{path + ":3: params.max_tokens: required", path + ":4: invalid JSON"}
	if w.BadLines != 2 || len(w.Problems) != 2 {
		t.Fatalf("Scan: %d bad, problems %q; want 2", w.BadLines, w.Problems)
	}
	for i, p := range w.Problems {
		if !strings.HasPrefix(p, want[i]) {
			t.Errorf("Problems[%d] = %q, want prefix %q", i, p, want[i])
		}
	}
	p, err := plan.Make(catalog.Default(), w, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.UnknownModels) != 1 || p.UnknownModels[0].Model != "claude-nope-9" || p.Requests != 1 {
		t.Errorf("Make: unknown %+v, requests %d; want claude-nope-9 left out, 1 request", p.UnknownModels, p.Requests)
	}
}

// TestScanSample checks that a sample scales back to the totals, and that a pattern
// repeating with the sampling stride (every 4th line sonnet, k = 4) does not alias.
func TestPlanScanSample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var lines []string
	for i := range 4000 {
		model := "claude-haiku-4-5"
		if i%4 == 0 {
			model = "claude-sonnet-5"
		}
		lines = append(lines, line(fmt.Sprintf("r%d", i), model, 100, 400))
		if i%100 == 99 {
			lines = append(lines, `{"custom_id":"bad"}`)
		}
	}
	full := scanString(t, dir, strings.Join(lines, "\n"), plan.ScanOptions{})
	sampled := scanString(t, t.TempDir(), strings.Join(lines, "\n"), plan.ScanOptions{Sample: 1010})
	if !sampled.Sampled || sampled.Read != 1010 || sampled.Lines != 4040 {
		t.Fatalf("Scan(sample 1010): sampled %v, read %d of %d; want true, 1010 of 4040", sampled.Sampled, sampled.Read, sampled.Lines)
	}
	if len(sampled.Models) != 2 {
		t.Fatalf("Scan(sample 1010) models = %d, want 2 (a stride equal to the pattern aliases)", len(sampled.Models))
	}
	// A random line per run of 4: the share of a model has a standard error of about
	// 5 % here; 15 % is three of them.
	var total int64
	for i, m := range full.Models {
		s := sampled.Models[i]
		total += s.Requests
		if rel := math.Abs(float64(s.Requests-m.Requests)) / float64(m.Requests); rel > 0.15 {
			t.Errorf("sampled %s requests = %d, want %d ± 15 %%", m.Model, s.Requests, m.Requests)
		}
		if rel := math.Abs(float64(s.InputTokens-m.InputTokens)) / float64(m.InputTokens); rel > 0.15 {
			t.Errorf("sampled %s input = %d, want %d ± 15 %%", m.Model, s.InputTokens, m.InputTokens)
		}
	}
	if total+sampled.BadLines != 4040 {
		t.Errorf("sampled requests + bad = %d + %d, want 4040", total, sampled.BadLines)
	}
	if full.BadLines != 40 {
		t.Errorf("full BadLines = %d, want 40", full.BadLines)
	}
}

// TestLimiterAgrees drives the limiter (package admit, tier-1, no headroom) with a
// simple workload on a fake clock, every call finishing at once, and checks that the
// plan's realtime time is within 15 % of the time the limiter takes to admit it all.
func TestPlanLimiterAgrees(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		requests int
		need     admit.Need
	}{
		{name: "itpm", requests: 300, need: admit.Need{InputTokens: 2000, OutputTokens: 40}},
		{name: "otpm", requests: 200, need: admit.Need{InputTokens: 60, OutputTokens: 400}},
		{name: "rpm", requests: 400, need: admit.Need{InputTokens: 100, OutputTokens: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cat := catalog.Default()
			start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
			now := start
			lim, err := admit.New(admit.Config{Catalog: cat, Tier: "tier-1", Headroom: -1, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			for range tt.requests {
				for {
					r, wait, err := lim.ReserveAt("haiku-4-5", tt.need, now)
					if err != nil {
						t.Fatal(err)
					}
					if wait > 0 {
						now = now.Add(wait)
						continue
					}
					if err := r.CommitAt(admit.Usage{InputTokens: tt.need.InputTokens, OutputTokens: tt.need.OutputTokens}, nil, now); err != nil {
						t.Fatal(err)
					}
					break
				}
			}
			measured := now.Sub(start).Minutes()
			n := int64(tt.requests)
			est, binding, _ := plan.Estimate(cat.Tiers["tier-1"].ClassLimits("haiku-4-5"), plan.Need{Requests: n, InputTokens: n * tt.need.InputTokens, OutputTokens: n * tt.need.OutputTokens})
			if binding != tt.name || math.Abs(est-measured) > 0.15*measured {
				t.Errorf("plan = %.3f min (%s), limiter = %.3f min; want the %s limit within 15 %%", est, binding, measured, tt.name)
			}
			t.Logf("%s: plan %.3f min, limiter %.3f min", tt.name, est, measured)
		})
	}
}

// line returns one input line for model with max_tokens and a user message of
// contentBytes bytes.
func line(id, model string, maxTokens, contentBytes int) string {
	return fmt.Sprintf(`{"custom_id":%q,"params":{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":%q}]}}`,
		id, model, maxTokens, strings.Repeat("x", contentBytes))
}

func scanString(t *testing.T, dir, content string, opt plan.ScanOptions) *plan.Workload {
	t.Helper()
	path := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := plan.Scan(path, opt)
	if err != nil {
		t.Fatalf("Scan(%s) error: %v", path, err)
	}
	return w
}

// TestMakeMergesAliases checks that an alias, a dated id and the canonical id count
// as one model.
func TestPlanMakeMergesAliases(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		line("a", "haiku", 100, 40),
		line("b", "claude-haiku-4-5-20251001", 100, 40),
		line("c", "claude-haiku-4-5", 100, 40),
	}, "\n")
	w := scanString(t, t.TempDir(), in, plan.ScanOptions{})
	p, err := plan.Make(catalog.Default(), w, plan.Options{Tiers: []string{"tier-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Models) != 1 || p.Models[0].Model != "claude-haiku-4-5" || p.Models[0].Requests != 3 {
		t.Errorf("Make models = %+v, want one claude-haiku-4-5 with 3 requests", p.Models)
	}
}

// TestPlanNeverFitsAndSpendCap checks the flags for a request larger than a bucket and
// a cost over a named tier's monthly cap.
func TestPlanNeverFitsAndSpendCap(t *testing.T) {
	t.Parallel()
	// One sonnet-4-6 request of ~60,000 input tokens: over tier-1's 30,000 ITPM.
	w := scanString(t, t.TempDir(), line("big", "claude-sonnet-4-6", 100, 240_000), plan.ScanOptions{})
	p, err := plan.Make(catalog.Default(), w, plan.Options{Tiers: []string{"tier-1", "tier-2"}, Deadline: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Tiers[0].TooLarge || p.Tiers[1].TooLarge {
		t.Errorf("TooLarge = %v, %v; want tier-1 only", p.Tiers[0].TooLarge, p.Tiers[1].TooLarge)
	}
	if p.Recommendation.Tier != "tier-2" {
		t.Errorf("Recommendation = %+v, want realtime on tier-2 (tier-1 never fits)", p.Recommendation)
	}

	// A cost over Start's monthly cap, with a catalog whose cap is a cent.
	cat, err := catalog.Overlay(catalog.Default(), []byte("tiers:\n  start:\n    spend_cap_usd: 0.01\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, err = plan.Make(cat, w, plan.Options{Tiers: []string{"start", "build"}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Tiers[0].OverSpendCap || p.Tiers[1].OverSpendCap {
		t.Errorf("OverSpendCap = %v, %v; want start only (cost $%g)", p.Tiers[0].OverSpendCap, p.Tiers[1].OverSpendCap, p.CostUSD)
	}
	if p.Tiers[0].NextTier != "build" || p.Tiers[0].NextSpendCapUSD != cat.Tiers["build"].SpendCapUSD {
		t.Errorf("start next = %s $%g, want build at its cap", p.Tiers[0].NextTier, p.Tiers[0].NextSpendCapUSD)
	}
}

func TestPlanSustained(t *testing.T) {
	l := catalog.Limits{RPM: 50, ITPM: 50_000, OTPM: 10_000}
	// 100 requests: 2 min of RPM; 40,000 input tokens: 0.8 min; 30,000 output: 3 min.
	m, binding := plan.Sustained(l, plan.Need{Requests: 100, InputTokens: 40_000, OutputTokens: 30_000})
	if m != 3 || binding != plan.LimitOTPM {
		t.Errorf("Sustained = %v min bound by %s, want 3 min bound by %s", m, binding, plan.LimitOTPM)
	}
	// Estimate gives the first minute's burst: one minute less.
	em, _, _ := plan.Estimate(l, plan.Need{Requests: 100, InputTokens: 40_000, OutputTokens: 30_000})
	if em != m-1 {
		t.Errorf("Estimate = %v min, want Sustained − 1 = %v", em, m-1)
	}
}
