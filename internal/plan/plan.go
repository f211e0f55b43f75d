package plan

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/clade-dev/clade/catalog"
)

// Limit names, as they appear in Plan output.
const (
	LimitRPM  = "rpm"
	LimitITPM = "itpm"
	LimitOTPM = "otpm"
)

// Modes a Recommendation can name.
const (
	ModeBatch    = "batch"
	ModeRealtime = "realtime"
)

// BatchWindow is the Message Batches processing window: a request not processed
// within 24 h expires. A deadline at least this long can use batch.
const BatchWindow = 24 * time.Hour

// Need is what a model class must get through its rate limits: requests, input
// tokens (what counts toward ITPM) and expected output tokens.
type Need struct {
	Requests     int64
	InputTokens  int64
	OutputTokens int64
}

// Minutes returns how long a realtime run needs to get need units through a
// per-minute limit whose token bucket starts full: the first minute's worth (the
// limit) goes at once, the rest at limit per minute, so
//
//	minutes = max(0, (need − limit) / limit)
//
// It leaves out request latency: the last calls' time to finish is added to this.
func Minutes(need, limit int64) float64 {
	if limit <= 0 || need <= limit {
		return 0
	}
	return float64(need-limit) / float64(limit)
}

// ClassTime is the realtime estimate of one class on one tier.
type ClassTime struct {
	Class  string         `json:"class"`
	Limits catalog.Limits `json:"-"`
	Need   Need           `json:"-"`
	ByDim  map[string]Dim `json:"limits"`
	// Minutes is the largest of the three dimensions' minutes; Binding names it.
	Minutes float64 `json:"minutes"`
	Binding string  `json:"binding"`
	// TooLarge, when set, says why some request can never be admitted on this tier
	// (its input or expected output exceeds one minute's limit).
	TooLarge string `json:"too_large,omitempty"`
}

// Dim is one limit of a class: the per-minute limit, what the workload needs of it
// and the minutes that takes.
type Dim struct {
	Limit   int64   `json:"limit"`
	Need    int64   `json:"need"`
	Minutes float64 `json:"minutes"`
}

// Estimate returns the realtime time of need against limits l: the largest of
// Minutes over requests (RPM), input tokens (ITPM) and output tokens (OTPM), and
// the limit that binds (the first of rpm, itpm, otpm on a tie).
func Estimate(l catalog.Limits, n Need) (minutes float64, binding string, dims map[string]Dim) {
	dims = map[string]Dim{
		LimitRPM:  {Limit: l.RPM, Need: n.Requests, Minutes: Minutes(n.Requests, l.RPM)},
		LimitITPM: {Limit: l.ITPM, Need: n.InputTokens, Minutes: Minutes(n.InputTokens, l.ITPM)},
		LimitOTPM: {Limit: l.OTPM, Need: n.OutputTokens, Minutes: Minutes(n.OutputTokens, l.OTPM)},
	}
	binding = LimitRPM
	for _, d := range []string{LimitRPM, LimitITPM, LimitOTPM} {
		if dims[d].Minutes > dims[binding].Minutes {
			binding = d
		}
	}
	// With nothing over its limit, name the dimension closest to it.
	if dims[binding].Minutes == 0 {
		best := -1.0
		for _, d := range []string{LimitRPM, LimitITPM, LimitOTPM} {
			if f := float64(dims[d].Need) / float64(max(1, dims[d].Limit)); f > best {
				best, binding = f, d
			}
		}
	}
	return dims[binding].Minutes, binding, dims
}

// Sustained returns the realtime time of need against limits l with an empty
// bucket, need / limit for the largest dimension, and the limit that binds. It is
// Estimate without the first minute's burst: what is left of a run that already
// spent its burst, or a cautious estimate (the hybrid mode's spill time).
func Sustained(l catalog.Limits, n Need) (minutes float64, binding string) {
	binding = LimitRPM
	for _, d := range []struct {
		name        string
		need, limit int64
	}{{LimitRPM, n.Requests, l.RPM}, {LimitITPM, n.InputTokens, l.ITPM}, {LimitOTPM, n.OutputTokens, l.OTPM}} {
		if d.limit <= 0 {
			continue
		}
		if m := float64(d.need) / float64(d.limit); m > minutes {
			minutes, binding = m, d.name
		}
	}
	return minutes, binding
}

