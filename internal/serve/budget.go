package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/roundtrip"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
	"github.com/clade-dev/clade/internal/wire"
)

// budgets enforces the teams' and keys' USD budgets. What was spent is the store's
// (durable, shared by every gateway on it); what is held is this gateway's own:
// the worst cases of its calls in flight. A call is admitted when, for every
// budget it counts toward and every period, limit − spent − held ≥ its worst
// case, where held is what other calls held when it arrived.
//
// The call's hold is taken first, under mu, with a snapshot of what was held;
// only then is the store read, outside mu. A settle adds the spend to the store
// and only then removes its hold, so a check never misses a call's cost: its
// snapshot still holds the call's worst case, or the store read that follows it
// sees the cost. Two calls checked at once each count the other's hold (the
// later one's snapshot holds the earlier's worst case), so together they cannot
// overshoot.
//
// Store round trips are shared by the calls waiting for them (reads and spends
// below), so that at a high call rate the store sees one read per budget and one
// write per set of budgets at a time, not one per call: a read is shared only by
// calls that arrived before it started, and a settle returns only once its spend
// is committed, so what one call sees is never older than the call.
type budgets struct {
	store *jobs.Store
	cat   *catalog.Catalog
	now   func() time.Time

	mu     sync.Mutex
	held   map[heldKey]spend.Micros
	handed map[*budgetHold]struct{} // holds whose settle runs after their answer went
	// handedEnded counts the handed holds that have ended.
	handedEnded uint64
	// seen is what each budget's last store read said, and what this gateway
	// has spent since (spentOf).
	seen map[heldKey]seenSpend
	// ahead marks the budgets whose read ahead (spentOf) is on its way.
	ahead map[heldKey]bool
	// background runs a read ahead off the call's path (Gateway.settleAfter, so
	// that the store outlives it); nil: no read ahead.
	background func(func())

	batch batchHeld // pending Message Batches' holds (budget_batch.go)

	reads  roundtrip.Group[heldKey, spend.Micros] // SpendOf per budget and period
	spends roundtrip.Group[string, spend.Micros]  // AddSpend per set of scopes and day, lingering spendLinger
}

// spendLinger is how long a settle waits for others of the same budgets to share
// its AddSpend transaction, once they queue behind each other. A call settles
// after its answer has gone (Gateway.settleAfter), so the wait delays only the
// end of its hold, and at a high call rate it turns one transaction per call
// into one per few.
const spendLinger = 20 * time.Millisecond

type heldKey struct{ scope, period string }

// scope is one budget a call counts toward.
type scope struct {
	name   string // in the store: "team:NAME" or "key:LABEL"
	what   string // in errors: "team research", "key alice (team research)"
	team   string
	key    string // the key's label, "" for a team's budget
	budget Budget
}

func scopesOf(c *client) []scope {
	var out []scope
	if len(c.team.Budget) > 0 {
		out = append(out, scope{name: "team:" + c.team.Name, what: "team " + c.team.Name, team: c.team.Name, budget: c.team.Budget})
	}
	if len(c.budget) > 0 {
		out = append(out, scope{name: "key:" + c.label, what: fmt.Sprintf("key %s (team %s)", c.label, c.team.Name),
			team: c.team.Name, key: c.label, budget: c.budget})
	}
	return out
}

// budgetHold is what one call holds; its methods on nil do nothing.
type budgetHold struct {
	b      *budgets
	scopes []scope
	worst  spend.Micros
	model  *catalog.Model // nil: no price (a model the catalog does not know)
	max    int64          // the call's max_tokens
	once   sync.Once
	// settled, made by handOff, is closed when the hold ends.
	settled chan struct{}
}

// refusal is why a call does not fit a budget.
type refusal struct{ msg string }

var adjective = map[string]string{jobs.PeriodDay: "daily", jobs.PeriodWeek: "weekly", jobs.PeriodMonth: "monthly"}

