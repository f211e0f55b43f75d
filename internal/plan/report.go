package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes p as indented JSON (field names in docs/plan.md).
func WriteJSON(w io.Writer, p *Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// WriteText writes p as tables for people.
func WriteText(w io.Writer, p *Plan) error {
	ew := &errWriter{w: w}
	pr := ew.printf

	read := fmt.Sprintf("%s lines", group(p.Lines))
	if p.Sampled {
		read = fmt.Sprintf("%s lines, %s sampled (one at random in each run of %d; totals scaled, so estimates)", group(p.Lines), group(p.LinesRead), p.SampleStride)
	}
	pr("plan for %s: %s, %s requests, %s bad\n", p.Input, read, group(p.Requests), group(p.BadLines))
	pr("assumed output: %s (change with --output-ratio or --output-tokens)\n", p.Output)
	pr("input tokens: estimated from the request bytes (about 4 bytes a token)\n\n")

	if len(p.Models) > 0 {
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "model\tclass\trequests\tinput tok\toutput tok\trealtime $\tbatch $\t")
		for _, m := range p.Models {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", m.Model, m.Class, group(m.Requests), group(m.InputTokens), group(m.OutputTokens), usd(m.CostUSD), usd(m.BatchCostUSD))
		}
		if len(p.Models) > 1 {
			fmt.Fprintf(tw, "total\t\t%s\t\t\t%s\t%s\t\n", group(p.Requests), usd(p.CostUSD), usd(p.BatchCostUSD))
		}
		tw.Flush()
		pr("batch = realtime × %g (catalog pricing.batch)\n", p.BatchRatio)
		for _, m := range p.Models {
			if m.Uncertain != "" {
				pr("note: %s: %s\n", m.Model, m.Uncertain)
			}
		}
		pr("\n")
	}
	for _, u := range p.UnknownModels {
		pr("warning: model %q is not in the catalog; its %s requests are left out (see --catalog)\n", u.Model, group(u.Requests))
	}

	if len(p.Tiers) > 0 && len(p.Models) > 0 {
		pr("realtime time to finish (classes in parallel; buckets start full: max(0, need/limit − 1) min):\n")
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "tier\ttime\tbinding\tclass limits rpm/itpm/otpm\tunlocks next\tnote")
		for _, t := range p.Tiers {
			var lims []string
			for _, c := range t.Classes {
				lims = append(lims, fmt.Sprintf("%s %s/%s/%s", c.Class, short(c.ByDim[LimitRPM].Limit), short(c.ByDim[LimitITPM].Limit), short(c.ByDim[LimitOTPM].Limit)))
			}
			next := "-"
			switch {
			case t.NextTier != "" && t.NextCreditUSD > 0:
				next = fmt.Sprintf("%s at $%s credit", t.NextTier, dollars(t.NextCreditUSD))
			case t.NextTier != "":
				next = fmt.Sprintf("%s ($%s/month cap)", t.NextTier, dollars(t.NextSpendCapUSD))
			}
			var notes []string
			for _, c := range t.Classes {
				if c.TooLarge != "" {
					notes = append(notes, "never fits: "+c.Class+": "+c.TooLarge)
				}
			}
			if t.OverSpendCap {
				notes = append(notes, fmt.Sprintf("cost over the $%s/month cap", dollars(t.SpendCapUSD)))
			}
			if t.Uncertain != "" {
				notes = append(notes, "uncertain limits")
			}
			if len(notes) == 0 {
				notes = append(notes, "-")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\n", t.Tier, fmtDuration(t.Minutes), t.BindingClass, strings.ToUpper(t.Binding), strings.Join(lims, ", "), next, strings.Join(notes, "; "))
		}
		tw.Flush()
		if p.Batches > 0 {
			pr("batch: %d batch(es) of at most %s requests; results within 24 h (most within 1 h)\n", p.Batches, group(p.BatchMaxRequests))
		}
		pr("\n")
	}

	writeCache(ew, p)

	for _, m := range p.Models {
		if s := m.Suggestion; s != nil {
			pr("suggestion (not a quality judgement): every %s request fits %s: %s realtime, %s batch (saves %s realtime)\n",
				m.Model, s.Model, usd(s.CostUSD), usd(s.BatchCostUSD), usd(s.SavingUSD))
		}
	}
	pr("recommendation: %s", p.Recommendation.Mode)
	if p.Recommendation.Tier != "" {
		pr(" on %s", p.Recommendation.Tier)
	}
	pr(": %s\n", p.Recommendation.Reason)
	if r := p.Recommendation; r.Command != "" {
		pr("run it:  %s\n", r.Command)
		pr("or, to finish by a deadline at the lowest cost (batches first, realtime near it; docs/hybrid.md):\n         %s\n", r.Hybrid)
	}

	if p.BadLines > 0 {
		pr("\nbad lines (%s", group(p.BadLines))
		if p.Sampled {
			pr(", estimated from the sample")
		}
		pr("):\n")
		for _, s := range p.Problems {
			pr("  %s\n", s)
		}
		if int64(len(p.Problems)) < p.BadLines {
			pr("  …\n")
		}
	}
	return ew.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

// group renders n with thousands separators: 1234567 → "1,234,567".
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// short renders a limit compactly: 50, 30k, 2M, 1.5M.
func short(n int64) string {
	switch {
	case n >= 1_000_000 && n%100_000 == 0:
		return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + "M"
	case n >= 1000 && n%100 == 0:
		return strconv.FormatFloat(float64(n)/1e3, 'f', -1, 64) + "k"
	default:
		return group(n)
	}
}

// usd renders dollars: $0.0123 under a dollar, $12.34 above.
func usd(v float64) string {
	if v < 1 {
		return fmt.Sprintf("$%.4f", v)
	}
	c := int64(math.Round(v * 100))
	return fmt.Sprintf("$%s.%02d", group(c/100), c%100)
}

// dollars renders a whole or fractional dollar amount without trailing zeros: 1,000 or 2.5.
func dollars(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return group(int64(v))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// writeCache writes the with and without cache-aware ordering rows, and the
// batch rows with and without --cache-warm realtime, when the input has a
// cacheable prefix.
func writeCache(ew *errWriter, p *Plan) {
	c := p.Cache
	if c.Prefixes == 0 {
		return
	}
	seen := ""
	if c.Sampled {
		seen = " (prefixes seen in the sample)"
	}
	ew.printf("prompt cache: %s requests share %s cacheable prefixes%s; input only:\n", group(c.Requests), group(c.Prefixes), seen)
	var names []string
	for _, t := range c.With.Tiers {
		names = append(names, t.Tier)
	}
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "order\tinput $\tuncached\tcache write\tcache read\tITPM tokens\ttime %s\n", strings.Join(names, " / "))
	for _, r := range []struct {
		name string
		m    CacheMode
	}{{"with cache-aware ordering", c.With}, {"without (every request writes)", c.Without}} {
		var times []string
		for _, t := range r.m.Tiers {
			times = append(times, fmtDuration(t.Minutes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, usd(r.m.InputCostUSD), group(r.m.InputTokens), group(r.m.CacheWriteTokens), group(r.m.CacheReadTokens), group(r.m.ITPMTokens), strings.Join(times, " / "))
	}
	tw.Flush()
	ew.printf("assumed with: each prefix written once (catalog cache_write_5m or _1h by its TTL) and read by\n")
	ew.printf("  its other requests (cache_read; reads outside ITPM unless the class's count), all within its TTL\n")
	ew.printf("assumed without: every request writes its prefix (all sent before the first write is readable:\n")
	ew.printf("  the worst case; a run in the file's order reads some by accident)\n")

	ew.printf("through batches (batch price, warm calls full; total adds the expected output):\n")
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "batch\tinput $\ttotal $\tcache write\tcache read\twarmed\n")
	for _, r := range []struct {
		name, warmed string
		b            CacheBatch
	}{{"clade batch", "-", c.Batch}, {"batch --cache-warm realtime", group(c.BatchWarm.WarmedPrefixes), c.BatchWarm}} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, usd(r.b.InputCostUSD), usd(r.b.CostUSD), group(r.b.CacheWriteTokens), group(r.b.CacheReadTokens), r.warmed)
	}
	tw.Flush()
	g := c.CacheGroup
	ew.printf("assumed batch: cached best effort, requests in groups of %d processed together\n", g)
	ew.printf("  (--cache-warm-group): a prefix's k lines write it (1+…+min(k,%d))/%d times, and\n", g, g)
	ew.printf("  read it on the rest, all in one batch within its TTL; warm: where that pays,\n")
	ew.printf("  one line a prefix goes through realtime first, the rest read (docs/batch.md)\n\n")
}