// ModelPlan is one model's share of the plan.
type ModelPlan struct {
	Model        string  `json:"model"`
	Class        string  `json:"class"`
	Requests     int64   `json:"requests"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	MaxTokens    int64   `json:"max_tokens"`
	CostUSD      float64 `json:"cost_usd"`
	BatchCostUSD float64 `json:"batch_cost_usd"`
	Uncertain    string  `json:"uncertain,omitempty"`
	// Suggestion, when set, is a cheaper model every request of this model would fit.
	Suggestion *Suggestion `json:"suggestion,omitempty"`
}

// Suggestion is a cheaper model that every request of a model fits (input within its
// context window, max_tokens within its output limit). It says nothing of quality.
type Suggestion struct {
	Model        string  `json:"model"`
	Class        string  `json:"class"`
	CostUSD      float64 `json:"cost_usd"`
	BatchCostUSD float64 `json:"batch_cost_usd"`
	SavingUSD    float64 `json:"saving_usd"`
}

// TierPlan is the realtime estimate on one tier.
type TierPlan struct {
	Tier string `json:"tier"`
	// CreditUSD is the cumulative credit purchase that reaches a numbered tier;
	// SpendCapUSD a named tier's monthly spend cap (0: none).
	CreditUSD   float64 `json:"credit_usd,omitempty"`
	SpendCapUSD float64 `json:"spend_cap_usd,omitempty"`
	// Minutes is the realtime time to finish, classes running in parallel: the
	// largest of the classes' minutes. BindingClass and Binding name where it is.
	Minutes      float64     `json:"minutes"`
	BindingClass string      `json:"binding_class"`
	Binding      string      `json:"binding"`
	Classes      []ClassTime `json:"classes"`
	// TooLarge is true when some request can never be admitted on this tier.
	TooLarge bool `json:"too_large"`
	// OverSpendCap is true when the realtime cost exceeds the tier's monthly cap.
	OverSpendCap bool `json:"over_spend_cap"`
	// NextTier is the next tier up (by credit among numbered tiers, by spend cap
	// among named ones) and what reaches it: NextCreditUSD for a numbered tier
	// (cumulative credit purchase), NextSpendCapUSD its monthly cap for a named one.
	NextTier        string  `json:"next_tier,omitempty"`
	NextCreditUSD   float64 `json:"next_credit_usd,omitempty"`
	NextSpendCapUSD float64 `json:"next_spend_cap_usd,omitempty"`
	Uncertain       string  `json:"uncertain,omitempty"`
}

// Recommendation is the mode (and tier, for realtime) the plan suggests, and why.
type Recommendation struct {
	Mode   string `json:"mode"`
	Tier   string `json:"tier,omitempty"`
	Reason string `json:"reason"`
	// Command is the clade command line that does what is recommended; Hybrid
	// the one that meets a deadline at the lowest cost (batches first, realtime
	// near the deadline), with DEADLINE for the user's.
	Command string `json:"command,omitempty"`
	Hybrid  string `json:"hybrid,omitempty"`
}

// UnknownModel is a model in the input that the catalog does not know; its requests
// are left out of times and costs.
type UnknownModel struct {
	Model    string `json:"model"`
	Requests int64  `json:"requests"`
}

// Plan is the whole estimate. Field names in JSON are stable (docs/plan.md).
type Plan struct {
	Input         string         `json:"input"`
	Lines         int64          `json:"lines"`
	LinesRead     int64          `json:"lines_read"`
	Sampled       bool           `json:"sampled"`
	SampleStride  int64          `json:"sample_stride,omitempty"`
	Output        string         `json:"output_assumption"`
	Requests      int64          `json:"requests"`
	BadLines      int64          `json:"bad_lines"`
	Problems      []string       `json:"problems"`
	Models        []ModelPlan    `json:"models"`
	UnknownModels []UnknownModel `json:"unknown_models"`
	CostUSD       float64        `json:"cost_usd"`
	BatchCostUSD  float64        `json:"batch_cost_usd"`
	// BatchRatio is the catalog's batch multiplier: BatchCostUSD = CostUSD × BatchRatio.
	BatchRatio float64 `json:"batch_ratio"`
	// Batches is how many Message Batches the work needs (max_requests per batch on
	// the recommended or first tier).
	Batches          int        `json:"batches"`
	BatchMaxRequests int64      `json:"batch_max_requests"`
	Tiers            []TierPlan `json:"tiers"`
	// Cache is the estimate with and without prompt-cache-aware ordering, and
	// through batches with and without --cache-warm realtime.
	Cache          CacheEstimate  `json:"cache"`
	DeadlineMin    float64        `json:"deadline_minutes,omitempty"`
	Recommendation Recommendation `json:"recommendation"`
}

// Options tune Make.
type Options struct {
	// Tiers are the tiers to estimate, in the order given. Default: DefaultTiers.
	Tiers []string
	// Deadline is when the work must be done; 0 means none.
	Deadline time.Duration
	// CacheGroup is the best-effort batch cache CacheEstimate's batch figures
	// assume: requests cached in groups of this many (ColdWrites), as clade
	// batch's --cache-warm-group. 0: DefaultCacheWarmGroup; negative is an error.
	CacheGroup int
}

// DefaultTiers returns the account tiers of the catalog: the numbered ones (with a
// credit_usd) by credit, then the named ones (with a spend cap) by cap. Tiers with
// neither (such as "unlimited", for benchmarks) are left out.
func DefaultTiers(cat *catalog.Catalog) []string {
	var numbered, named []*catalog.Tier
	for _, name := range cat.TierNames() {
		t := cat.Tiers[name]
		switch {
		case t.CreditUSD > 0:
			numbered = append(numbered, t)
		case t.SpendCapUSD > 0:
			named = append(named, t)
		}
	}
	sort.SliceStable(numbered, func(i, j int) bool { return numbered[i].CreditUSD < numbered[j].CreditUSD })
	sort.SliceStable(named, func(i, j int) bool { return named[i].SpendCapUSD < named[j].SpendCapUSD })
	var names []string
	for _, t := range append(numbered, named...) {
		names = append(names, t.Name)
	}
	return names
}

// Make computes the plan of workload w against catalog cat.
func Make(cat *catalog.Catalog, w *Workload, opt Options) (*Plan, error) {
	group := opt.CacheGroup
	switch {
	case group < 0:
		return nil, fmt.Errorf("plan: CacheGroup %d: want 1 or more (0: %d)", group, DefaultCacheWarmGroup)
	case group == 0:
		group = DefaultCacheWarmGroup
	}
	tiers := opt.Tiers
	if len(tiers) == 0 {
		tiers = DefaultTiers(cat)
	}
	p := &Plan{
		Input: w.Input, Lines: w.Lines, LinesRead: w.Read, Sampled: w.Sampled,
		SampleStride: w.Stride,
		Output:       w.Output.String(), BadLines: w.BadLines, Problems: w.Problems,
		BatchRatio: cat.Pricing.Batch, DeadlineMin: opt.Deadline.Minutes(),
		Models: []ModelPlan{}, UnknownModels: []UnknownModel{},
	}
	if p.Problems == nil {
		p.Problems = []string{}
	}

	needs := map[string]*Need{}
	largest := map[string]*Need{} // the largest single request per class
	var classes, ids []string
	byID := map[string]*ModelLoad{}
	for _, ml := range w.Models {
		m, err := cat.Resolve(ml.Model)
		if err != nil {
			p.UnknownModels = append(p.UnknownModels, UnknownModel{Model: ml.Model, Requests: ml.Requests})
			continue
		}
		// Aliases and dated ids name the same model: merge them under its id.
		if prev, ok := byID[m.ID]; ok {
			prev.Requests += ml.Requests
			prev.InputTokens += ml.InputTokens
			prev.OutputTokens += ml.OutputTokens
			prev.MaxTokens += ml.MaxTokens
			prev.LargestInput = max(prev.LargestInput, ml.LargestInput)
			prev.LargestMaxTokens = max(prev.LargestMaxTokens, ml.LargestMaxTokens)
			prev.LargestOutput = max(prev.LargestOutput, ml.LargestOutput)
			prev.Prefixes = mergePrefixes(prev.Prefixes, ml.Prefixes)
		} else {
			c := *ml
			c.Model = m.ID
			c.Prefixes = mergePrefixes(nil, ml.Prefixes) // a copy: merging must not change w
			byID[m.ID] = &c
			ids = append(ids, m.ID)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		ml := byID[id]
		m, _ := cat.Model(id)
		p.Requests += ml.Requests
		u := catalog.Usage{InputTokens: ml.InputTokens, OutputTokens: ml.OutputTokens}
		mp := ModelPlan{
			Model: m.ID, Class: m.Class, Requests: ml.Requests, InputTokens: ml.InputTokens,
			OutputTokens: ml.OutputTokens, MaxTokens: ml.MaxTokens,
			CostUSD: cat.Cost(m, u, false), BatchCostUSD: cat.Cost(m, u, true), Uncertain: m.Uncertain,
		}
		mp.Suggestion = suggest(cat, m, ml, u, mp.CostUSD)
		p.Models = append(p.Models, mp)
		p.CostUSD += mp.CostUSD
		p.BatchCostUSD += mp.BatchCostUSD
		n := needs[m.Class]
		if n == nil {
			n, largest[m.Class] = &Need{}, &Need{}
			needs[m.Class] = n
			classes = append(classes, m.Class)
		}
		n.Requests += ml.Requests
		n.InputTokens += ml.InputTokens
		n.OutputTokens += ml.OutputTokens
		lg := largest[m.Class]
		lg.InputTokens = max(lg.InputTokens, ml.LargestInput)
		lg.OutputTokens = max(lg.OutputTokens, ml.LargestOutput)
	}
	sort.Strings(classes)

	for _, name := range tiers {
		t, err := cat.Tier(name)
		if err != nil {
			return nil, err
		}
		tp := TierPlan{Tier: t.Name, CreditUSD: t.CreditUSD, SpendCapUSD: t.SpendCapUSD, Classes: []ClassTime{}}
		for _, cl := range classes {
			l := t.ClassLimits(cl)
			minutes, binding, dims := Estimate(l, *needs[cl])
			ct := ClassTime{Class: cl, Limits: l, Need: *needs[cl], ByDim: dims, Minutes: minutes, Binding: binding}
			if lg := largest[cl]; lg.InputTokens > l.ITPM {
				ct.TooLarge = fmt.Sprintf("a request of ~%d input tokens exceeds %d ITPM", lg.InputTokens, l.ITPM)
			} else if lg.OutputTokens > l.OTPM {
				ct.TooLarge = fmt.Sprintf("a request expected to generate %d tokens exceeds %d OTPM", lg.OutputTokens, l.OTPM)
			}
			if ct.TooLarge != "" {
				tp.TooLarge = true
			}
			if l.Uncertain != "" && tp.Uncertain == "" {
				tp.Uncertain = cl + ": " + l.Uncertain
			}
			if tp.BindingClass == "" || minutes > tp.Minutes {
				tp.Minutes, tp.BindingClass, tp.Binding = minutes, cl, binding
			}
			tp.Classes = append(tp.Classes, ct)
		}
		tp.OverSpendCap = t.SpendCapUSD > 0 && p.CostUSD > t.SpendCapUSD
		if next := nextTier(cat, t); next != nil {
			tp.NextTier = next.Name
			if t.CreditUSD > 0 {
				tp.NextCreditUSD = next.CreditUSD
			} else {
				tp.NextSpendCapUSD = next.SpendCapUSD
			}
		}
		p.Tiers = append(p.Tiers, tp)
	}
	p.Cache = cacheEstimate(cat, byID, ids, tiers, w.Sampled, group)
	p.Batches, p.BatchMaxRequests = batches(cat, p, tiers)
	p.Recommendation = recommend(p, opt.Deadline)
	p.Recommendation.commands(p, opt.Deadline)
	return p, nil
}

// nextTier is the tier above t: among numbered tiers the one with the next larger
// credit, among named tiers the one with the next larger spend cap.
func nextTier(cat *catalog.Catalog, t *catalog.Tier) *catalog.Tier {
	var best *catalog.Tier
	for _, name := range cat.TierNames() {
		o := cat.Tiers[name]
		switch {
		case t.CreditUSD > 0 && o.CreditUSD > t.CreditUSD:
			if best == nil || o.CreditUSD < best.CreditUSD {
				best = o
			}
		case t.CreditUSD == 0 && t.SpendCapUSD > 0 && o.CreditUSD == 0 && o.SpendCapUSD > t.SpendCapUSD:
			if best == nil || o.SpendCapUSD < best.SpendCapUSD {
				best = o
			}
		}
	}
	return best
}

// batches is the number of Message Batches the work needs on the first tier given.
func batches(cat *catalog.Catalog, p *Plan, tiers []string) (n int, perBatch int64) {
	if p.Requests == 0 || len(tiers) == 0 {
		return 0, 0
	}
	t, err := cat.Tier(tiers[0])
	if err != nil || t.Batch == nil || t.Batch.MaxRequests <= 0 {
		return 0, 0
	}
	return int((p.Requests + t.Batch.MaxRequests - 1) / t.Batch.MaxRequests), t.Batch.MaxRequests
}

// suggest returns the cheapest active model that every request of ml fits, when it
// costs less than cost; nil otherwise.
func suggest(cat *catalog.Catalog, m *catalog.Model, ml *ModelLoad, u catalog.Usage, cost float64) *Suggestion {
	var best *Suggestion
	for _, id := range cat.ModelIDs() { // newest first: on a tie the newest wins
		o := cat.Models[id]
		if o.ID == m.ID || o.Lifecycle != "active" || o.Uncertain != "" {
			continue
		}
		if ml.LargestInput > o.MaxInputTokens || ml.LargestMaxTokens > o.MaxTokens {
			continue
		}
		c := cat.Cost(o, u, false)
		if c >= cost || (best != nil && c >= best.CostUSD) {
			continue
		}
		best = &Suggestion{Model: o.ID, Class: o.Class, CostUSD: c, BatchCostUSD: cat.Cost(o, u, true), SavingUSD: cost - c}
	}
	return best
}

// commands fills in the command lines of r for p's input.
func (r *Recommendation) commands(p *Plan, deadline time.Duration) {
	if p.Requests == 0 {
		return
	}
	in := p.Input
	if strings.ContainsAny(in, " \t'\"$`\\") {
		in = "'" + strings.ReplaceAll(in, "'", `'\''`) + "'"
	}
	tier := r.Tier
	if tier == "" {
		tier = "TIER" // the account's: plan does not know it
		if len(p.Tiers) == 1 {
			tier = p.Tiers[0].Tier
		}
	}
	if r.Mode == ModeRealtime {
		r.Command = fmt.Sprintf("clade run %s --tier %s", in, tier)
	} else {
		r.Command = fmt.Sprintf("clade batch %s --tier %s", in, tier)
	}
	d := "DEADLINE"
	if deadline > 0 {
		d = deadline.String() // 2h0m0s → 2h, 1h30m0s → 1h30m, 10m0s → 10m
		if strings.HasSuffix(d, "m0s") {
			d = d[:len(d)-2]
		}
		if strings.HasSuffix(d, "h0m") {
			d = d[:len(d)-2]
		}
	}
	r.Hybrid = fmt.Sprintf("clade run %s --tier %s --deadline %s", in, tier, d)
}