// usd formats an amount for a refusal: four decimals under $10, where cents would
// hide a call's cost, then two.
func usd(m spend.Micros) string {
	if m > -10e6 && m < 10e6 {
		return fmt.Sprintf("$%.4f", m.USD())
	}
	return fmt.Sprintf("$%.2f", m.USD())
}

// hold checks and holds the call's worst case against every budget of c. It
// returns nil, nil when c has no budget; model and maxTokens are the request's
// ("" when its body is not a request), est its input estimate in tokens; a
// *refusal when one budget has no room.
func (b *budgets) hold(ctx context.Context, c *client, model string, maxTokens, est int64) (*budgetHold, error) {
	scopes := scopesOf(c)
	if b == nil || len(scopes) == 0 {
		return nil, nil
	}
	b.mu.Lock()
	ended := b.handedEnded
	b.mu.Unlock()
	h, err := b.tryHold(ctx, scopes, model, maxTokens, est)
	var r *refusal
	if errors.As(err, &r) && b.waitHandedOff(ctx, scopes, ended) {
		// Calls of these budgets that have answered but not settled hold their
		// worst case, not their cost: checked again once they have settled, a
		// call is refused only for what was spent.
		h, err = b.tryHold(ctx, scopes, model, maxTokens, est)
	}
	return h, err
}

// tryHold is one check and hold of hold.
func (b *budgets) tryHold(ctx context.Context, scopes []scope, model string, maxTokens, est int64) (*budgetHold, error) {
	h := &budgetHold{b: b, scopes: scopes}
	if m, err := b.cat.Resolve(model); err == nil {
		h.model, h.max = m, max(maxTokens, 0)
		h.worst = spend.WorstCase(b.cat, m, est, h.max, false)
	}
	now := b.now()
	// The hold first, with what others held (see budgets).
	others := make([]spend.Micros, 0, 4)
	b.mu.Lock()
	for _, s := range scopes {
		for _, period := range jobs.Periods {
			if _, ok := s.budget[period]; ok {
				k := heldKey{s.name, period}
				others = append(others, b.held[k])
				b.held[k] += h.worst
			}
		}
	}
	b.mu.Unlock()
	if err := b.check(ctx, h, now, others); err != nil {
		h.unhold()
		return nil, err
	}
	return h, nil
}

// waitHandedOff waits until the holds handed off (handOff) of any of scopes have
// ended, and reports whether there were any, or whether any has ended since
// handedEnded read ended (a check made before may have counted its hold).
func (b *budgets) waitHandedOff(ctx context.Context, scopes []scope, ended uint64) bool {
	var wait []chan struct{}
	b.mu.Lock()
	for h := range b.handed {
		if sharesScope(h.scopes, scopes) {
			wait = append(wait, h.settled)
		}
	}
	changed := b.handedEnded != ended
	b.mu.Unlock()
	for _, ch := range wait {
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	return len(wait) > 0 || changed
}

func sharesScope(a, b []scope) bool {
	for _, x := range a {
		for _, y := range b {
			if x.name == y.name {
				return true
			}
		}
	}
	return false
}

// check checks the hold h against every budget of its scopes, others being what
// other calls held in each (in hold's order).
func (b *budgets) check(ctx context.Context, h *budgetHold, now time.Time, others []spend.Micros) error {
	i := 0
	for _, s := range h.scopes {
		for _, period := range jobs.Periods {
			limit, ok := s.budget[period]
			if !ok {
				continue
			}
			held := others[i] + b.batchHeldOf(s.name) // calls in flight, and pending batches
			i++
			spent, err := b.spentOf(ctx, s.name, period, now, func(spent spend.Micros) bool {
				return far(limit, spent+held, h.worst)
			})
			if err != nil {
				return err
			}
			resets := jobs.PeriodEnd(period, now).Format(time.RFC3339)
			switch left := limit - spent - held; {
			case spent >= limit:
				return &refusal{fmt.Sprintf("%s: its %s budget of %s is spent (%s); it resets at %s",
					s.what, adjective[period], usd(limit), usd(spent), resets)}
			case h.worst > left:
				return &refusal{fmt.Sprintf("%s: its %s budget of %s has %s left (%s spent, %s held by calls in flight), less than this call's worst case of %s (its input and all of max_tokens); it resets at %s",
					s.what, adjective[period], usd(limit), usd(max(left, 0)), usd(spent), usd(held), usd(h.worst), resets)}
			}
		}
	}
	return nil
}

// seenFor is how long a budget's last store read stands in for a new one when
// the budget is far from its limit (spentOf): what other gateways on the store
// spent within it may be missed, never what this one spent.
const seenFor = 100 * time.Millisecond

// seenSpend is a budget's last store read: what the store said at (from the
// moment the read began, in the period starting at start), and what this
// gateway's settles have added to the store since that moment (some of it may
// be in spent too: counted twice, never missed).
type seenSpend struct {
	spent, since spend.Micros
	at, start    time.Time
}

// far reports whether a call of worst case worst is far enough from limit,
// used being spent and held, that a store read up to seenFor old will do: more
// than a tenth of the limit, and room for a hundred more such calls, left after
// it. Near the limit every check reads the store, so that what another gateway
// spent a moment ago is seen.
func far(limit, used, worst spend.Micros) bool {
	left := limit - used - worst
	return left >= limit/10 && left >= 100*worst
}

// spentOf is what scope spent in period: the last store read plus what this
// gateway spent since when that read is under seenFor old and ok says that
// will do, else the store's SpendOf, the read shared by the calls waiting for it.
// A last read past half of seenFor is read again in the background, so that
// while calls keep coming and the budget is far from its limit, none waits for
// the store (without, the call that found the read seenFor old read the store
// on its path: at a thousand calls a second, with a team's and a key's budget,
// two calls in every hundred, and those arriving during their reads).
func (b *budgets) spentOf(ctx context.Context, scope, period string, now time.Time, ok func(spent spend.Micros) bool) (spend.Micros, error) {
	k := heldKey{scope, period}
	start := jobs.PeriodStart(period, now)
	b.mu.Lock()
	if s, found := b.seen[k]; found && s.start.Equal(start) && now.Sub(s.at) < seenFor && ok(s.spent+s.since) {
		if now.Sub(s.at) >= seenFor/2 && !b.ahead[k] && b.background != nil {
			if b.ahead == nil {
				b.ahead = map[heldKey]bool{}
			}
			b.ahead[k] = true
			b.background(func() {
				b.read(context.Background(), k, scope, period, now) // an error is the next foreground read's
				b.mu.Lock()
				delete(b.ahead, k)
				b.mu.Unlock()
			})
		}
		b.mu.Unlock()
		return s.spent + s.since, nil
	}
	b.mu.Unlock()
	return b.read(ctx, k, scope, period, now)
}

// read is spentOf's store read of k, shared by the calls waiting for it, which
// updates b.seen.
func (b *budgets) read(ctx context.Context, k heldKey, scope, period string, now time.Time) (spend.Micros, error) {
	start := jobs.PeriodStart(period, now)
	return b.reads.Do(k, 0, func(a, _ spend.Micros) spend.Micros { return a },
		func(spend.Micros) (spend.Micros, error) {
			at := b.now()
			b.mu.Lock()
			base := b.seen[k].since
			b.mu.Unlock()
			// The opener's context ends only its own wait; the read serves others too.
			v, err := b.store.SpendOf(context.WithoutCancel(ctx), scope, period, now)
			if err != nil {
				return v, err
			}
			b.mu.Lock()
			if b.seen == nil {
				b.seen = map[heldKey]seenSpend{}
			}
			s := b.seen[k]
			b.seen[k] = seenSpend{spent: v, since: s.since - base, at: at, start: start}
			b.mu.Unlock()
			return v, nil
		})
}

// spentSince adds cost, just committed to the store for every period of the
// scopes names, to what the budgets' last reads have seen since.
func (b *budgets) spentSince(names []string, cost spend.Micros) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range names {
		for _, p := range jobs.Periods {
			k := heldKey{n, p}
			if s, ok := b.seen[k]; ok {
				s.since += cost
				b.seen[k] = s
			}
		}
	}
}