// recommend picks batch when there is no deadline or it is at least BatchWindow;
// otherwise the first tier (in the order given) whose realtime time fits it.
func recommend(p *Plan, deadline time.Duration) Recommendation {
	if p.Requests == 0 {
		return Recommendation{Mode: ModeBatch, Reason: "no valid requests to plan"}
	}
	pct := func() string { return fmt.Sprintf("%g %%", math.Round((1-p.BatchRatio)*100)) }
	if deadline == 0 {
		return Recommendation{Mode: ModeBatch, Reason: fmt.Sprintf("no deadline given: the Message Batches API costs %s less and finishes within 24 h (most batches within 1 h)", pct())}
	}
	if deadline >= BatchWindow {
		return Recommendation{Mode: ModeBatch, Reason: fmt.Sprintf("the deadline (%s) is at least the 24 h batch window: batch costs %s less", fmtDuration(deadline.Minutes()), pct())}
	}
	for _, t := range p.Tiers {
		if t.TooLarge || t.OverSpendCap {
			continue
		}
		if t.Minutes <= deadline.Minutes() {
			return Recommendation{Mode: ModeRealtime, Tier: t.Tier, Reason: fmt.Sprintf("the deadline (%s) is under the 24 h batch window; realtime on %s takes about %s (bound by %s %s)",
				fmtDuration(deadline.Minutes()), t.Tier, fmtDuration(t.Minutes), t.BindingClass, strings.ToUpper(t.Binding))}
		}
	}
	return Recommendation{Mode: ModeBatch, Reason: fmt.Sprintf("no tier listed finishes in realtime within the deadline (%s); batch is the best chance (most batches end within 1 h, all within 24 h)", fmtDuration(deadline.Minutes()))}
}

// fmtDuration renders minutes for people: "< 1 min" (within the first minute's
// burst), "3.4 min", "42 min", "3 h 05 min" or "2 d 4 h".
func fmtDuration(min float64) string {
	switch {
	case min <= 0:
		return "< 1 min"
	case min < 10:
		return fmt.Sprintf("%.1f min", min)
	case min < 60:
		return fmt.Sprintf("%.0f min", min)
	}
	m := int64(math.Round(min))
	if m < 48*60 {
		return fmt.Sprintf("%d h %02d min", m/60, m%60)
	}
	return fmt.Sprintf("%d d %d h", m/(24*60), (m%(24*60))/60)
}