// addSpend is the store's AddSpend, one transaction for the costs of the calls
// of the same scopes waiting for it.
func (b *budgets) addSpend(ctx context.Context, names []string, at time.Time, cost spend.Micros) error {
	if cost <= 0 {
		return nil
	}
	k := strings.Join(names, "\x00") + "\x00" + jobs.PeriodStart(jobs.PeriodDay, at).Format(time.DateOnly)
	_, err := b.spends.Do(k, cost, func(a, c spend.Micros) spend.Micros { return a + c },
		func(sum spend.Micros) (spend.Micros, error) {
			if err := b.store.AddSpend(context.WithoutCancel(ctx), names, at, sum); err != nil {
				return 0, err
			}
			b.spentSince(names, sum)
			return 0, nil
		})
	return err
}

func (r *refusal) Error() string { return r.msg }

// settle records cost against every budget of the hold (in the store, then the
// hold goes); release ends it with nothing spent. Only the first call counts.
func (h *budgetHold) settle(ctx context.Context, cost spend.Micros, log func(error)) {
	if h == nil {
		return
	}
	h.once.Do(func() {
		names := make([]string, len(h.scopes))
		for i, s := range h.scopes {
			names[i] = s.name
		}
		if err := h.b.addSpend(ctx, names, h.b.now(), cost); err != nil {
			log(err)
		}
		h.unhold()
	})
}

// handOff marks h as settled after its call's answer has gone
// (Gateway.settleAfter): until it is, a call of the same budgets that would be
// refused is checked again once h has ended (budgets.hold).
func (h *budgetHold) handOff() {
	if h == nil {
		return
	}
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.handed == nil {
		b.handed = map[*budgetHold]struct{}{}
	}
	h.settled = make(chan struct{})
	b.handed[h] = struct{}{}
}

func (h *budgetHold) release() {
	if h == nil {
		return
	}
	h.once.Do(h.unhold)
}

func (h *budgetHold) unhold() {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if h.settled != nil {
		delete(b.handed, h)
		close(h.settled)
		b.handedEnded++
	}
	for _, s := range h.scopes {
		for period := range s.budget {
			k := heldKey{s.name, period}
			if b.held[k] -= h.worst; b.held[k] <= 0 {
				delete(b.held, k)
			}
		}
	}
}

// cost is what usage u of the hold's model costs (0 for a model without a price).
func (h *budgetHold) cost(u upstream.Usage) spend.Micros {
	if h == nil || h.model == nil {
		return 0
	}
	return spend.FromUSD(spend.Cost(h.b.cat, h.model, spend.Usage(u), false))
}

// streamCost follows a stream's message_start for the split of its cache writes
// by TTL, which admit.StreamUsage does not keep.
type streamCost struct{ start upstream.Usage }

func (s *streamCost) event(name, data []byte) {
	if string(name) != "message_start" {
		return
	}
	var ev struct {
		Message struct {
			Usage *upstream.Usage `json:"usage"`
		} `json:"message"`
	}
	if json.Unmarshal(data, &ev) == nil && ev.Message.Usage != nil {
		s.start = *ev.Message.Usage
	}
}

// refuseBudget answers a call that does not fit a budget: 402 billing_error, which
// the official SDKs do not retry (only 408, 409, 429 and 5xx), with
// x-should-retry: false for any client that honours it.
func (g *Gateway) refuseBudget(w http.ResponseWriter, err error) int {
	var r *refusal
	if errors.As(err, &r) {
		g.m.budgetRefused.Inc()
		writeError(w, http.StatusPaymentRequired, wire.Billing, r.msg, http.Header{"X-Should-Retry": {"false"}})
		return http.StatusPaymentRequired
	}
	g.log.Error("read spend", "error", err)
	writeError(w, http.StatusServiceUnavailable, wire.APIError, "clade serve: the spend store could not be read; try again later", nil)
	return http.StatusServiceUnavailable
}

// BudgetStatus is one budget in one period: a team's (Key empty) or a key's.
type BudgetStatus struct {
	Team   string `json:"team"`
	Key    string `json:"key,omitempty"` // the key's label
	Period string `json:"period"`
	// In USD: the limit, what the store says was spent in the period (every
	// gateway on it), what this gateway holds for its calls in flight, and what is
	// left for new calls through this gateway.
	LimitUSD     float64   `json:"limit_usd"`
	SpentUSD     float64   `json:"spent_usd"`
	HeldUSD      float64   `json:"held_usd"`
	RemainingUSD float64   `json:"remaining_usd"`
	ResetsAt     time.Time `json:"resets_at"`
}

// snapshot returns every budget's state now, teams then keys.
func (b *budgets) snapshot(ctx context.Context, k *Keys) ([]BudgetStatus, error) {
	if b == nil {
		return nil, nil
	}
	var scopes []scope
	for _, t := range k.teams {
		scopes = append(scopes, scopesOf(&client{team: t})...)
	}
	for _, c := range k.keyed {
		scopes = append(scopes, scopesOf(&client{team: &Team{Name: c.team.Name}, label: c.label, budget: c.budget})...)
	}
	now := b.now()
	var out []BudgetStatus
	for _, s := range scopes {
		for _, period := range jobs.Periods {
			limit, ok := s.budget[period]
			if !ok {
				continue
			}
			spent, err := b.store.SpendOf(ctx, s.name, period, now)
			if err != nil {
				return out, err
			}
			b.mu.Lock()
			held := b.held[heldKey{s.name, period}]
			b.mu.Unlock()
			held += b.batchHeldOf(s.name) // pending batches (budget_batch.go)
			out = append(out, BudgetStatus{Team: s.team, Key: s.key, Period: period, LimitUSD: limit.USD(),
				SpentUSD: spent.USD(), HeldUSD: held.USD(), RemainingUSD: (limit - spent - held).USD(),
				ResetsAt: jobs.PeriodEnd(period, now)})
		}
	}
	return out, nil
}

// budgetCollector exports the budgets on /metrics, read from the store at each
// scrape. Labels: team, key (a key's label, "" for a team's budget), period.
type budgetCollector struct {
	g                             *Gateway
	limit, spent, held, remaining *prometheus.Desc
}

func newBudgetCollector(g *Gateway) *budgetCollector {
	l := []string{"team", "key", "period"}
	return &budgetCollector{g: g,
		limit:     prometheus.NewDesc("clade_serve_budget_limit_usd", "Budget per team (key=\"\") or client key (key=its label) and period, in USD.", l, nil),
		spent:     prometheus.NewDesc("clade_serve_budget_spent_usd", "Spent in the current period (UTC), every gateway on the store, in USD.", l, nil),
		held:      prometheus.NewDesc("clade_serve_budget_held_usd", "Worst cases held by this gateway's calls in flight, in USD.", l, nil),
		remaining: prometheus.NewDesc("clade_serve_budget_remaining_usd", "Budget left for new calls through this gateway, in USD.", l, nil),
	}
}

func (c *budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.limit
	ch <- c.spent
	ch <- c.held
	ch <- c.remaining
}

func (c *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.g.budgets.snapshot(ctx, c.g.cfg.Keys)
	if err != nil {
		c.g.log.Warn("read spend for metrics", "error", err)
	}
	for _, s := range st {
		for _, m := range []struct {
			d *prometheus.Desc
			v float64
		}{{c.limit, s.LimitUSD}, {c.spent, s.SpentUSD}, {c.held, s.HeldUSD}, {c.remaining, s.RemainingUSD}} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v, s.Team, s.Key, s.Period)
		}
	}
}
